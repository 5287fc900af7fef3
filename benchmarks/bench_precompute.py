"""Precompute throughput on a Dask LocalCluster, and an estimate for a 2.5M-checkpoint zoo on N workers.

Synthetic zoos of digits-CNN size (the bundled ``digits-cnn`` architecture and task; its trained rows
tiled with small noise) of 1k, 10k and 50k checkpoints are precomputed with 1 and 2 single-threaded
worker processes. Measured side by side in one run:

* per-checkpoint cost of each feature kind in this process on one thread (the workers' setting);
* wall time of ``precompute_zoo`` through Dask (chunks, files, merge) with 1 and 2 workers;
* the Dask overhead ratio: 1-worker wall time / in-process cost of the same rows.

The estimate for a 50,000-model, 2.5M-checkpoint zoo on N workers is
``2.5M * cost_per_checkpoint * overhead / N + merge``, with the merge (single process) scaled from the
measured merge rate of the largest zoo. Evaluation (the dominant cost) runs at 1k only, so that the
whole script stays within about 5 minutes; 10k and 50k run stats+spectral. The machine is shared: the
load average is recorded alongside, and per-checkpoint costs measured under load are higher than on an
idle core.

Usage: ``.venv/bin/python benchmarks/bench_precompute.py`` (about 4 minutes); ``--quick`` for 1k only.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import evaluate
from wslviz.core.zoo import Zoo
from wslviz.formats import save_zoo
from wslviz.represent.features import default_reference, functional_features, spectral_features, weight_stats
from wslviz.scale.cache import load_zoo
from wslviz.scale.precompute import precompute_zoo
from wslviz.understand.align import align_zoo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_precompute.json"
TARGET_CHECKPOINTS = 2_500_000
TARGET_MODELS = 50_000
CLUSTER_SIZES = (8, 64, 256)
# feature kinds per zoo size: the full set where it fits the time budget, fewer at 50k (said in the output)
PLAN = {1_000: (("stats", "spectral"), True), 10_000: (("stats", "spectral"), False),
        50_000: (("stats", "spectral"), False)}


def synthetic_zoo(base: Zoo, n: int, seed: int = 0) -> Zoo:
    """``n`` checkpoints of ``base``'s architecture and task: its rows tiled, plus 1 % noise (distinct rows)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n) % base.n_checkpoints
    w = base.weights[idx].clone()
    w += 0.01 * w.std() * torch.randn(w.shape, generator=g)
    meta = pd.DataFrame({"model_id": np.arange(n) // 50, "epoch": np.arange(n) % 50})
    return replace(base, name=f"synthetic-{n}", weights=w, metadata=meta, cache=None)


def per_checkpoint_costs(zoo: Zoo, n: int = 500, n_aligned: int = 40) -> dict[str, float]:
    """Seconds per checkpoint of each per-row computation, in this process on one thread."""
    torch.set_num_threads(1)
    # rows spread over the whole zoo (all models, all epochs); the reference is the best final checkpoint
    part = zoo.subset(np.linspace(0, zoo.n_checkpoints - 1, n).astype(int))
    ref = zoo.weights[default_reference(zoo)].float()
    jobs = {
        "stats": (n, lambda: weight_stats(part.arch, part.weights)),
        "spectral": (n, lambda: spectral_features(part.arch, part.weights)),
        "evaluate": (n, lambda: [evaluate(part.arch, part.task, part.weights, s) for s in ("train", "test")]),
        "functional": (n, lambda: functional_features(part)),
        "aligned": (n_aligned, lambda: align_zoo(part.arch, part.weights[:n_aligned].float(), ref)),
    }
    costs = {}
    for name, (rows, job) in jobs.items():
        start = time.perf_counter()
        job()
        costs[name] = (time.perf_counter() - start) / rows
    return costs


def main() -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 1k zoo")
    args = parser.parse_args()
    plan = {k: v for k, v in PLAN.items() if not args.quick or k == 1_000}
    base = load_zoo(ROOT / "sample_zoo" / "digits-cnn", cache=False)
    load_before = os.getloadavg()
    costs = per_checkpoint_costs(base)
    print(f"digits-CNN ({base.n_params} params), per-checkpoint cost in-process, 1 thread (ms):")
    for name, c in costs.items():
        print(f"  {name:10s} {1e3 * c:8.3f}")

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-precompute-") as tmp:
        zoos = {}
        for n in plan:
            start = time.perf_counter()
            zoos[n] = save_zoo(synthetic_zoo(base, n), Path(tmp) / f"zoo-{n}")
            print(f"wrote a synthetic zoo of {n} checkpoints ({time.perf_counter() - start:.1f} s)")
        for workers in (1, 2):
            start = time.perf_counter()
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                    Client(cl) as client:
                startup = time.perf_counter() - start
                client.run(lambda: __import__("wslviz.scale.precompute") and None)  # imports are a one-off per worker
                for n, (kinds, with_eval) in plan.items():
                    out = Path(tmp) / f"cache-{n}-{workers}"
                    report = precompute_zoo(zoos[n], out, features=kinds, evaluate=with_eval, client=client)
                    inproc = n * (sum(costs[k] for k in kinds) + (costs["evaluate"] if with_eval else 0.0))
                    run = {"checkpoints": n, "workers": workers, "features": list(kinds), "evaluate": with_eval,
                           "chunks": report.n_chunks, "seconds": report.seconds, "merge_seconds": report.merge_seconds,
                           "checkpoints_per_s": n / report.seconds, "in_process_seconds_1_thread": inproc,
                           "cluster_start_seconds": startup, "load_average": os.getloadavg()[0]}
                    runs.append(run)
                    print(f"{n:6d} ckpts, {workers} worker(s), {'+'.join(kinds) + ('+evaluate' if with_eval else '')}: "
                          f"{report.seconds:6.1f} s ({n / report.seconds:7.0f} ckpt/s, {report.n_chunks} chunks, merge "
                          f"{report.merge_seconds:.2f} s); in-process estimate {inproc:.1f} s; "
                          f"load {run['load_average']:.1f}")

    by = {(r["checkpoints"], r["workers"]): r for r in runs}
    speedups = {n: by[(n, 1)]["seconds"] / by[(n, 2)]["seconds"] for n in plan}
    overhead = float(np.median([by[(n, 1)]["seconds"] / by[(n, 1)]["in_process_seconds_1_thread"] for n in plan]))
    # merge rate of the largest stats+spectral table (fixed costs dominate small zoos)
    merge_run = max((r for r in runs if r["workers"] == 1), key=lambda r: (r["checkpoints"], len(r["features"])))
    merge_per_ckpt = merge_run["merge_seconds"] / merge_run["checkpoints"]
    print("2-worker speedup over 1 worker: " + ", ".join(f"{n}: {s:.2f}x" for n, s in speedups.items()))
    print(f"Dask overhead (1-worker wall / in-process, median over sizes): {overhead:.2f}x")

    feature_sets = {"stats+spectral": ("stats", "spectral"),
                    "stats+spectral+evaluate": ("stats", "spectral", "evaluate"),
                    "stats+spectral+functional+evaluate": ("stats", "spectral", "functional", "evaluate"),
                    "all incl. aligned": ("stats", "spectral", "functional", "evaluate", "aligned")}
    estimate = {}
    print(f"Estimate for {TARGET_MODELS:,} models / {TARGET_CHECKPOINTS:,} checkpoints of digits-CNN size "
          f"(compute x {overhead:.2f} Dask overhead / N + merge {merge_per_ckpt * TARGET_CHECKPOINTS / 60:.1f} min "
          "for tables; aligned weights add a streamed copy of the weight matrix):")
    for label, kinds in feature_sets.items():
        per = sum(costs[k] for k in kinds)
        row = {}
        for n_workers in CLUSTER_SIZES:
            hours = (TARGET_CHECKPOINTS * per * overhead / n_workers + merge_per_ckpt * TARGET_CHECKPOINTS) / 3600
            row[str(n_workers)] = hours
        estimate[label] = {"seconds_per_checkpoint": per, "hours_by_workers": row}
        print(f"  {label:36s} {1e3 * per:7.2f} ms/ckpt: " +
              ", ".join(f"N={n}: {h:6.2f} h" for n, h in zip(CLUSTER_SIZES, row.values(), strict=True)))

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
                    "note": "shared with other jobs; per-checkpoint costs measured under this load"},
        "architecture": base.arch.describe(), "per_checkpoint_seconds_1_thread": costs, "runs": runs,
        "speedup_2_over_1_worker": {str(n): s for n, s in speedups.items()}, "dask_overhead": overhead,
        "reduced_kinds": "1k: stats+spectral+evaluate; 10k and 50k: stats+spectral (evaluate left out: time budget)",
        "estimate": {"checkpoints": TARGET_CHECKPOINTS, "models": TARGET_MODELS, "by_feature_set": estimate},
    }, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
