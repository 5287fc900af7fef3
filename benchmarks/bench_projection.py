"""What a Projections-page fit costs on the bundled zoos' ``stats`` features: t-SNE as the page runs it
(:func:`wslviz.represent.projection.tsne_backend`: openTSNE when installed, else scikit-learn with 500
iterations on one OpenMP thread), scikit-learn's t-SNE as it ran before (1,000 iterations, every thread),
UMAP (its numba compilation warmed up first, timed apart), and reading a stored fit back from disk
(:class:`wslviz.represent.projection.ProjectionStore`). Each fit is timed ``--repeat`` times; the load
average is printed beside the results, since a shared machine's timings depend on it.

Usage:
    .venv/bin/python benchmarks/bench_projection.py [--zoos moons-mlp digits-cnn] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from wslviz.represent import projection
from wslviz.represent.features import compute_features
from wslviz.scale.cache import load_zoo

ROOT = Path(__file__).resolve().parents[1]


def seconds(fit) -> float:
    start = time.perf_counter()
    fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoos", nargs="+", default=["moons-mlp", "digits-cnn"])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    warm = np.random.default_rng(0).normal(size=(64, 4))
    projection.project(warm, "tsne", 2)  # first-call costs (imports, OpenMP start) kept out of the fits
    print(f"UMAP numba warm-up: {seconds(projection.warm_up_umap):.1f} s")
    store = projection.ProjectionStore(tempfile.mkdtemp())
    for name in args.zoos:
        bench_zoo(name, store, args.repeat)
    print("load average (1, 5, 15 min):", ", ".join(f"{v:.2f}" for v in os.getloadavg()))


def bench_zoo(name: str, store: projection.ProjectionStore, repeat: int) -> None:
    """Print the fit times of one bundled zoo's ``stats`` features."""
    zoo = load_zoo(ROOT / "sample_zoo" / name)
    x = compute_features(zoo, "stats")
    runs = {
        f"t-SNE, page setting ({projection.tsne_backend()})": partial(projection.project, x, "tsne", 2),
        "t-SNE, before (scikit-learn, 1,000 iterations, all threads)": partial(_sklearn_before, x),
        "UMAP": partial(projection.project, x, "umap", 2),
    }
    for label, fit in runs.items():
        times = [seconds(fit) for _ in range(repeat)]
        print(f"{name} {list(x.shape)} {label}: " + ", ".join(f"{t:.1f} s" for t in times), flush=True)
    key = projection.cache_key(zoo.fingerprint, "stats", "tsne", 2, 0)
    stored = partial(projection.load_or_fit, lambda: x, "tsne", 2, 0, store, key)
    stored()
    print(f"{name} t-SNE read back from disk: {seconds(stored) * 1000:.1f} ms", flush=True)


def _sklearn_before(x: np.ndarray) -> np.ndarray:
    from sklearn.manifold import TSNE

    z = projection.standardise(x)
    with threadpool_limits(None):
        return TSNE(2, perplexity=min(30.0, (len(z) - 1) / 3), init="pca", random_state=0).fit_transform(z)


if __name__ == "__main__":
    main()
