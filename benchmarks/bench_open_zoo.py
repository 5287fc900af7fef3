"""Opening a large zoo: the native layout (memory-mapped weight matrix) against the same
checkpoints as a folder of per-model files, and against an eager read of the matrix.

Prints times measured side by side in one run and their ratios. Usage:
    .venv/bin/python benchmarks/bench_open_zoo.py [--n 50000] [--params 100] [--folder-n 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.zoo import Zoo


def _timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=50_000, help="checkpoints in the native zoo")
    ap.add_argument("--hidden", type=int, default=33, help="MLP 1-h-1 width (33 -> 100 parameters)")
    ap.add_argument("--folder-n", type=int, default=2_000, help="checkpoints in the per-file folder")
    args = ap.parse_args()
    arch = Architecture(mlp_spec([1, args.hidden, 1]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        w = torch.randn(args.n, arch.n_params)
        meta = pd.DataFrame({"model_id": np.arange(args.n)})
        Zoo(name="big", metadata=meta, weights=w, arch=arch).save(tmp / "native")
        (tmp / "folder").mkdir()
        for i in range(args.folder_n):
            tensors = {k: v.contiguous() for k, v in arch.unflatten(w[i]).items()}
            save_file(tensors, str(tmp / "folder" / f"{i:06d}.safetensors"))
        native = _timed(lambda: wv.load_zoo(tmp / "native"))
        eager = _timed(lambda: load_file(str(tmp / "native" / "weights.safetensors"))["weights"].sum())
        folder = _timed(lambda: wv.load_zoo(tmp / "folder"), repeats=1)
        per_ckpt_native, per_ckpt_folder = native / args.n, folder / args.folder_n
        print(f"native zoo, {args.n} x {arch.n_params}: open {native * 1e3:.1f} ms "
              f"({per_ckpt_native * 1e6:.2f} us per checkpoint)")
        print(f"eager read of the same matrix (safetensors load_file + sum): {eager * 1e3:.1f} ms "
              f"-> ratio eager/native {eager / native:.2f}")
        print(f"folder of {args.folder_n} .safetensors files: open {folder * 1e3:.1f} ms "
              f"({per_ckpt_folder * 1e6:.1f} us per checkpoint) -> per-checkpoint ratio folder/native "
              f"{per_ckpt_folder / per_ckpt_native:.0f}x")


if __name__ == "__main__":
    main()
