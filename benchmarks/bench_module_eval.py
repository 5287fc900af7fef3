"""Module evaluator (``wslviz.core.module_eval``) against a per-model loop and against plain ``vmap(functional_call)``.

For each module-architecture sample zoo, B = 256 checkpoints (the zoo's rows, repeated as needed) on the test
split, in one run on the same machine state:

* **batched**: ``wv.evaluate`` (dispatches to ``module_eval.evaluate``: ``vmap(functional_call)`` in chunks of
  ``module_eval.default_chunk_size`` models);
* **loop**: ``evaluate_per_model`` (``load_state_dict`` + forward, one model at a time);
* **vmap, no chunks**: one ``vmap(functional_call)`` over all 256 models at once.

Prints seconds and ratios (median of ``--repeats``) and writes ``benchmarks/results/bench_module_eval.json``.

    .venv/bin/python benchmarks/bench_module_eval.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.func import functional_call, vmap

from wslviz.core import module_eval
from wslviz.core.evaluation import evaluate, evaluate_per_model
from wslviz.scale.cache import load_zoo

ROOT = Path(__file__).resolve().parents[1]
ZOOS = ("digits-resnet", "tiny-transformer")
B = 256


def plain_vmap(arch, task, weights: torch.Tensor) -> torch.Tensor:
    x, y = task.split("test")
    tensors = arch.unflatten(weights)
    out = vmap(lambda t: functional_call(arch.module, t, (x,), strict=False))(tensors)
    return task.loss(out.reshape(len(weights), len(x), -1), y)


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_module_eval.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in ZOOS:
        zoo = load_zoo(ROOT / "sample_zoo" / name)
        w = zoo.weights[torch.arange(B) % zoo.n_checkpoints].float().contiguous()
        times: dict[str, list[float]] = {"batched": [], "loop": [], "vmap_unchunked": []}
        with torch.no_grad():
            evaluate(zoo.arch, zoo.task, w[:8])  # warm-up (tracing, module copies)
            for _ in range(args.repeats):
                t, batched = timed(evaluate, zoo.arch, zoo.task, w)
                times["batched"].append(t)
                t, loop = timed(evaluate_per_model, zoo.arch, zoo.task, w)
                times["loop"].append(t)
                t, plain = timed(plain_vmap, zoo.arch, zoo.task, w)
                times["vmap_unchunked"].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"zoo": name, "models": B, "test_inputs": len(zoo.task.x_test), "threads": args.threads,
                     "chunk": module_eval.default_chunk_size(zoo.arch, len(zoo.task.x_test), B),
                     "seconds": med, "loop_over_batched": med["loop"] / med["batched"],
                     "unchunked_over_batched": med["vmap_unchunked"] / med["batched"],
                     "max_loss_difference_vs_loop": float((batched["loss"] - loop["loss"]).abs().max()),
                     "max_loss_difference_vs_unchunked": float((batched["loss"] - plain).abs().max())})
        r = rows[-1]
        print(f"{name:<17} batched {med['batched']:.2f} s  loop {med['loop']:.2f} s ({r['loop_over_batched']:.1f}x)  "
              f"vmap unchunked {med['vmap_unchunked']:.2f} s ({r['unchunked_over_batched']:.2f}x)  "
              f"chunk {r['chunk']}", flush=True)
    out = Path(args.out)
    out.write_text(json.dumps({"results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
