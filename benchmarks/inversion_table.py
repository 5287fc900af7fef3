"""Data-free distillation on ``digits-resnet``: a student trained only on inputs inverted from the best checkpoint.

DeepInversion (``wv.invert``) recovers ``--n`` inputs from the most accurate final checkpoint's weights (its
BatchNorm statistics and its classifier); a fresh student of the same architecture is distilled (``wv.distil``)
on them alone, and, side by side in the same run, on as many standard-normal noise inputs (the baseline: what
distillation gets without the inversion) and on as many real training images (the reference: what the same
distillation gets from the data itself). Prints the test accuracies, writes them to
``benchmarks/results/inversion_table.json`` and draws 40 inverted digits (``docs/screenshots/inversion.png``,
through kaleido and Debian's chromium; ``--no-figure`` skips it).

    .venv/bin/python benchmarks/inversion_table.py [--n 500] [--steps 600] [--epochs 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

import wslviz as wv
from wslviz.core.zoo import checkpoint_accuracies
from wslviz.plots.inr import image_grid

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "inversion_table.json"
FIGURE = ROOT / "docs" / "screenshots" / "inversion.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args()
    zoo = wv.load_zoo(ROOT / "sample_zoo" / "digits-resnet")
    final = zoo.final_index()
    teacher = int(final[np.argmax(checkpoint_accuracies(zoo, final))])
    weights = zoo.weights[teacher]
    start = time.perf_counter()
    inv = wv.invert(zoo.arch, weights, n=args.n, steps=args.steps, random_state=args.seed)
    seconds = time.perf_counter() - start
    gen = torch.Generator().manual_seed(args.seed)
    sources = {"inverted": inv.images, "noise": torch.randn(inv.images.shape, generator=gen),
               "real training images": zoo.task.x_train[torch.randperm(len(zoo.task.x_train), generator=gen)[:args.n]]}
    row = {"teacher_row": teacher, "n": args.n, "steps": args.steps, "epochs": args.epochs, "seed": args.seed,
           "invert_seconds": seconds, "mean_confidence": float(inv.confidence.mean()), "bn_loss": inv.bn_loss,
           "teacher_test_acc": float(wv.evaluate(zoo.arch, zoo.task, weights[None])["accuracy"][0])}
    print(f"teacher: row {teacher}, test accuracy {row['teacher_test_acc']:.3f}; {args.n} inputs inverted in "
          f"{seconds:.0f} s (mean confidence {row['mean_confidence']:.3f}, BatchNorm mismatch {inv.bn_loss:.3f})")
    for name, inputs in sources.items():
        student = wv.distil(zoo.arch, weights, inputs, epochs=args.epochs, random_state=args.seed)
        acc = float(wv.evaluate(zoo.arch, zoo.task, student[None])["accuracy"][0])
        row[f"student_on_{name.split()[0]}"] = acc
        print(f"student distilled on {args.n} {name:22s} test accuracy {acc:.3f}", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(row, indent=1))
    print(f"wrote {OUT.relative_to(ROOT)}")
    if not args.no_figure:
        shown = torch.cat([torch.nonzero(inv.labels == c)[:4, 0] for c in range(int(inv.labels.max()) + 1)])
        images = inv.images[shown, 0].numpy()
        low, high = images.min((1, 2), keepdims=True), images.max((1, 2), keepdims=True)
        fig = image_grid((images - low) / np.maximum(high - low, 1e-8),
                         [f"{int(inv.labels[i])} (p={float(inv.confidence[i]):.2f})" for i in shown], columns=10)
        fig.update_layout(title="Digits inverted from one digits-resnet checkpoint's weights (no data)",
                          margin={"t": 80, "l": 20, "r": 20, "b": 20})
        os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
        FIGURE.write_bytes(fig.to_image(format="png", width=1000, height=520, scale=1))
        print(f"wrote {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
