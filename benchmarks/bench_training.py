"""Batched training (``wslviz.core.training.train``, what ``make-zoo`` runs) vs training the same models one by one.

The baseline is the ordinary way: per model an ``nn.Module``, ``torch.optim.SGD``/``Adam`` with the
model's hyper-parameters, and a loop over its minibatches, then ``evaluate_per_model`` on the train and
test splits. Both sides train the same models (digits-cnn recipe hyper-parameters, dropout off so the
two runs are comparable number for number) on the same data order for the same epochs, on one thread
as ``make-zoo`` does. Prints the wall times, their ratio and the largest weight difference per optimiser.
SGD models agree to ~1e-7; Adam divides by sqrt(v), which amplifies float32 rounding differences between
the two computations from step to step (in float64 both agree to ~1e-7 after the same 39 steps where
float32 drifts to ~5e-5), so Adam models at larger learning rates drift apart by up to ~1e-3 per epoch.

    .venv/bin/python benchmarks/bench_training.py [--models N] [--epochs 1] [--recipe digits-cnn]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from wslviz.core.arch import Architecture
from wslviz.core.evaluation import evaluate_per_model
from wslviz.core.tasks import make_task
from wslviz.core.training import DATA_STREAM, RECIPES, init_weights, train


def train_one_by_one(arch, task, hp, epochs: int) -> torch.Tensor:
    """The loop baseline; same initialisation, subsets and data order as the batched trainer."""
    x, y = task.x_train, task.y_train
    out = []
    for _, row in hp.iterrows():
        bs = int(row["batch_size"])
        model = arch.build(init_weights(arch, [row["seed"]], [row["init_scale"]])[0]).train()
        if row["optimizer"] == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=row["lr"], momentum=row["momentum"],
                                  weight_decay=row["weight_decay"])
        else:
            opt = torch.optim.Adam(model.parameters(), lr=row["lr"], weight_decay=row["weight_decay"])
        gen = torch.Generator().manual_seed(int(row["seed"]) + DATA_STREAM)
        n = max(bs, int(np.round(row["train_fraction"] * len(x))))
        subset = torch.randperm(len(x), generator=gen)[:n]
        for _ in range(epochs):
            order = subset[torch.randperm(n, generator=gen)]
            for s in range(n // bs):
                idx = order[s * bs:(s + 1) * bs]
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
        w = arch.flatten(model.state_dict())
        for split in ("train", "test"):
            evaluate_per_model(arch, task, w.unsqueeze(0), split=split)
        out.append(w)
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="digits-cnn", choices=sorted(RECIPES))
    parser.add_argument("--models", type=int, default=None, help="first N models of the recipe (default: all)")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = RECIPES[args.recipe]
    arch, task = Architecture(recipe.arch), make_task(recipe.task)
    hp = recipe.hyperparameters(0).iloc[:args.models].reset_index(drop=True)
    hp["dropout"] = 0.0  # dropout masks are random: off, so both runs must agree number for number

    start = time.perf_counter()
    batched, _ = train(arch, task, hp, args.epochs, [args.epochs])
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    looped = train_one_by_one(arch, task, hp, args.epochs)
    t_loop = time.perf_counter() - start

    print(f"{args.recipe}: {len(hp)} models x {args.epochs} epoch(s), {arch.n_params} params, 1 thread")
    print(f"  one by one (nn.Module + torch.optim): {t_loop:8.2f} s")
    print(f"  batched (wslviz.core.training.train):      {t_batched:8.2f} s")
    print(f"  speed-up: {t_loop / t_batched:.1f}x")
    diff = (batched - looped).abs().max(1).values
    for name in ("sgd", "adam"):
        rows = torch.tensor((hp["optimizer"] == name).to_numpy(copy=True))
        if rows.any():
            print(f"  largest weight difference, {name} models: {diff[rows].max():.2e}")


if __name__ == "__main__":
    main()
