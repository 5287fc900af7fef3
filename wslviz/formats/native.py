"""The native layout (what ``make-zoo`` and ``export`` write)::

    <zoo>/zoo.json               {"format": "wslviz-zoo", "version": 1, "name", "description",
                                  "architecture": {...spec...}, "task": {...spec...} | null}
    <zoo>/metadata.csv           one row per checkpoint, in weight-matrix row order
    <zoo>/weights.safetensors    one float32 tensor "weights" [n_checkpoints, n_params]

The weight matrix is memory-mapped (copy-on-write), so opening a large zoo reads only its header.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from wslviz.core.protocol import ArchitectureLike, from_spec
from wslviz.core.tasks import TaskError, make_task
from wslviz.core.zoo import Zoo
from wslviz.formats.errors import ZooFormatError

FORMAT = "wslviz-zoo"
VERSION = 1
FILES = ("zoo.json", "metadata.csv", "weights.safetensors")


def detect(path: Path) -> bool:
    return path.is_dir() and (path / "zoo.json").is_file()


def mmap_safetensor(path: Path, key: str = "weights") -> torch.Tensor:
    """Memory-map one float32 tensor of a safetensors file without reading its data.

    The safetensors layout is an 8-byte little-endian header length, a JSON header with each
    tensor's dtype, shape and byte range, then the raw data.
    """
    size = path.stat().st_size
    if size < 8:
        raise ZooFormatError(path, f"file is {size} bytes, too short for safetensors")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n <= 0 or 8 + n > size:
            raise ZooFormatError(path, "not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ZooFormatError(path, "not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict) or key not in header:
        found = sorted(k for k in header if k != "__metadata__") if isinstance(header, dict) else []
        raise ZooFormatError(path, f"expected a tensor named {key!r}, found {found}")
    entry = header[key]
    if not isinstance(entry, dict):
        raise ZooFormatError(path, f"not a safetensors file (entry {key!r} is not an object)")
    if entry.get("dtype") != "F32":
        raise ZooFormatError(path, f"tensor {key!r} has dtype {entry.get('dtype')}, expected F32 (float32)")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not _int_list(shape) or len(shape) != 2 or min(shape) < 0:
        raise ZooFormatError(path, f"tensor {key!r} has shape {shape}, expected [n_checkpoints, n_params]")
    if not _int_list(offsets) or len(offsets) != 2:
        raise ZooFormatError(path, f"not a safetensors file (bad data_offsets {offsets!r} for {key!r})")
    start, end = offsets
    if start < 0 or end - start != 4 * shape[0] * shape[1] or 8 + n + end > size:
        raise ZooFormatError(path, f"tensor {key!r} is truncated or its byte range does not match its shape")
    if shape[0] * shape[1] == 0:
        return torch.zeros(shape, dtype=torch.float32)
    arr = np.memmap(path, dtype="<f4", mode="c", offset=8 + n + start, shape=tuple(shape))
    return torch.from_numpy(arr)


def _int_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


def read(path: Path, check_finite: bool = True, arch: ArchitectureLike | None = None, allow_code: bool = False,
         **_: object):
    path = Path(path)
    for name in FILES:
        if not (path / name).is_file():
            raise ZooFormatError(path / name, "missing: a native zoo needs zoo.json, metadata.csv and "
                                 "weights.safetensors")
    try:
        info = json.loads((path / "zoo.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooFormatError(path / "zoo.json", f"not valid JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ZooFormatError(path / "zoo.json", f"'format' must be {FORMAT!r}")
    version = info.get("version", 0)
    if not isinstance(version, int | float) or isinstance(version, bool):
        raise ZooFormatError(path / "zoo.json", f"'version' must be a number, got {version!r}")
    if version > VERSION:
        raise ZooFormatError(path / "zoo.json", f"version {info.get('version')} is newer than this wslviz reads")
    try:  # a stated architecture (e.g. wv.from_module of the network a zoo.json cannot rebuild) wins
        arch = arch if arch is not None else from_spec(info["architecture"], allow_code=allow_code, base=path)
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # ArchitectureError is a ValueError
        raise ZooFormatError(path / "zoo.json", f"bad architecture: {e}") from None
    task = None
    if info.get("task"):
        if not isinstance(info["task"], dict):
            raise ZooFormatError(path / "zoo.json", f"bad task: expected an object, got {info['task']!r}")
        spec = dict(info["task"])
        if spec.get("name") == "npz" and isinstance(spec.get("path"), str) and not Path(spec["path"]).is_absolute():
            spec["path"] = str(path / spec["path"])
        try:
            task = make_task(spec)
        except (TaskError, KeyError, TypeError, ValueError, OverflowError) as e:
            raise ZooFormatError(path / "zoo.json", f"bad task: {e}") from None
    try:
        metadata = pd.read_csv(path / "metadata.csv")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ZooFormatError(path / "metadata.csv", f"not a readable CSV ({e})") from None
    weights = mmap_safetensor(path / "weights.safetensors")
    if weights.shape[1] != arch.n_params:
        raise ZooFormatError(path / "weights.safetensors", f"rows have {weights.shape[1]} parameters, the "
                             f"architecture in zoo.json has {arch.n_params}")
    if len(metadata) != weights.shape[0]:
        raise ZooFormatError(path / "metadata.csv", f"{len(metadata)} rows, but weights.safetensors has "
                             f"{weights.shape[0]} checkpoints")
    # a finite row sum proves the row finite (NaN/Inf propagate); only then is the full test skipped
    if check_finite and not torch.isfinite(weights.sum(1)).all():
        bad = (~torch.isfinite(weights)).any(1).nonzero().flatten().tolist()
        if bad:
            raise ZooFormatError(path / "weights.safetensors", f"{len(bad)} checkpoints contain NaN/Inf "
                                 f"weights (rows {bad[:10]}); pass check_finite=False to open anyway")
    return Zoo(name=str(info.get("name") or path.name), metadata=metadata, weights=weights, arch=arch,
               task=task, description=str(info.get("description", "")), path=path, format="native")


def write(zoo, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``zoo`` in the native layout. Refuses to replace an existing folder unless ``overwrite``;
    writes into a temporary sibling first, so a failure never leaves a half-written zoo."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True to replace it")
    if zoo.weights.shape[0] != len(zoo.metadata):
        raise ValueError(f"{len(zoo.metadata)} metadata rows for {zoo.weights.shape[0]} weight rows")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        task_spec = dict(zoo.task.spec) if zoo.task is not None else None
        info = {"format": FORMAT, "version": VERSION, "name": zoo.name, "description": zoo.description,
                "architecture": zoo.arch.spec, "task": task_spec}
        (tmp / "zoo.json").write_text(json.dumps(info, indent=2) + "\n")
        zoo.metadata.to_csv(tmp / "metadata.csv", index=False)
        save_file({"weights": zoo.weights.detach().to(torch.float32).contiguous()}, str(tmp / "weights.safetensors"))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
