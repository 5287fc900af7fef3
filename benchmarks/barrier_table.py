"""Anchor experiment (Entezari et al. 2022; Ainsworth et al., Git Re-Basin, 2023) at small scale: does
weight matching remove most of the loss barrier between independently trained models?

For each sample zoo: disjoint pairs of final checkpoints of independently trained models (different
``model_id`` and different ``seed``), drawn at random (seed 0) among the models that trained (final test
accuracy at or above the zoo's median). For each pair the loss barrier of the straight path is measured
as trained (naive) and after weight matching the second model to the first (activation matching is
reported alongside), all paths of a zoo in one batched evaluation; "aligned" means weight matching;
"aligned + REPAIR" corrects the points between the endpoints (REPAIR, Jordan et al. 2023; BatchNorm statistics
reset for the BatchNorm network digits-resnet). digits-resnet and tiny-transformer are module architectures.
Prints the table and writes ``benchmarks/results/barrier_table.json``.

    .venv/bin/python benchmarks/barrier_table.py [--pairs 16] [--steps 25] [--split test]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from wslviz.scale.cache import load_zoo
from wslviz.understand import landscape as L

ROOT = Path(__file__).resolve().parents[1]
ZOOS = ("moons-mlp", "digits-cnn", "digits-resnet", "tiny-transformer")
TARGET_REDUCTION = 50.0


def measure(name: str, n_pairs: int, steps: int, split: str) -> dict:
    zoo = load_zoo(ROOT / "sample_zoo" / name)
    final = zoo.final_index()
    acc = zoo.metadata["test_acc"].to_numpy()[final]
    trained = final[acc >= np.median(acc)]
    pairs = L.independent_pairs(zoo.metadata, trained, n_pairs, seed=0)
    first = zoo.weights[torch.as_tensor([i for i, _ in pairs])]
    second = zoo.weights[torch.as_tensor([j for _, j in pairs])]
    start = time.perf_counter()
    naive = L.pair_barriers(zoo.arch, zoo.task, first, second, "naive", steps, split, repair="none")
    aligned = L.pair_barriers(zoo.arch, zoo.task, first, second, "weight", steps, split, repair="none")
    seconds = time.perf_counter() - start
    # REPAIR (Jordan et al. 2023; BatchNorm reset for BatchNorm networks) on the weight-matched paths
    repaired = L.pair_barriers(zoo.arch, zoo.task, first, second, "weight", steps, split, repair="repair")
    activation = L.pair_barriers(zoo.arch, zoo.task, first, second, "activation", steps, split)
    mean_naive, mean_aligned = float(naive.loss_barrier.mean()), float(aligned.loss_barrier.mean())
    return {
        "zoo": name, "pairs": len(pairs), "split": split, "steps": steps,
        "mean_naive_barrier": mean_naive, "mean_aligned_barrier": mean_aligned,
        "reduction_percent": 100.0 * (1.0 - mean_aligned / mean_naive) if mean_naive > 0 else float("nan"),
        "mean_naive_accuracy_barrier": float(naive.accuracy_barrier.mean()),
        "mean_aligned_accuracy_barrier": float(aligned.accuracy_barrier.mean()),
        "pairs_improved": int((aligned.loss_barrier < naive.loss_barrier).sum()),
        "mean_activation_matched_barrier": float(activation.loss_barrier.mean()),
        "mean_aligned_repaired_barrier": float(repaired.loss_barrier.mean()),
        "repaired_reduction_percent": 100.0 * (1.0 - float(repaired.loss_barrier.mean()) / mean_naive)
        if mean_naive > 0 else float("nan"),
        "rows": [list(p) for p in pairs], "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--zoos", nargs="+", default=list(ZOOS), choices=ZOOS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "barrier_table.json"))
    args = parser.parse_args()
    rows = [measure(name, args.pairs, args.steps, args.split) for name in args.zoos]
    print(f"{'zoo':<16} {'pairs':>5} {'mean naive barrier':>19} {'mean aligned barrier':>21} {'reduction':>10}"
          f"   {'(activation matching)':>22} {'aligned + REPAIR':>17} {'reduction':>10}")
    for r in rows:
        print(f"{r['zoo']:<16} {r['pairs']:>5} {r['mean_naive_barrier']:>19.4f} {r['mean_aligned_barrier']:>21.4f} "
              f"{r['reduction_percent']:>9.1f}%   {r['mean_activation_matched_barrier']:>22.4f} "
              f"{r['mean_aligned_repaired_barrier']:>17.4f} {r['repaired_reduction_percent']:>9.1f}%")
    ok = all(r["pairs"] >= 10 and r["reduction_percent"] >= TARGET_REDUCTION for r in rows)
    print(f"target: >= 10 pairs and >= {TARGET_REDUCTION:.0f}% reduction on every zoo: {'met' if ok else 'NOT met'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target_reduction_percent": TARGET_REDUCTION, "met": ok, "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
