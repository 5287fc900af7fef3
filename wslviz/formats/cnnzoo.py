"""The Small CNN Zoo (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights")::

    <root>/weights.npy        [N, 4970] flat TensorFlow weights, one row per checkpoint
    <root>/metrics.csv.gz     one row per checkpoint: config.* columns, modeldir, step,
                              test_accuracy, test_loss, train_accuracy, train_loss, ...
    <root>/layout.csv         varname,start_idx,end_idx,shape: where each tensor lies in a row

Architecture: three Conv2D(16, 3x3, stride 2, "valid" padding) -> global average pool -> Dense(10),
one input channel (28x28 for MNIST / Fashion-MNIST, 32x32 for the grey-scale CIFAR-10 / SVHN zoos).
In a row each layer's bias comes before its kernel, and kernels are TensorFlow layouts: conv
``[H, W, in, out]`` becomes PyTorch ``[out, in, H, W]`` by ``transpose(3, 2, 0, 1)``, dense
``[in, out]`` becomes ``[out, in]`` by ``.T``. The conversion is one column gather (an index
permutation built once), applied to the memory-mapped matrix in chunks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.arch import Architecture, ArchitectureError
from wslviz.core.zoo import Zoo
from wslviz.formats._common import (
    activation_name,
    numeric_column,
    pick_activation,
    put_first,
    read_csv,
    require_dir,
    require_finite,
)
from wslviz.formats.errors import ZooFormatError

WEIGHTS, LAYOUT = "weights.npy", "layout.csv"
METRICS = ("metrics.csv.gz", "metrics.csv")
CHUNK_ROWS = 4096


def detect(path: Path) -> bool:
    return path.is_dir() and (path / WEIGHTS).is_file() and (path / LAYOUT).is_file()


def _metrics_file(path: Path) -> Path:
    for name in METRICS:
        if (path / name).is_file():
            return path / name
    raise ZooFormatError(path / METRICS[0], "missing: the Small CNN Zoo needs weights.npy, metrics.csv.gz and "
                         "layout.csv")


def parse_layout(path: Path, n_cols: int | None = None) -> list[dict[str, Any]]:
    """Layers in order, each ``{"name", "kernel": (start, shape), "bias": (start, shape)}``, checked
    to tile ``[0, n_cols)`` exactly."""
    df = read_csv(path)
    for col in ("varname", "start_idx", "end_idx", "shape"):
        if col not in df:
            raise ZooFormatError(path, f"missing column {col!r} (expected varname,start_idx,end_idx,shape)")
    starts = numeric_column(df, "start_idx", path)
    ends = numeric_column(df, "end_idx", path)
    layers: dict[str, dict[str, Any]] = {}
    spans = []
    for i, (name, start, end, shape) in enumerate(zip(df["varname"], starts, ends, df["shape"], strict=True)):
        if not (math.isfinite(start) and math.isfinite(end)) or start != int(start) or end != int(end):
            raise ZooFormatError(path, f"row {i}: start_idx/end_idx must be integers")
        dims = tuple(int(d) for d in re.findall(r"\d+", str(shape)))
        start, end = int(start), int(end)
        if not dims or end - start != math.prod(dims) or start < 0:
            raise ZooFormatError(path, f"row {i} ({name}): shape {shape} does not match the range {start}:{end}")
        m = re.fullmatch(r"(?P<layer>.+)/(?P<role>kernel|bias)(?::\d+)?", str(name))
        if not m:
            raise ZooFormatError(path, f"row {i}: variable {name!r} is not '<layer>/kernel' or '<layer>/bias'")
        entry = layers.setdefault(m["layer"], {"name": m["layer"]})
        if m["role"] in entry:
            raise ZooFormatError(path, f"row {i}: {name!r} appears twice")
        entry[m["role"]] = (start, dims)
        spans.append((start, end, str(name)))
    spans.sort()
    pos = 0
    for start, end, name in spans:
        if start != pos:
            raise ZooFormatError(path, f"{name} starts at {start}, expected {pos} (gap or overlap)")
        pos = end
    if n_cols is not None and pos != n_cols:
        raise ZooFormatError(path, f"the layout covers {pos} columns, weights.npy rows have {n_cols}")
    out = sorted(layers.values(), key=lambda e: min(v[0] for k, v in e.items() if k != "name"))
    for entry in out:
        if "kernel" not in entry or "bias" not in entry:
            raise ZooFormatError(path, f"layer {entry['name']} needs a kernel and a bias")
    return out


def architecture(layers: list[dict[str, Any]], activation: str, input_shape: list[int], stride: int,
                 where: Path) -> Architecture:
    """The PyTorch spec: convs (stride, no padding) -> activation ..., global average pool, dense."""
    spec: list[dict[str, Any]] = []
    seen_dense = False
    for i, layer in enumerate(layers):
        k = layer["kernel"][1]
        if spec:
            spec.append({"type": activation})
        if len(k) == 4 and not seen_dense:
            if k[0] != k[1]:
                raise ZooFormatError(where, f"layer {layer['name']}: non-square kernel {list(k)}")
            spec.append({"type": "conv2d", "in_channels": k[2], "out_channels": k[3], "kernel_size": k[0],
                         "stride": stride, "padding": 0})
        elif len(k) == 2:
            if not seen_dense and i > 0:
                spec.append({"type": "global_avg_pool"})
            seen_dense = True
            spec.append({"type": "linear", "in_features": k[0], "out_features": k[1]})
        else:
            raise ZooFormatError(where, f"layer {layer['name']}: kernel shape {list(k)} is not a conv (H, W, in, "
                                 "out) before the dense layers or a dense (in, out) kernel")
        if layer["bias"][1] != (k[-1],):
            raise ZooFormatError(where, f"layer {layer['name']}: bias shape {list(layer['bias'][1])} does not match "
                                 f"kernel {list(k)}")
    try:
        return Architecture({"input_shape": input_shape, "layers": spec})
    except ArchitectureError as e:
        raise ZooFormatError(where, f"the layers do not fit together: {e}") from None


def column_order(layers: list[dict[str, Any]]) -> np.ndarray:
    """Index vector ``perm`` with ``ours = theirs[:, perm]``: PyTorch layout, weight before bias."""
    parts = []
    for layer in layers:
        start, shape = layer["kernel"]
        idx = np.arange(start, start + math.prod(shape)).reshape(shape)
        parts.append((idx.transpose(3, 2, 0, 1) if len(shape) == 4 else idx.T).ravel())
        b_start, b_shape = layer["bias"]
        parts.append(np.arange(b_start, b_start + b_shape[0]))
    return np.concatenate(parts)


def default_input_shape(path: Path, channels: int) -> list[int]:
    """28x28 (MNIST, Fashion-MNIST) unless the folder name says CIFAR-10 or SVHN (32x32)."""
    size = 32 if re.search(r"cifar|svhn", str(path.resolve()).lower()) else 28
    return [channels, size, size]


def read(path: Path, activation: str | None = None, input_shape: list[int] | None = None, stride: int = 2,
         check_finite: bool = True, progress: Callable[[int, int], None] | None = None, **_: Any):
    """Read a Small CNN Zoo folder. ``activation`` picks the models to open when the zoo mixes
    ``config.activation`` values (default: the most common); ``input_shape`` overrides the image size."""
    path = require_dir(path, "Small CNN Zoo")
    for name in (WEIGHTS, LAYOUT):
        if not (path / name).is_file():
            raise ZooFormatError(path / name, "missing: the Small CNN Zoo needs weights.npy, metrics.csv.gz and "
                                 "layout.csv")
    try:
        raw = np.load(path / WEIGHTS, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/EOFError... for truncated or foreign files
        raise ZooFormatError(path / WEIGHTS, f"not a readable .npy array ({str(e)[:200]})") from None
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.floating) or raw.shape[0] == 0:
        raise ZooFormatError(path / WEIGHTS, f"expected a 2-D float array [n_checkpoints, n_params] with at least "
                             f"one row, found {raw.dtype} of shape {list(raw.shape)}")
    layers = parse_layout(path / LAYOUT, raw.shape[1])
    metrics_path = _metrics_file(path)
    meta = read_csv(metrics_path)
    if len(meta) != raw.shape[0]:
        raise ZooFormatError(metrics_path, f"{len(meta)} rows, but weights.npy has {raw.shape[0]} checkpoints")
    for col in ("test_accuracy", "step"):
        meta[col] = numeric_column(meta, col, metrics_path)
    for col in ("train_accuracy", "test_loss", "train_loss", "config.random_seed"):
        if col in meta:
            meta[col] = numeric_column(meta, col, metrics_path)
    if (meta["step"] % 1 != 0).any():
        raise ZooFormatError(metrics_path, "column 'step' must hold integers")
    if "modeldir" in meta and meta["modeldir"].isna().any():
        raise ZooFormatError(metrics_path, f"row {int(meta['modeldir'].isna().to_numpy().argmax())} has no modeldir")
    model_key = (meta["modeldir"] if "modeldir" in meta else pd.Series(np.arange(len(meta)))).map(str)
    dup = pd.DataFrame({"m": model_key, "s": meta["step"]}).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ZooFormatError(metrics_path, f"row {row}: model {model_key.iloc[row]!r} step {meta['step'].iloc[row]:g} "
                             "appears twice")
    acts = [activation_name(a, metrics_path) for a in meta["config.activation"]] if "config.activation" in meta \
        else [activation or "relu"] * len(meta)
    chosen, keep, note = pick_activation(acts, activation, path)
    channels = layers[0]["kernel"][1][2] if len(layers[0]["kernel"][1]) == 4 else 1
    arch = architecture(layers, chosen, list(input_shape or default_input_shape(path, channels)), stride,
                        path / LAYOUT)
    rows = np.flatnonzero(keep)
    perm = column_order(layers)
    weights = torch.empty(len(rows), arch.n_params, dtype=torch.float32)
    for a in range(0, len(rows), CHUNK_ROWS):
        block = np.asarray(raw[rows[a:a + CHUNK_ROWS]], dtype=np.float32)
        weights[a:a + CHUNK_ROWS] = torch.from_numpy(np.ascontiguousarray(block[:, perm]))
        if progress is not None:
            progress(min(a + CHUNK_ROWS, len(rows)), len(rows))
    meta = meta.iloc[rows].reset_index(drop=True)
    if check_finite:
        require_finite(weights, lambda i: f"{path / WEIGHTS} row {rows[i]}")
    front = {"model_id": pd.factorize(model_key.iloc[rows].reset_index(drop=True))[0],
             "epoch": meta["step"].astype(int), "test_acc": meta["test_accuracy"]}
    if "train_accuracy" in meta:
        front["train_acc"] = meta["train_accuracy"]
        front["ggap"] = meta["train_accuracy"] - meta["test_accuracy"]
    if "config.random_seed" in meta:
        seed = meta["config.random_seed"]
        front["seed"] = seed.astype("int64") if seed.notna().all() and (seed % 1 == 0).all() else seed
    meta = put_first(meta, front)
    description = f"Small CNN Zoo (Unterthiner et al. 2020); {note}".rstrip("; ")
    return Zoo(name=path.name, metadata=meta, weights=weights, arch=arch, task=None, description=description,
               path=path, format="cnnzoo")
