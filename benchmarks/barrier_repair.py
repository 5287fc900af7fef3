"""Weight matching + REPAIR on digits-resnet: the mean test-loss barrier over disjoint pairs of independently
trained final checkpoints (test accuracy at or above the zoo's median, different model and seed; drawn as in
``barrier_table.py``), naive, after weight matching, and after weight matching + REPAIR (for this BatchNorm network:
the BatchNorm statistics of the points between the endpoints recomputed). One alignment per pair, reused.

    .venv/bin/python benchmarks/barrier_repair.py [--pairs 10] [--steps 9] [--zoo digits-resnet]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from wslviz.scale.cache import load_zoo
from wslviz.understand import landscape as L
from wslviz.understand.align import weight_matching

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", default="digits-resnet")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=9)
    args = parser.parse_args()
    zoo = load_zoo(ROOT / "sample_zoo" / args.zoo)
    final = zoo.final_index()
    acc = zoo.metadata["test_acc"].to_numpy()[final]
    pairs = L.independent_pairs(zoo.metadata, final[acc >= np.median(acc)], args.pairs, seed=0)
    first = zoo.weights[torch.as_tensor([i for i, _ in pairs])].float()
    second = zoo.weights[torch.as_tensor([j for _, j in pairs])].float()
    aligned = torch.stack([weight_matching(zoo.arch, a, b) for a, b in zip(first, second, strict=True)])
    rows = {}
    for label, other, repair in (("naive", second, "none"), ("matched", aligned, "none"),
                                 ("matched + REPAIR", aligned, "repair")):
        rows[label] = L.pair_barriers(zoo.arch, zoo.task, first, other, "naive", args.steps, repair=repair)[
            "loss_barrier"].tolist()
        print(f"{label:<17} mean barrier {np.mean(rows[label]):.4f}", flush=True)
    naive = float(np.mean(rows["naive"]))
    result = {"zoo": args.zoo, "pairs": [list(map(int, p)) for p in pairs], "steps": args.steps, "barriers": rows,
              "means": {k: float(np.mean(v)) for k, v in rows.items()},
              "repaired_reduction_percent": 100.0 * (1 - float(np.mean(rows["matched + REPAIR"])) / naive)}
    print(f"weight matching + REPAIR cuts the mean barrier by {result['repaired_reduction_percent']:.1f}% "
          f"over {len(pairs)} pairs")
    out = ROOT / "benchmarks" / "results" / f"barrier_repair_{args.zoo}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
