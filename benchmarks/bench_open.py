"""Opening a native zoo (memory-mapped) vs loading one state-dict file per model, side by side.

Fixtures, written to a temporary folder and removed afterwards: a native zoo of ``--models`` x
``--params`` float32 (default 10,000 x 5,000, 200 MB) and the same weights as ``--models`` files
``torch.save``-d as a dict of tensors each (an MLP 50-50-50-48-... layout cut from the row). Timed:

- ``wv.load_zoo(path, check_finite=False)``: reads the header and maps the weights, no weight bytes;
- ``wv.load_zoo(path)``: the default, which also scans every weight for NaN/Inf (reads the whole matrix);
- ``wv.load_zoo(path, check_finite=False)`` and then reading every row (a full sum over the matrix);
- loading every per-model file with ``torch.load(weights_only=True)`` and flattening it into a matrix.

The page cache is not dropped between runs (that needs root), so all reads are warm; each figure is the
median of ``--repeats`` after a warm-up.

    .venv/bin/python benchmarks/bench_open.py [--models 10000] [--params 5000] [--repeats 3] [--file-repeats 1]

Prints the times and ratios and writes them to ``benchmarks/results/bench_open.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from wslviz.core.arch import Architecture
from wslviz.core.zoo import Zoo
from wslviz.formats import save_zoo
from wslviz.scale.cache import load_zoo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "bench_open.json"


def mlp_with_params(n_params: int) -> Architecture:
    """A bias-free MLP of 50-wide layers whose parameter count is exactly ``n_params`` (last layer narrower)."""
    widths, total = [50], 0
    while total < n_params:
        out = min(50, (n_params - total) // widths[-1])
        if out == 0:
            raise ValueError(f"{n_params} is not reachable with 50-wide bias-free layers")
        widths.append(out)
        total += widths[-2] * out
    layers = [{"type": "linear", "in_features": a, "out_features": b, "bias": False}
              for a, b in zip(widths[:-1], widths[1:], strict=True)]
    arch = Architecture({"input_shape": [50], "layers": layers})
    if arch.n_params != n_params:
        raise ValueError(f"pick a multiple of 50 for --params (got {n_params})")
    return arch


def timed(fn, repeats: int, warm_up: bool = True) -> tuple[float, list[float]]:
    if warm_up:
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--params", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--file-repeats", type=int, default=1, help="repeats of the slow per-file loading")
    args = parser.parse_args()
    arch = mlp_with_params(args.params)
    weights = torch.randn(args.models, args.params, generator=torch.Generator().manual_seed(0))
    tmp = Path(tempfile.mkdtemp(prefix="wslviz-bench-open-"))
    try:
        meta = pd.DataFrame({"model_id": range(args.models)})
        zoo_path = save_zoo(Zoo(name="bench", metadata=meta, weights=weights, arch=arch), tmp / "native")
        files = tmp / "state_dicts"
        files.mkdir()
        paths = [files / f"model_{i:05d}.pt" for i in range(args.models)]
        for path, row in zip(paths, weights, strict=True):
            torch.save({k: v.clone() for k, v in arch.unflatten(row).items()}, path)

        def open_mapped():
            return load_zoo(zoo_path, check_finite=False)

        def open_checked():
            return load_zoo(zoo_path)

        def open_and_read():
            return float(load_zoo(zoo_path, check_finite=False).weights.sum())

        def load_files():
            return torch.stack([arch.flatten(torch.load(p, weights_only=True)) for p in paths])

        assert torch.equal(load_files(), open_checked().weights)  # same matrix; also the files' warm-up
        open_s, open_runs = timed(open_mapped, args.repeats)
        checked_s, checked_runs = timed(open_checked, args.repeats)
        read_s, read_runs = timed(open_and_read, args.repeats)
        files_s, files_runs = timed(load_files, args.file_repeats, warm_up=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "models": args.models, "params": args.params, "matrix_mb": args.models * args.params * 4 / 2**20,
        "load_zoo_mapped_s": open_s, "load_zoo_checked_s": checked_s, "load_zoo_and_read_all_s": read_s,
        "per_file_state_dicts_s": files_s, "ratio_mapped": files_s / open_s, "ratio_checked": files_s / checked_s,
        "ratio_open_and_read": files_s / read_s,
        "runs": {"load_zoo_mapped": open_runs, "load_zoo_checked": checked_runs, "load_zoo_and_read_all": read_runs,
                 "per_file_state_dicts": files_runs},
    }
    print(f"{args.models:,} models x {args.params:,} float32 ({result['matrix_mb']:.0f} MB), "
          f"median of {args.repeats} ({args.file_repeats} for the files), warm page cache")
    print(f"  load_zoo(check_finite=False), mapped   {open_s * 1e3:10.1f} ms  {files_s / open_s:8.0f}x faster")
    print(f"  load_zoo() with NaN/Inf scan           {checked_s * 1e3:10.1f} ms  {files_s / checked_s:8.1f}x faster")
    print(f"  mapped load_zoo + read every row (sum) {read_s * 1e3:10.1f} ms  {files_s / read_s:8.1f}x faster")
    print(f"  {args.models:,} torch.load state dicts + flatten {files_s * 1e3:10.1f} ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
