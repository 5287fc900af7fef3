"""Barrier after weight matching against width: small digits-resnet variants trained here, side by side.

For each stage-width triple (``resnet20``, depth 8, ``channels=``), the ``digits-resnet`` recipe is retrained with
16 models: two settings (SGD and Adam, learning rate 0.01, batch 64, full training set) of 8 seeds each, for
``--epochs`` epochs. Disjoint replicate pairs of final checkpoints (same setting, other seed; ``independent_pairs``,
seed 0) are interpolated naive and after weight matching, with no correction, the BatchNorm reset and REPAIR.
Printed and written to ``benchmarks/results/barrier_width.json``: per width the parameter count, the mean final
test accuracy and the mean test-loss barriers, each with its cut against naive interpolation.

    .venv/bin/python benchmarks/barrier_width.py [--channels 4,8,16 8,16,32 12,12,24 16,32,64] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from wslviz.core.training import RECIPES
from wslviz.understand import landscape as L
from wslviz.understand.repair import METHODS

ROOT = Path(__file__).resolve().parents[1]
GRID = {"optimizer": ("sgd", "adam"), "lr": (1e-2,)}


def measure(channels: list[int], epochs: int, steps: int) -> dict:
    base = RECIPES["digits-resnet"]
    arch = {**base.arch, "kwargs": {**base.arch["kwargs"], "channels": channels}}
    recipe = replace(base, name=f"digits-resnet-{'-'.join(map(str, channels))}", arch=arch, n_models=16, grid=GRID,
                     epochs=epochs, checkpoints=(0, epochs))
    zoo = recipe.train_zoo(seed=0)
    final = zoo.final_index()
    pairs = L.independent_pairs(zoo.metadata, final, 8, seed=0, match=list(GRID))
    first = zoo.weights[torch.as_tensor([i for i, _ in pairs])].float()
    second = zoo.weights[torch.as_tensor([j for _, j in pairs])].float()
    barriers = {"naive": L.pair_barriers(zoo.arch, zoo.task, first, second, "naive", steps,
                                         repair="none")["loss_barrier"].mean()}
    for method in METHODS:
        barriers[f"weight matching, {method}"] = L.pair_barriers(zoo.arch, zoo.task, first, second, "weight", steps,
                                                                 repair=method)["loss_barrier"].mean()
    return {"channels": channels, "n_params": zoo.arch.n_params, "pairs": [list(p) for p in pairs],
            "mean_test_acc": float(zoo.metadata["test_acc"].to_numpy()[final].mean()),
            "barriers": {k: float(v) for k, v in barriers.items()},
            "cut_percent": {k: 100.0 * (1 - float(v) / float(barriers["naive"])) for k, v in barriers.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", nargs="+", default=["4,8,16", "8,16,32", "12,12,24", "16,32,64"])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=9)
    args = parser.parse_args()
    load = os.getloadavg()
    rows = [measure([int(c) for c in triple.split(",")], args.epochs, args.steps) for triple in args.channels]
    labels = ["naive"] + [f"weight matching, {m}" for m in METHODS]
    print(f"{'channels':<10} {'params':>7} {'test acc':>8} {'pairs':>5}  " + "  ".join(f"{lab:>26}" for lab in labels))
    for r in rows:
        cells = [f"{r['barriers'][lab]:.3f} ({-r['cut_percent'][lab]:+.0f}%)" for lab in labels]
        print(f"{'/'.join(map(str, r['channels'])):<10} {r['n_params']:>7,} {r['mean_test_acc']:>8.3f} "
              f"{len(r['pairs']):>5}  " + "  ".join(f"{c:>26}" for c in cells))
    out = ROOT / "benchmarks" / "results" / "barrier_width.json"
    out.write_text(json.dumps({"epochs": args.epochs, "steps": args.steps, "load_average": [load, os.getloadavg()],
                               "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
