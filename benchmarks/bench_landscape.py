"""wslviz's batched landscapes against the ``loss-landscapes`` package (PyPI), same model, data and grid.

``loss-landscapes`` moves one ``nn.Module``'s parameters in place and runs one forward pass per grid
point; wslviz builds all grid points as one ``[G, P]`` weight matrix and evaluates them in one batched
call. Three workloads, each on one sample-zoo model (the best final checkpoint = A, the next two = B, C)
and its test split, cross-entropy loss:

* **line**: ``linear_interpolation(A, B, steps=S)`` evaluates t = 1/S, ..., 1 (S points; it never
  evaluates t = 0); wslviz's :func:`~wslviz.understand.landscape.interpolate` evaluates those S points *and* t = 0
  (S + 1 points, one more than the peer). The losses at the common t are compared.
* **plane**: ``planar_interpolation(A, B, C, steps=S)``: S x S points ``A + i (B - A)/S + j (C - A)/S``;
  wslviz evaluates the same S x S points with :func:`~wslviz.understand.surfaces.surface` on the same (non
  orthonormal) directions (through :func:`~wslviz.core.evaluation.evaluate_affine`: the first layer of every
  grid point is an exact affine combination of three precomputed first-layer outputs). The peer's rows
  alternate direction (even rows j = 1..S, odd rows j = 0..S-1); losses are compared on the even rows,
  where the points coincide.
* **random plane**: ``random_plane(A, distance=1, steps=S, normalization="filter")`` (S x S points, uniform
  directions) against :func:`~wslviz.understand.surfaces.random_plane` (S x S points, Gaussian filter-normalised
  directions, Li et al. 2018): equal work, different random directions, so only times are compared.

The peer runs in its own virtual environment ``benchmarks/.venv-loss-landscapes`` (created on demand:
``torch==2.13.0`` first, then ``loss-landscapes``) in a subprocess started by this script, on the same
data (saved to a temporary file), with the same number of torch threads. Each side's time is the best of
``--repeats`` runs. Writes ``benchmarks/results/bench_landscape.json``.

    .venv/bin/python benchmarks/bench_landscape.py [--zoos moons-mlp digits-cnn] [--line-steps 101]
        [--plane-steps 51] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / "benchmarks" / ".venv-loss-landscapes"
PEER_PYTHON = PEER_VENV / "bin" / "python"
TARGET_RATIO = 5.0


def ensure_peer_venv() -> None:
    """Create the peer's virtual environment if it is missing (CPU torch first, then loss-landscapes)."""
    if PEER_PYTHON.exists():
        return
    print(f"creating {PEER_VENV} ...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(PEER_PYTHON), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + ["loss-landscapes==3.0.6"], check=True)


def best_time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


# ------------------------------------------------------------------ the peer's side (its own venv)
def peer_side(data_path: str, out_path: str) -> None:
    """Runs inside ``.venv-loss-landscapes``: torch, loss_landscapes and wslviz.core.arch (torch only)."""
    import torch
    from loss_landscapes import linear_interpolation, planar_interpolation, random_plane
    from loss_landscapes.metrics import Loss

    sys.path.insert(0, str(ROOT))
    from wslviz.core.arch import Architecture

    data = torch.load(data_path, weights_only=True)
    torch.set_num_threads(int(data["threads"]))
    arch = Architecture(json.loads(data["spec"]))
    metric = Loss(torch.nn.CrossEntropyLoss(), data["x"], data["y"])
    a, b, c = data["weights"]
    repeats, s_line, s_plane = int(data["repeats"]), int(data["line_steps"]), int(data["plane_steps"])
    results = {}
    # each run gets fresh models: the peer moves the first model's parameters in place
    results["line"] = best_time(lambda: linear_interpolation(arch.build(a), arch.build(b), metric, steps=s_line),
                                repeats)
    results["plane"] = best_time(lambda: planar_interpolation(arch.build(a), arch.build(b), arch.build(c), metric,
                                                              steps=s_plane), repeats)
    torch.manual_seed(0)
    results["random_plane"] = best_time(lambda: random_plane(arch.build(a), metric, distance=1, steps=s_plane,
                                                             normalization="filter"), repeats)
    Path(out_path).write_text(json.dumps({k: {"seconds": t, "values": v.tolist()} for k, (t, v) in results.items()}))


# ------------------------------------------------------------------ wslviz's side
def run_peer(arch_json: str, weights, x, y, args) -> dict:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.pt", Path(tmp) / "peer.json"
        torch.save({"spec": arch_json, "weights": weights, "x": x, "y": y, "threads": args.threads,
                    "repeats": args.repeats, "line_steps": args.line_steps, "plane_steps": args.plane_steps}, data)
        subprocess.run([str(PEER_PYTHON), __file__, "--peer-side", str(data), str(out)], check=True)
        return json.loads(out.read_text())


def bench_zoo(name: str, args) -> dict:
    import numpy as np
    import torch

    from wslviz.scale.cache import load_zoo
    from wslviz.understand import landscape as L
    from wslviz.understand import surfaces as S

    zoo = load_zoo(ROOT / "sample_zoo" / name)
    final = zoo.final_index()
    best = final[np.argsort(-zoo.metadata["test_acc"].to_numpy()[final], kind="stable")[:3]]
    a, b, c = (zoo.weights[int(r)].clone() for r in best)
    x, y = zoo.task.x_test, zoo.task.y_test
    s_line, s_plane, reps = args.line_steps, args.plane_steps, args.repeats
    peer = run_peer(zoo.arch.to_json(), torch.stack([a, b, c]), x, y, args)

    ours = {}
    ours["line"] = best_time(lambda: L.interpolate(zoo.arch, zoo.task, a, b, steps=s_line + 1), reps)
    steps = np.arange(s_plane) / s_plane
    dirs = torch.stack([b - a, c - a])
    ours["plane"] = best_time(lambda: S.surface(zoo.arch, zoo.task, a, dirs, steps, steps + 1.0 / s_plane), reps)
    ours["random_plane"] = best_time(lambda: S.random_plane(zoo.arch, zoo.task, a, resolution=s_plane, span=1.0),
                                     reps)

    # agreement where both evaluate the same points
    line_ours = ours["line"][1].set_index("t")["loss"]
    t_peer = np.arange(1, s_line + 1) / s_line
    line_diff = float(np.max(np.abs(line_ours.reindex(t_peer, method="nearest").to_numpy()
                                    - np.asarray(peer["line"]["values"]))))
    plane_peer = np.asarray(peer["plane"]["values"])  # [i (B - A), j (C - A)]
    plane_ours = ours["plane"][1].loss.T  # surface rows are y (C - A): transpose to [i, j]
    plane_diff = float(np.max(np.abs(plane_ours[0::2] - plane_peer[0::2])))

    counts = {"line": (s_line + 1, s_line), "plane": (s_plane ** 2, s_plane ** 2),
              "random_plane": (s_plane ** 2, s_plane ** 2)}
    rows = []
    for work in ("line", "plane", "random_plane"):
        t_ours, t_peer_s = ours[work][0], peer[work]["seconds"]
        rows.append({"workload": work, "points_wslviz": counts[work][0], "points_peer": counts[work][1],
                     "seconds_wslviz": t_ours, "seconds_peer": t_peer_s, "ratio": t_peer_s / t_ours})
    print(f"\nzoo {name} ({zoo.arch.describe()}), {len(x)} test inputs, {args.threads} thread(s), best of {reps}")
    print(f"{'workload':<13} {'points (wslviz/peer)':>21} {'wslviz s':>9} {'peer s':>9} {'speed-up':>9}")
    for r in rows:
        print(f"{r['workload']:<13} {r['points_wslviz']:>10}/{r['points_peer']:<10} {r['seconds_wslviz']:>9.3f} "
              f"{r['seconds_peer']:>9.3f} {r['ratio']:>8.1f}x")
    print(f"max |loss difference| on common points: line {line_diff:.2e}, plane (even rows) {plane_diff:.2e}")
    return {"zoo": name, "architecture": zoo.arch.describe(), "n_inputs": len(x),
            "max_abs_loss_difference": {"line": line_diff, "plane_even_rows": plane_diff}, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoos", nargs="+", default=["moons-mlp", "digits-cnn"])
    parser.add_argument("--line-steps", type=int, default=101)
    parser.add_argument("--plane-steps", type=int, default=51)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_landscape.json"))
    parser.add_argument("--peer-side", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_side:
        peer_side(*args.peer_side)
        return

    import torch

    ensure_peer_venv()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    zoos = [bench_zoo(name, args) for name in args.zoos]
    load_after = os.getloadavg()
    ratios = [r["ratio"] for z in zoos for r in z["results"]]
    ok = min(ratios) >= TARGET_RATIO
    print(f"\nspeed-up range {min(ratios):.1f}x - {max(ratios):.1f}x; target >= {TARGET_RATIO:.0f}x on every "
          f"workload: {'met' if ok else 'NOT met'}; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    result = {"threads": args.threads, "repeats": args.repeats, "line_steps": args.line_steps,
              "plane_steps": args.plane_steps, "target_ratio": TARGET_RATIO, "met": ok,
              "loadavg_before": load_before, "loadavg_after": load_after, "zoos": zoos}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
