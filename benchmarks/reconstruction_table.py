"""Training examples read back from the weights (``wv.reconstruct_training_data``, the KKT method of Haim et al.,
NeurIPS 2022): how recovery depends on the training-set size, the training length and the weight decay.

The task is binary and ships with scikit-learn: 16 x 16 grey patches cut at seeded random places from its two
sample photographs (``load_sample_images``: the Chinese temple is class 0, the flower class 1), each minus its mean
and scaled to unit norm. A bias-free 256-1000-2 ReLU MLP (a homogeneous network, initialised N(0, 1/fan_in)) is
trained on ``n`` of them to convergence: full-batch gradient descent with momentum 0.9, step 0.05, cross-entropy plus
weight decay, in float64. Then three seeded runs of ``2n`` candidates each (``--extract-steps`` L-BFGS iterations)
are pooled, and a training example counts as recovered when a candidate lies within ``RECOVERY_DISTANCE`` (0.5,
between directions: cosine >= 0.875) of it; the baseline is as many standard-normal candidates. Prints the table,
writes ``benchmarks/results/reconstruction_table.json`` and draws the first row's training patches under their
nearest candidates (``docs/screenshots/reconstruction.png``; ``--no-figure`` skips it). The DeepInversion measure
(a student distilled from inverted inputs on ``digits-resnet``) is ``benchmarks/inversion_table.py``.

    .venv/bin/python benchmarks/reconstruction_table.py [--rows default|quick] [--extract-steps 1000] [--no-figure]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from wslviz.core import Architecture, Task
from wslviz.plots.reconstruct import inversion_pairs
from wslviz.understand.reconstruction import RECOVERY_DISTANCE, reconstruct_training_data, recovery

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "reconstruction_table.json"
FIGURE = ROOT / "docs" / "screenshots" / "reconstruction.png"
SIDE, HIDDEN, RUNS = 16, 1000, 3
ROWS = {  # (training examples, training steps, weight decay)
    "default": [(10, 12000, 1e-3), (20, 12000, 1e-3), (40, 12000, 1e-3), (10, 3000, 1e-3), (10, 12000, 1e-2)],
    "quick": [(10, 3000, 1e-3)],
}


def patches_task(n: int, seed: int = 0) -> Task:
    """``n`` standardised patches, half from each sample photograph; train and test splits are the same set
    (the question is what the weights remember of exactly these)."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    cut = []
    for image in load_sample_images().images:
        grey = image.mean(-1) / 255.0
        rows = rng.integers(0, grey.shape[0] - SIDE, n // 2)
        cols = rng.integers(0, grey.shape[1] - SIDE, n // 2)
        cut.append(np.stack([grey[r:r + SIDE, c:c + SIDE].ravel() for r, c in zip(rows, cols, strict=True)]))
    x = np.concatenate(cut)
    x = x - x.mean(1, keepdims=True)
    x = torch.tensor(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=torch.float32)
    y = torch.arange(len(x)) // (n // 2)
    return Task("patches", {"name": "patches", "n": n, "seed": seed}, x, y, x, y, n_classes=2,
                class_names=["temple", "flower"])


def bias_free_mlp() -> Architecture:
    return Architecture({"input_shape": [SIDE * SIDE], "layers": [
        {"type": "linear", "in_features": SIDE * SIDE, "out_features": HIDDEN, "bias": False}, {"type": "relu"},
        {"type": "linear", "in_features": HIDDEN, "out_features": 2, "bias": False}]})


def train(arch: Architecture, task: Task, steps: int, weight_decay: float, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Full-batch training to convergence; the flat weights and the final cross-entropy."""
    torch.manual_seed(seed)
    net = arch.build().double()
    with torch.no_grad():
        for layer in (net[0], net[2]):
            layer.weight.normal_(0.0, layer.in_features ** -0.5)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=weight_decay)
    x = task.x_train.double()
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), task.y_train)
        loss.backward()
        optimiser.step()
    return arch.flatten({k: v.float() for k, v in net.state_dict().items()}), loss.item()


def row(n: int, steps: int, weight_decay: float, extract_steps: int) -> tuple[dict, torch.Tensor, Task]:
    """One row of the table; also the pooled candidates and the task, for the figure."""
    task, arch = patches_task(n), bias_free_mlp()
    start = time.perf_counter()
    weights, loss = train(arch, task, steps, weight_decay)
    trained = time.perf_counter() - start
    runs = [reconstruct_training_data(arch, weights, task, n=2 * n, steps=extract_steps, random_state=seed)
            for seed in range(RUNS)]
    candidates = torch.cat([r.inputs for r in runs])
    pooled = recovery(candidates, task.x_train)
    noise = torch.randn(RUNS * 2 * n, SIDE * SIDE, generator=torch.Generator().manual_seed(0))
    baseline = recovery(noise, task.x_train)
    others = torch.cdist(task.x_train, task.x_train).fill_diagonal_(float("inf")).min(1).values
    return {"n": n, "train_steps": steps, "weight_decay": weight_decay, "train_loss": loss,
            "train_accuracy": float((arch.build(weights)(task.x_train).argmax(1) == task.y_train).float().mean()),
            "median_residual": float(np.median([r.residual for r in runs])),
            "recovered": float(pooled["recovered"].mean()), "recovered_per_run":
                [float(recovery(r.inputs, task.x_train)["recovered"].mean()) for r in runs],
            "random_recovered": float(baseline["recovered"].mean()),
            "median_distance": float(pooled["distance"].median()),
            "median_distance_random": float(baseline["distance"].median()),
            "median_distance_to_other_example": float(others.median()),
            "train_seconds": trained, "extract_seconds": time.perf_counter() - start - trained}, candidates, task


def figure(candidates: torch.Tensor, task: Task) -> None:
    """Each training example under its nearest candidate (``docs/screenshots/reconstruction.png``, through
    kaleido and Debian's chromium)."""
    found = recovery(candidates, task.x_train)
    shape = (len(found), SIDE, SIDE)
    fig = inversion_pairs(candidates[found["candidate"].tolist()].reshape(shape).numpy(),
                          task.x_train.reshape(shape).numpy(), task.y_train.tolist(), found["distance"].to_numpy(),
                          columns=len(found), title="Read back from the weights (above) and the training patch they "
                                                    "are nearest to (below): class · distance")
    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
    FIGURE.write_bytes(fig.to_image(format="png", width=1000, height=300, scale=1))
    print(f"wrote {FIGURE.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", choices=sorted(ROWS), default="default")
    parser.add_argument("--extract-steps", type=int, default=1000)
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args()
    print(f"recovered: a candidate within {RECOVERY_DISTANCE} of the example (between unit vectors); {RUNS} runs "
          "of 2n candidates pooled; random: as many standard-normal candidates")
    print(f"{'n':>4} {'steps':>6} {'decay':>6} {'loss':>8} {'residual':>9} {'recovered':>9} {'random':>6} "
          f"{'med dist':>8} {'to other':>8} {'seconds':>7}")
    rows = []
    for i, (n, steps, decay) in enumerate(ROWS[args.rows]):
        r, candidates, task = row(n, steps, decay, args.extract_steps)
        rows.append(r)
        if i == 0 and not args.no_figure:
            figure(candidates, task)
        print(f"{n:4d} {steps:6d} {decay:6.0e} {r['train_loss']:8.4f} {r['median_residual']:9.1e} "
              f"{r['recovered']:9.2f} {r['random_recovered']:6.2f} {r['median_distance']:8.2f} "
              f"{r['median_distance_to_other_example']:8.2f} {r['train_seconds'] + r['extract_seconds']:7.0f}",
              flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"extract_steps": args.extract_steps, "rows": rows}, indent=1))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
