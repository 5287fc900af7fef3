"""Feature extraction and projection cost for synthetic zoos of 1k, 10k and 50k checkpoints of the
digits-cnn architecture (1,954 parameters per row): time and peak resident memory of ``stats``,
``spectral`` and ``flat`` + PCA features, and of PCA / UMAP / t-SNE projections of the ``stats`` features.

UMAP and t-SNE run up to 1k points by default (``--umap-max`` raises UMAP's limit: 10k points took 317 s
on this shared machine under load, so the default keeps the whole run near 3 minutes; the Projections page
offers subsampling above 5,000 checkpoints). UMAP's one-time numba compilation is timed separately. The
spectral features' Gram-eigenvalue route is timed against ``torch.linalg.svdvals`` side by side at 10k.
Peak memory is the process's resident high-water mark (``VmHWM``), reset before each step through
``/proc/self/clear_refs``, minus the resident size before it. Writes ``benchmarks/results/bench_features.json``.
Usage:
    .venv/bin/python benchmarks/bench_features.py [--sizes 1000 10000 50000] [--umap-max 10000]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from wslviz.core.arch import Architecture
from wslviz.core.training import DIGITS_CNN
from wslviz.core.zoo import Zoo
from wslviz.represent.features import compute_features
from wslviz.represent.projection import project, warm_up_umap

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
TSNE_MAX = 1_000


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(fn):
    """``(result, seconds, peak MiB above the starting resident size)`` of ``fn()``."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the resident high-water mark
    except OSError:
        pass
    before = _rss_kib("VmRSS")
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    return out, seconds, max(0, _rss_kib("VmHWM") - before) / 1024


def synthetic_zoo(n: int, seed: int = 0) -> Zoo:
    arch = Architecture(DIGITS_CNN)
    g = torch.Generator().manual_seed(seed)
    # per-model scales so that the statistics vary like a real zoo's
    w = torch.randn(n, arch.n_params, generator=g) * torch.rand(n, 1, generator=g).add_(0.1)
    meta = pd.DataFrame({"model_id": np.arange(n) // 6, "epoch": np.arange(n) % 6})
    return Zoo(name=f"synthetic-{n}", metadata=meta, weights=w, arch=arch)


def bench_size(n: int, umap_max: int) -> dict:
    """Time and peak memory of every step on a synthetic zoo of ``n`` checkpoints."""
    zoo = synthetic_zoo(n)
    row: dict = {}

    def record(name: str, fn):
        out, s, mib = measure(fn)
        row[name] = {"seconds": s, "peak_mib": mib}
        print(f"{n:>7} {name:<22} {s:>8.2f} {mib:>9.0f}", flush=True)
        return out

    stats = record("stats", lambda: compute_features(zoo, "stats"))
    record("spectral", lambda: compute_features(zoo, "spectral"))
    if n == 10_000:
        mats = [p for p in zoo.arch.layout if p.role == "weight"]
        record("spectral (svdvals)", lambda: [torch.linalg.svdvals(zoo.weights[:, p.slice].reshape(n, p.shape[0], -1))
                                              for p in mats])
        ratio = row["spectral (svdvals)"]["seconds"] / row["spectral"]["seconds"]
        row["spectral_speedup_vs_svdvals"] = ratio
        print(f"{n:>7} {'  svdvals / ours':<22} {ratio:>8.1f}x")
    record("flat + PCA 2D", lambda: project(compute_features(zoo, "flat"), "pca", 2))
    record("PCA 2D of stats", lambda: project(stats, "pca", 2))
    if n <= umap_max:
        record("UMAP 2D of stats", lambda: project(stats, "umap", 2))
    if n <= TSNE_MAX:
        record("t-SNE 2D of stats", lambda: project(stats, "tsne", 2))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000])
    ap.add_argument("--umap-max", type=int, default=1_000, help="largest zoo projected with UMAP")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_features.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)  # comparable across runs on a shared 2-core machine
    results: dict = {"threads": 1, "params_per_row": Architecture(DIGITS_CNN).n_params, "sizes": {}}
    _, warm_s, _ = measure(warm_up_umap)
    results["umap_compile_seconds"] = warm_s
    print(f"UMAP numba warm-up: {warm_s:.1f} s (once per process)")
    print(f"{'n':>7} {'step':<22} {'seconds':>8} {'peak MiB':>9}")
    for n in args.sizes:
        results["sizes"][n] = bench_size(n, args.umap_max)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
