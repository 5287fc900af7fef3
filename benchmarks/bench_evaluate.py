"""Batched evaluator vs the per-model loop, measured side by side in one run.

For moons-mlp (2-16-16-2 ReLU, moons test split) and digits-cnn (Conv(1->8,3)-relu-Conv(8->8,3)-relu-
dropout-flatten-Linear(128,10), digits test split) at B=1681 models: the loop time
(``evaluate_per_model``: one ``nn.Module``, ``load_state_dict`` + forward per model), the batched time
(``wv.evaluate``), their ratio, the largest difference in loss and accuracy, and the batched
evaluator's achieved GFLOP/s as a fraction of a large matmul's GFLOP/s measured in the same run.

Weights are the bundled sample zoo's rows (tiled up to B) when ``sample_zoo/<name>`` exists, else
random weights for the same spec. Besides wall-clock times it records CPU times
(``time.process_time``, all threads), steadier than wall time on a shared machine. Each figure is the
median of ``--repeats`` runs after a warm-up; loop and batched runs alternate so that load from other
processes hits both alike.

    .venv/bin/python benchmarks/bench_evaluate.py [--models 1681] [--repeats 3] [--threads N] [--output PATH]

On a machine shared with other busy processes, ``--threads 1`` gives steadier figures: with two OpenMP
threads, every small kernel of the loop waits at a barrier for a thread that may be descheduled, whereas
the batched evaluator runs its chunks in independent single-threaded streams, so load from elsewhere
slows the two sides by different factors.

Prints a table and writes the same figures to ``benchmarks/results/bench_evaluate.json`` (the default-thread
run the README quotes), or to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.evaluation import evaluate, evaluate_per_model
from wslviz.core.seq_eval import default_chunk_size
from wslviz.core.tasks import make_task
from wslviz.core.training import DIGITS_CNN
from wslviz.scale.cache import load_zoo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "bench_evaluate.json"

CASES = {"moons-mlp": (mlp_spec([2, 16, 16, 2]), "moons"), "digits-cnn": (DIGITS_CNN, "digits")}


def forward_flops(arch: Architecture, n_inputs: int) -> int:
    """FLOPs of one model's forward pass on ``n_inputs`` inputs, counting the multiply-adds of linear
    and conv layers as 2 FLOPs each (bias adds, activations, pooling and the loss are not counted)."""
    total, shape = 0, arch.input_shape
    for layer, out_shape in zip(arch.layers, arch.shapes, strict=True):
        if layer["type"] == "linear":
            total += 2 * layer["in_features"] * layer["out_features"]
        elif layer["type"] == "conv2d":
            total += 2 * shape[0] * layer["kernel_size"] ** 2 * math.prod(out_shape)
        shape = out_shape
    return total * n_inputs


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a ``size`` x ``size`` float32 matmul (median of ``repeats``, after a warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def case_weights(name: str, spec: dict, n_models: int) -> tuple[Architecture, torch.Tensor, str]:
    """The sample zoo's weights tiled to ``n_models`` rows when the zoo is bundled, else random ones."""
    path = ROOT / "sample_zoo" / name
    if (path / "zoo.json").is_file():
        zoo = load_zoo(path)
        reps = -(-n_models // zoo.n_checkpoints)
        return zoo.arch, zoo.weights.repeat(reps, 1)[:n_models].clone(), f"{path.relative_to(ROOT)}"
    arch = Architecture(spec)
    weights = torch.randn(n_models, arch.n_params, generator=torch.Generator().manual_seed(0)) * 0.3
    for info in arch.layout:  # BatchNorm variances must be positive
        if info.role == "running_var":
            weights[:, info.slice] = weights[:, info.slice].abs() + 0.5
    return arch, weights, "random weights"


def run_case(name: str, spec: dict, task_name: str, n_models: int, repeats: int, peak: float) -> dict:
    task = make_task(task_name)
    arch, weights, source = case_weights(name, spec, n_models)
    n_test = len(task.y_test)
    ref, got = evaluate_per_model(arch, task, weights), evaluate(arch, task, weights)  # warm-up + check
    loops, batched, loops_cpu, batched_cpu = [], [], [], []
    for _ in range(repeats):
        for fn, wall, cpu in ((lambda: evaluate_per_model(arch, task, weights), loops, loops_cpu),
                              (lambda: evaluate(arch, task, weights), batched, batched_cpu)):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    loop_s, batched_s = statistics.median(loops), statistics.median(batched)
    loop_cpu, batched_cpu_s = statistics.median(loops_cpu), statistics.median(batched_cpu)
    gflops = forward_flops(arch, n_test) * n_models / batched_s / 1e9
    return {
        "case": name, "weights": source, "architecture": arch.describe(), "models": n_models,
        "test_inputs": n_test, "chunk_size": default_chunk_size(arch, n_test, n_models=n_models),
        "loop_s": loop_s, "batched_s": batched_s, "ratio": loop_s / batched_s,
        "loop_runs_s": loops, "batched_runs_s": batched,
        "loop_cpu_s": loop_cpu, "batched_cpu_s": batched_cpu_s, "cpu_ratio": loop_cpu / batched_cpu_s,
        "max_abs_diff_loss": float((ref["loss"] - got["loss"]).abs().max()),
        "max_abs_diff_accuracy": float((ref["accuracy"] - got["accuracy"]).abs().max()),
        "batched_gflops": gflops, "fraction_of_matmul_peak": gflops / peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1681)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: torch's default)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    peak = matmul_gflops()
    rows = [run_case(c, *CASES[c], args.models, args.repeats, peak) for c in args.cases]
    peak_after = matmul_gflops()  # the machine is shared: show how much the reference moved
    load_after = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 2048^2 matmul: {peak:.1f} GFLOP/s "
          f"before, {peak_after:.1f} after; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    header = (f"{'case':<11} {'B':>5} {'loop s':>8} {'batched s':>10} {'ratio':>6} {'cpu ratio':>9} "
              f"{'|dloss|':>9} {'|dacc|':>8} {'GFLOP/s':>8} {'of peak':>8}  weights")
    print(header)
    for r in rows:
        print(f"{r['case']:<11} {r['models']:>5} {r['loop_s']:>8.3f} {r['batched_s']:>10.3f} {r['ratio']:>5.1f}x "
              f"{r['cpu_ratio']:>8.1f}x "
              f"{r['max_abs_diff_loss']:>9.1e} {r['max_abs_diff_accuracy']:>8.1e} {r['batched_gflops']:>8.1f} "
              f"{r['fraction_of_matmul_peak']:>7.1%}  {r['weights']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                   "matmul_gflops": peak, "matmul_gflops_after": peak_after,
                                   "loadavg_before": load_before, "loadavg_after": load_after, "cases": rows},
                                  indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
