"""A plain folder of checkpoints: one state dict per file (``.safetensors``, ``.pt``, ``.pth``,
``.bin``), all of one sequential architecture, with optional metadata keyed by file name::

    <root>/a.safetensors, <root>/b.pt, ...
    <root>/metadata.csv     a column file|filename|name|path with the file names, any other columns
    <root>/metadata.json    [{"file": "a.pt", ...}, ...]  or  {"a.pt": {...}, ...}

The architecture is inferred from the first file (:func:`wslviz.core.arch.infer_architecture`) unless
``arch=`` gives the spec; every file is then flattened by layer order into one float32 matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from wslviz.core.zoo import Zoo
from wslviz.formats._common import (
    CHECKPOINT_SUFFIXES,
    put_first,
    read_csv,
    read_json,
    require_dir,
    require_finite,
    stack_files,
)
from wslviz.formats.errors import ZooFormatError

KEY_COLUMNS = ("file", "filename", "name", "path")


def checkpoint_files(path: Path) -> list[Path]:
    """The checkpoint files directly inside ``path``, sorted by name."""
    return sorted(p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file()
                  and not p.name.startswith("."))


def detect(path: Path) -> bool:
    return path.is_dir() and any(p.suffix in CHECKPOINT_SUFFIXES and p.is_file() for p in path.iterdir())


def read_metadata(path: Path, names: Sequence[str]) -> pd.DataFrame | None:
    """The rows of ``metadata.csv`` / ``metadata.json`` in ``names`` order (None when there is none).
    A row for a file that does not exist, a repeated file name or a missing key column is an error."""
    if (path / "metadata.csv").is_file():
        where = path / "metadata.csv"
        df = read_csv(where)
    elif (path / "metadata.json").is_file():
        where = path / "metadata.json"
        data = read_json(where)
        if isinstance(data, Mapping):
            if not all(isinstance(v, Mapping) for v in data.values()):
                raise ZooFormatError(where, "expected {file name: {column: value}} or a list of records")
            df = pd.DataFrame([{"file": k, **v} for k, v in data.items()])
        elif isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
            df = pd.DataFrame(list(data))
        else:
            raise ZooFormatError(where, "expected {file name: {column: value}} or a list of records")
    else:
        return None
    key = next((c for c in KEY_COLUMNS if c in df), None)
    if key is None:
        raise ZooFormatError(where, f"needs a column naming the checkpoint file (one of {', '.join(KEY_COLUMNS)})")
    if df[key].isna().any():
        raise ZooFormatError(where, f"row {int(df[key].isna().to_numpy().argmax())} has no {key!r}")
    keys = df[key].map(lambda v: Path(str(v)).name)
    dup = keys.duplicated()
    if dup.any():
        raise ZooFormatError(where, f"file {keys[dup].iloc[0]!r} has more than one row")
    unknown = sorted(set(keys) - set(names))
    if unknown:
        raise ZooFormatError(where, f"rows for files that are not in the folder: {unknown[:5]}")
    df = df.drop(columns=[key]).assign(file=keys.to_numpy()).set_index("file")
    return df.reindex(list(names)).reset_index()


def read_files(path: Path, files: Sequence[Path], fmt: str, arch: Any = None, activation: str = "relu",
               input_shape: Sequence[int] | None = None, check_finite: bool = True,
               loader: Callable[[Path], Any] | None = None, description: str = "",
               progress: Callable[[int, int], None] | None = None):
    """Stack ``files`` into a zoo whose metadata has ``model_id``, ``file`` and the metadata file's columns."""
    if not files:
        raise ZooFormatError(path, f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})")
    names = [str(f.relative_to(path)) if f.is_relative_to(path) else f.name for f in files]
    meta = read_metadata(path, names)  # checked before any checkpoint is read
    meta = meta if meta is not None else pd.DataFrame({"file": names})
    # a model_id given in the metadata groups checkpoints of one model (epochs); else one model per file
    given = "model_id" in meta and meta["model_id"].notna().all()
    meta = put_first(meta, {"model_id": meta["model_id"] if given else range(len(files))})
    kwargs = {"loader": loader} if loader is not None else {}
    architecture, weights = stack_files(files, arch, activation, input_shape, progress=progress, **kwargs)
    if check_finite:
        require_finite(weights, lambda i: files[i])
    return Zoo(name=path.name, metadata=meta, weights=weights, arch=architecture, task=None, path=path,
               format=fmt, description=description)


def read(path: Path, arch: Any = None, activation: str = "relu", input_shape: Sequence[int] | None = None,
         check_finite: bool = True, progress: Callable[[int, int], None] | None = None, **_: Any):
    """Read a folder of checkpoints; ``arch`` (spec), ``activation`` and ``input_shape`` help when
    the architecture cannot be inferred from key names and shapes alone; ``progress(done, total)``
    is called while files are read."""
    path = require_dir(path, "checkpoint folder")
    return read_files(path, checkpoint_files(path), "folder", arch, activation, input_shape, check_finite,
                      progress=progress)
