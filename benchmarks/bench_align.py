"""Weight matching: wslviz against the ``rebasin`` package (PermutationCoordinateDescent), in one run.

Two MLPs with the Git Re-Basin MNIST shape (64-512-512-512-10 here: scikit-learn's 8x8 digits as
64 inputs) are trained from two seeds (deterministic; about a minute on 2 CPU cores), then model B is aligned
to model A by

* ours: ``wslviz.weight_matching`` (flat weight vectors in, flat weight vectors out), and
* theirs: ``rebasin.PermutationCoordinateDescent(model_a, model_b, x).rebasin()`` on ``nn.Module``s,
  run by the Python of its own virtual environment ``benchmarks/.venv-rebasin`` (the PyPI module
  name ``rebasin`` clashes with ``sinkhorn-rebasin``, so it never goes into the main venv); the
  weights travel through safetensors files in a temporary folder.

Reported (printed and written to ``benchmarks/results/bench_align.json``): medians over ``--repeats``
runs, repeat r with seed r on both sides (the order coordinate descent visits the layers), alternating
so both see the same machine load: wall time (theirs includes the
model-graph tracing its API requires for every alignment; ours starts from flat vectors, the form
wslviz keeps weights in), the time ratio, the test-loss barrier along the linear path from A to
aligned B for both (and for naive B), the check that each aligned B computes what B computes, and the
distance to A. Both sides align with the same number of torch threads (``--threads``, default 1: on a
shared machine oversubscribed threads only add noise; 0 keeps torch's default).

Barrier: max over t in a grid of ``loss((1-t) A + t B) - ((1-t) loss(A) + t loss(B))``.

Run: ``.venv/bin/python benchmarks/bench_align.py`` (or ``make bench``). When ``benchmarks/.venv-rebasin``
is missing it is created first: ``python3 -m venv benchmarks/.venv-rebasin``, then
``pip install torch==2.13.0`` (first, so the CPU build is used), then ``pip install rebasin safetensors``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-rebasin"
VENV_PY = VENV / "bin" / "python"
RESULTS = HERE / "results" / "bench_align.json"
WIDTHS = [64, 512, 512, 512, 10]


# ---------------------------------------------------------------- their side (runs in .venv-rebasin)
def _build_mlp(widths: list[int]):
    """``nn.Sequential`` with wslviz's layer indices (linear at 0, 2, 4, ...; ReLU between)."""
    from torch import nn

    layers: list = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def rebasin_side(folder: Path, seed: int, threads: int) -> None:
    """Align model B to A with rebasin once; write B's aligned weights and the timings."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    from rebasin import PermutationCoordinateDescent
    from safetensors.torch import load_file, save_file

    a_sd, b_sd = load_file(str(folder / "a.safetensors")), load_file(str(folder / "b.safetensors"))
    x = load_file(str(folder / "x.safetensors"))["x"]
    torch.manual_seed(seed)  # rebasin visits permutations in torch.randperm order
    model_a, model_b = _build_mlp(WIDTHS), _build_mlp(WIDTHS)
    model_a.load_state_dict(a_sd)
    model_b.load_state_dict(b_sd)
    start = time.perf_counter()
    pcd = PermutationCoordinateDescent(model_a, model_b, x)
    traced = time.perf_counter()
    pcd.rebasin()
    end = time.perf_counter()
    save_file({k: v.contiguous() for k, v in model_b.state_dict().items()}, str(folder / "b_rebasin.safetensors"))
    json.dump({"time": end - start, "init_time": traced - start, "torch": torch.__version__,
               "threads": torch.get_num_threads()}, open(folder / "rebasin.json", "w"))


# ---------------------------------------------------------------- our side (main venv)
def ensure_venv() -> Path:
    """Create ``benchmarks/.venv-rebasin`` with torch==2.13.0 then rebasin, unless it already works."""
    if VENV_PY.exists() and subprocess.run([str(VENV_PY), "-c", "import rebasin, safetensors"],
                                           capture_output=True).returncode == 0:
        return VENV_PY
    print(f"creating {VENV} (torch==2.13.0, then rebasin) ...", flush=True)
    python = shutil.which("python3") or sys.executable
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV_PY), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + ["rebasin", "safetensors"], check=True)
    return VENV_PY


def train_pair(epochs: int, seeds=(0, 1)):
    """Two MLPs trained together (one batched forward) with Adam on digits; deterministic per seed."""
    import torch
    import torch.nn.functional as F

    from wslviz.core.arch import Architecture, mlp_spec
    from wslviz.core.batched import forward

    arch = Architecture(mlp_spec(WIDTHS))
    task = digits_flat()
    inits = []
    for s in seeds:
        torch.manual_seed(s)
        inits.append(arch.flatten(_build_mlp(WIDTHS).state_dict()))
    w = torch.stack(inits).requires_grad_(True)
    opt = torch.optim.Adam([w], lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x, y = task.x_train, task.y_train
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            out = forward(arch, w, x[idx])[0]  # [2, batch, 10]
            loss = F.cross_entropy(out.reshape(-1, 10), y[idx].repeat(len(seeds)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return arch, task, w.detach()


def digits_flat():
    """scikit-learn digits as 64-dimensional vectors (wslviz's digits task, flattened)."""
    from dataclasses import replace

    from wslviz.core.tasks import make_task

    task = make_task("digits")
    return replace(task, name="digits-64", x_train=task.x_train.flatten(1), x_test=task.x_test.flatten(1))


def barrier(arch, task, a, b, steps: int = 25) -> tuple[float, list[float]]:
    """Test-loss barrier on the linear path from ``a`` to ``b`` (all points in one batched evaluation)."""
    import torch

    from wslviz.core.evaluation import evaluate

    t = torch.linspace(0, 1, steps).unsqueeze(1)
    losses = evaluate(arch, task, (1 - t) * a + t * b)["loss"]
    linear = (1 - t[:, 0]) * losses[0] + t[:, 0] * losses[-1]
    return float((losses - linear).max()), losses.tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rebasin-side", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides while aligning (0: torch's default)")
    args = parser.parse_args()
    if args.rebasin_side:
        rebasin_side(args.rebasin_side, args.seed, args.threads)
        return

    import torch
    from safetensors.torch import load_file, save_file

    import wslviz as wv
    from wslviz.understand.symmetry import KINDS, equivalence_gap

    venv_python = ensure_venv()
    t0 = time.perf_counter()
    arch, task, w = train_pair(args.epochs)
    a, b = w[0], w[1]
    acc = wv.evaluate(arch, task, w)["accuracy"].tolist()
    print(f"trained 2 x {arch.describe()} in {time.perf_counter() - t0:.1f}s; test accuracy {acc}")

    import wslviz.understand.align  # noqa: F401  (imported before timing: its scipy import is not part of a match)
    names = ("wslviz", "wslviz_permutation_only", "rebasin")
    times: dict[str, list[float]] = {n: [] for n in names}
    aligned: dict[str, list] = {n: [] for n in names}
    tracing = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_file({k: v.contiguous() for k, v in arch.unflatten(a).items()}, str(folder / "a.safetensors"))
        save_file({k: v.contiguous() for k, v in arch.unflatten(b).items()}, str(folder / "b.safetensors"))
        save_file({"x": task.x_train[:64].contiguous()}, str(folder / "x.safetensors"))
        # the two sides alternate, so that both see the same machine load, with the same torch threads;
        # repeat r uses seed r on both sides (the order in which coordinate descent visits the layers)
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        for r in range(args.repeats):
            for name, kinds in (("wslviz", KINDS), ("wslviz_permutation_only", ("permutation",))):
                start = time.perf_counter()
                aligned[name].append(wv.weight_matching(arch, a, b, seed=r, kinds=kinds))
                times[name].append(time.perf_counter() - start)
            subprocess.run([str(venv_python), __file__, "--rebasin-side", str(folder), "--seed", str(r),
                            "--threads", str(args.threads)], check=True)
            info = json.load(open(folder / "rebasin.json"))
            times["rebasin"].append(info["time"])
            tracing.append(info["init_time"])
            aligned["rebasin"].append(arch.flatten(load_file(str(folder / "b_rebasin.safetensors"))))
            print(f"repeat {r}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in names), flush=True)

    naive_barrier, naive_curve = barrier(arch, task, a, b)
    rows = {"naive": {"barrier": naive_barrier, "barriers": [naive_barrier], "curve": naive_curve,
                      "distance_to_a": float((b - a).norm()), "max_output_difference_vs_b": 0.0}}
    for name in names:
        bars = [barrier(arch, task, a, w)[0] for w in aligned[name]]
        rows[name] = {"barrier": statistics.median(bars), "barriers": bars,
                      "curve": barrier(arch, task, a, aligned[name][0])[1],
                      "distance_to_a": statistics.median(float((w - a).norm()) for w in aligned[name]),
                      "max_output_difference_vs_b": max(equivalence_gap(arch, w, b) for w in aligned[name])}
    median = {n: statistics.median(times[n]) for n in names}
    result = {
        "models": arch.describe(), "epochs": args.epochs, "test_accuracy": acc, "repeats": args.repeats,
        "seconds": {**median, "rebasin_graph_tracing": statistics.median(tracing), "all": times},
        "speedup_rebasin_over_wslviz": median["rebasin"] / median["wslviz"],
        "speedup_rebasin_over_wslviz_permutation_only": median["rebasin"] / median["wslviz_permutation_only"],
        "threads": {"wslviz": torch.get_num_threads(), "rebasin": info["threads"]},
        "torch": {"wslviz": torch.__version__, "rebasin": info["torch"]},
        "results": rows,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"medians over {args.repeats} seeds:")
    print(f"{'':26s} {'seconds':>8s} {'barrier':>8s} {'dist to A':>10s} {'max |out - out_B|':>18s}")
    for name, row in rows.items():
        secs = result["seconds"].get(name)
        print(f"{name:26s} {secs if secs is not None else float('nan'):8.3f} {row['barrier']:8.4f} "
              f"{row['distance_to_a']:10.2f} {row['max_output_difference_vs_b']:18.2e}")
    print(f"time ratio rebasin / wslviz: {result['speedup_rebasin_over_wslviz']:.2f}x "
          f"(permutation only: {result['speedup_rebasin_over_wslviz_permutation_only']:.2f}x); "
          f"wrote {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
