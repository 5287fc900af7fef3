"""Anchor experiment (Entezari et al. 2022; Ainsworth et al., Git Re-Basin, 2023) at small scale: does
weight matching remove most of the loss barrier between independently trained models?

For each sample zoo: disjoint pairs of final checkpoints of independently trained models (different
``model_id`` and different ``seed``), drawn at random (seed 0) among the models that trained (final test
accuracy at or above the zoo's median). For each pair the loss barrier of the straight path is measured
as trained (naive) and after weight matching the second model to the first (activation matching is
reported alongside), all paths of a zoo in one batched evaluation; "aligned" means weight matching. The points
between the endpoints of the weight-matched paths are then corrected, through the public
``wslviz.understand.landscape.pair_barriers(..., repair=)``: "aligned + reset" recomputes BatchNorm statistics
(``repair="reset"``; networks with BatchNorm only: without it the reset changes nothing), "aligned + REPAIR"
rescales every channel (``repair="repair"``, Jordan et al. 2023; with BatchNorm, after the reset).
digits-resnet (BatchNorm) and tiny-transformer (LayerNorm) are module architectures. Prints the table and
writes ``benchmarks/results/barrier_table.json``, with the load average (the machine is shared).

    .venv/bin/python benchmarks/barrier_table.py [--pairs 16] [--steps 25] [--split test] [--zoos NAME ...]

With ``--zoos``, only those zoos are measured and their rows replace the same zoos' rows in ``--out`` (the
others are kept), so that a slow zoo can run with other ``--pairs`` / ``--steps``; every row records its own.
The target (>= 10 pairs, >= 50% lower mean barrier than naive) is checked per zoo on the best of the weight-matched
variants; a zoo whose naive barrier is already 0 has nothing to remove and is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from wslviz.scale.cache import load_zoo
from wslviz.understand import landscape as L
from wslviz.understand.repair import default_method

ROOT = Path(__file__).resolve().parents[1]
ZOOS = ("moons-mlp", "digits-cnn", "digits-resnet", "tiny-transformer", "transformer-max")
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
    started = time.perf_counter()
    has_batchnorm = default_method(zoo.arch) == "reset"
    reset = (L.pair_barriers(zoo.arch, zoo.task, first, second, "weight", steps, split, repair="reset")
             if has_batchnorm else None)
    reset_seconds, started = time.perf_counter() - started, time.perf_counter()
    repaired = L.pair_barriers(zoo.arch, zoo.task, first, second, "weight", steps, split, repair="repair")
    repair_seconds = time.perf_counter() - started
    activation = L.pair_barriers(zoo.arch, zoo.task, first, second, "activation", steps, split, repair="none")
    mean_naive, mean_aligned = float(naive.loss_barrier.mean()), float(aligned.loss_barrier.mean())

    def cut(barriers) -> float:
        return 100.0 * (1.0 - float(barriers.loss_barrier.mean()) / mean_naive) if mean_naive > 0 else float("nan")
    return {
        "zoo": name, "pairs": len(pairs), "split": split, "steps": steps,
        "mean_naive_barrier": mean_naive, "mean_aligned_barrier": mean_aligned,
        "reduction_percent": 100.0 * (1.0 - mean_aligned / mean_naive) if mean_naive > 0 else float("nan"),
        "mean_naive_accuracy_barrier": float(naive.accuracy_barrier.mean()),
        "mean_aligned_accuracy_barrier": float(aligned.accuracy_barrier.mean()),
        "pairs_improved": int((aligned.loss_barrier < naive.loss_barrier).sum()),
        "mean_activation_matched_barrier": float(activation.loss_barrier.mean()),
        "has_batchnorm": has_batchnorm,
        "mean_aligned_reset_barrier": None if reset is None else float(reset.loss_barrier.mean()),
        "reset_reduction_percent": None if reset is None else cut(reset),
        "mean_aligned_repaired_barrier": float(repaired.loss_barrier.mean()),
        "repaired_reduction_percent": cut(repaired),
        "pairs_improved_by_repair": int((repaired.loss_barrier < naive.loss_barrier).sum()),
        "pairs_with_naive_barrier": int((naive.loss_barrier > 0).sum()),
        "per_pair": {k: [float(v) for v in b.loss_barrier] for k, b in
                     (("naive", naive), ("aligned", aligned), ("reset", reset), ("repair", repaired),
                      ("activation", activation)) if b is not None},
        "rows": [list(p) for p in pairs], "seconds": seconds, "reset_seconds": reset_seconds,
        "repair_seconds": repair_seconds, "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--zoos", nargs="+", default=list(ZOOS), choices=ZOOS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "barrier_table.json"))
    args = parser.parse_args()
    out = Path(args.out)
    kept = json.loads(out.read_text())["results"] if out.is_file() else []
    measured = {r["zoo"]: r for r in (measure(name, args.pairs, args.steps, args.split) for name in args.zoos)}
    rows = [measured.pop(r["zoo"], r) for r in kept] + list(measured.values())
    rows.sort(key=lambda r: ZOOS.index(r["zoo"]) if r["zoo"] in ZOOS else len(ZOOS))
    print(f"{'zoo':<16} {'pairs':>5} {'mean naive barrier':>19} {'mean aligned barrier':>21} {'reduction':>10}"
          f"   {'(activation matching)':>22} {'aligned + reset':>16} {'reduction':>10} {'aligned + REPAIR':>17}"
          f" {'reduction':>10}")
    for r in rows:
        reset = ("-", "-") if r.get("mean_aligned_reset_barrier") is None else (
            f"{r['mean_aligned_reset_barrier']:.4f}", f"{r['reset_reduction_percent']:.1f}%")
        print(f"{r['zoo']:<16} {r['pairs']:>5} {r['mean_naive_barrier']:>19.4f} {r['mean_aligned_barrier']:>21.4f} "
              f"{r['reduction_percent']:>9.1f}%   {r['mean_activation_matched_barrier']:>22.4f} {reset[0]:>16} "
              f"{reset[1]:>10} {r['mean_aligned_repaired_barrier']:>17.4f} {r['repaired_reduction_percent']:>9.1f}%")
    verdicts = {}
    for r in rows:
        cuts = [c for c in (r["reduction_percent"], r.get("reset_reduction_percent"),
                            r.get("repaired_reduction_percent")) if c is not None]
        if r["mean_naive_barrier"] <= 0:
            verdicts[r["zoo"]] = "no naive barrier to remove"
        else:
            met = r["pairs"] >= 10 and max(cuts) >= TARGET_REDUCTION
            verdicts[r["zoo"]] = f"{'met' if met else 'NOT met'} (best cut {max(cuts):.1f}%, {r['pairs']} pairs)"
    ok = all(v.startswith("met") or v.startswith("no naive") for v in verdicts.values())
    print(f"target: >= 10 pairs and >= {TARGET_REDUCTION:.0f}% reduction: "
          + "; ".join(f"{k} {v}" for k, v in verdicts.items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target_reduction_percent": TARGET_REDUCTION, "met": ok, "verdicts": verdicts,
                                "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
