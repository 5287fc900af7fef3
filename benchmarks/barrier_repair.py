"""Weight matching + REPAIR on digits-resnet: the mean test-loss barrier over disjoint pairs of independently
trained final checkpoints, naive and after alignment, each with no correction, the BatchNorm reset and REPAIR
(:mod:`wslviz.understand.repair`), side by side. One alignment per pair, reused.

Pairs (``--pairs-from``): ``replicates`` (default) draws them as Git Re-Basin does, two models of the same
hyper-parameters trained from different seeds (the zoo trains every setting from 4 seeds), both with test
accuracy at or above the zoo's median, disjoint, at random (``independent_pairs``, seed 0); ``any`` drops the
same-hyper-parameters condition (an SGD model may meet an Adam one), as this benchmark did before the replicates.
Alignments: ``weight`` (Git Re-Basin weight matching on the fx-derived spec) and ``activation`` (activation
matching on 512 training inputs). Also written: each pair's distance before and after matching and how far the
matched model's outputs are from the original's (it must compute the same function).

    .venv/bin/python benchmarks/barrier_repair.py [--pairs 10] [--steps 9] [--pairs-from replicates|any]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from wslviz.core.training import HYPERPARAMETERS
from wslviz.scale.cache import load_zoo
from wslviz.understand import landscape as L
from wslviz.understand.align import activation_matching, weight_matching
from wslviz.understand.repair import METHODS
from wslviz.understand.symmetry import equivalence_gap

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", default="digits-resnet")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--pairs-from", choices=("replicates", "any"), default="replicates")
    args = parser.parse_args()
    torch.set_num_threads(1)
    zoo = load_zoo(ROOT / "sample_zoo" / args.zoo)
    final = zoo.final_index()
    acc = zoo.metadata["test_acc"].to_numpy()[final]
    match = [c for c in HYPERPARAMETERS if c in zoo.metadata] if args.pairs_from == "replicates" else []
    pairs = L.independent_pairs(zoo.metadata, final[acc >= np.median(acc)], args.pairs, seed=0, match=match)
    first = zoo.weights[torch.as_tensor([i for i, _ in pairs])].float()
    second = zoo.weights[torch.as_tensor([j for _, j in pairs])].float()
    aligned = {"naive": second,
               "weight matching": torch.stack([weight_matching(zoo.arch, a, b) for a, b in zip(first, second,
                                                                                            strict=True)]),
               "activation matching": torch.stack([activation_matching(zoo.arch, zoo.task, a, b)
                                                   for a, b in zip(first, second, strict=True)])}
    rows, checks = {}, {}
    for name, other in aligned.items():
        checks[name] = {"distance": (first - other).norm(dim=1).tolist(),
                        "function_gap": [equivalence_gap(zoo.arch, b, o, zoo.task.x_test)
                                         for b, o in zip(second, other, strict=True)]}
        for method in METHODS:
            label = f"{name}, {method}"
            rows[label] = L.pair_barriers(zoo.arch, zoo.task, first, other, "naive", args.steps, repair=method)[
                "loss_barrier"].tolist()
            print(f"{label:<32} mean barrier {np.mean(rows[label]):.4f}", flush=True)
    means = {k: float(np.mean(v)) for k, v in rows.items()}
    naive = means["naive, none"]
    result = {"zoo": args.zoo, "pairs_from": args.pairs_from, "matched_columns": match,
              "pairs": [list(map(int, p)) for p in pairs],
              "test_acc": [[float(zoo.metadata["test_acc"].iloc[i]) for i in p] for p in pairs],
              "steps": args.steps, "barriers": rows, "means": means, "checks": checks,
              "reduction_percent_vs_naive": {k: 100.0 * (1 - v / naive) for k, v in means.items()}}
    cut = result["reduction_percent_vs_naive"]["weight matching, repair"]
    print(f"weight matching + REPAIR cuts the mean barrier by {cut:.1f}% over {len(pairs)} pairs "
          f"(naive {naive:.3f} -> {means['weight matching, repair']:.3f})")
    suffix = "" if args.pairs_from == "replicates" else "_any_pairs"
    out = ROOT / "benchmarks" / "results" / f"barrier_repair_{args.zoo}{suffix}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
