"""Module evaluator (``wslviz.core.module_eval``) against a per-model loop and against plain ``vmap(functional_call)``.

For each module-architecture sample zoo, B = 256 checkpoints (the zoo's rows, repeated as needed) on the test
split, in one run on the same machine state:

* **batched**: ``wv.evaluate`` (the module kind's ``evaluate``: ``vmap(functional_call)`` in chunks of
  ``module_eval.default_chunk_size`` models);
* **loop**: ``evaluate_per_model`` (``load_state_dict`` + forward, one model at a time);
* **vmap, no chunks**: one ``vmap(functional_call)`` over all 256 models at once;
* **budget sweep**: ``wv.evaluate`` with the chunk size that each activation budget of ``--budgets-mib``
  gives (``module_eval.default_chunk_size(..., budget_bytes)``), to choose ``module_eval.CHUNK_BYTES``.

Prints seconds and ratios (median of ``--repeats``, in round robin) and writes
``benchmarks/results/bench_module_eval.json``.

    .venv/bin/python benchmarks/bench_module_eval.py [--repeats 3] [--loop-repeats 1] [--threads 2] \\
        [--budgets-mib 64 256 1024 4096]
"""

from __future__ import annotations

import argparse
import json
import os
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
    parser.add_argument("--loop-repeats", type=int, default=1,
                        help="repeats of the slow per-model loop (at most --repeats)")
    parser.add_argument("--budgets-mib", type=int, nargs="*", default=[64, 256, 1024, 4096],
                        help="chunk budgets to sweep (MiB of activations per chunk); none: no sweep")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_module_eval.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    load_before = os.getloadavg()
    for name in ZOOS:
        zoo = load_zoo(ROOT / "sample_zoo" / name)
        w = zoo.weights[torch.arange(B) % zoo.n_checkpoints].float().contiguous()
        n_test = len(zoo.task.x_test)
        chunks = {mib: module_eval.default_chunk_size(zoo.arch, n_test, B, mib * 2**20) for mib in args.budgets_mib}
        times: dict[str, list[float]] = {"batched": [], "loop": [], "vmap_unchunked": []}
        times.update({f"budget_{mib}": [] for mib in chunks})
        with torch.no_grad():
            evaluate(zoo.arch, zoo.task, w[:8])  # warm-up (tracing, module copies)
            # round robin: every variant once per repeat, so that a change of the machine's load hits them all
            for repeat in range(args.repeats):
                t, batched = timed(evaluate, zoo.arch, zoo.task, w)
                times["batched"].append(t)
                t, plain = timed(plain_vmap, zoo.arch, zoo.task, w)
                times["vmap_unchunked"].append(t)
                for mib, chunk in chunks.items():
                    times[f"budget_{mib}"].append(timed(evaluate, zoo.arch, zoo.task, w, "test", chunk)[0])
                if repeat < args.loop_repeats:
                    t, loop = timed(evaluate_per_model, zoo.arch, zoo.task, w)
                    times["loop"].append(t)
                print(f"  {name} repeat {repeat}: "
                      + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if len(v) == repeat + 1)
                      + f" (load {os.getloadavg()[0]:.1f})", flush=True)
        sweep = {str(mib): {"chunk": chunk, "seconds": statistics.median(times.pop(f"budget_{mib}"))}
                 for mib, chunk in chunks.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"zoo": name, "models": B, "test_inputs": len(zoo.task.x_test), "threads": args.threads,
                     "chunk": module_eval.default_chunk_size(zoo.arch, len(zoo.task.x_test), B),
                     "seconds": med, "budget_sweep": sweep, "loop_over_batched": med["loop"] / med["batched"],
                     "unchunked_over_batched": med["vmap_unchunked"] / med["batched"],
                     "max_loss_difference_vs_loop": float((batched["loss"] - loop["loss"]).abs().max()),
                     "max_loss_difference_vs_unchunked": float((batched["loss"] - plain).abs().max())})
        r = rows[-1]
        print(f"{name:<17} batched {med['batched']:.2f} s  loop {med['loop']:.2f} s ({r['loop_over_batched']:.1f}x)  "
              f"vmap unchunked {med['vmap_unchunked']:.2f} s ({r['unchunked_over_batched']:.2f}x)  "
              f"chunk {r['chunk']}", flush=True)
    out = Path(args.out)
    load = {"before": load_before, "after": os.getloadavg()}  # (1, 5, 15 minutes): the machine is shared
    print(f"load average before {load['before']}, after {load['after']}")
    out.write_text(json.dumps({"load_average": load, "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
