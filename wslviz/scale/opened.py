"""Folders of large checkpoints opened once: their weight matrix kept in a row store in the per-user cache.

A folder of checkpoint files (the ``folder`` and ``huggingface`` layouts) is opened by reading every file; above
:data:`STORE_ABOVE` bytes, :func:`open_stored` has the reader write the weight matrix, row by row, into
``<cache root>/opened/<folder hash>/weights.safetensors`` (never into the user's folder) and memory-maps it, so
that opening holds one checkpoint in memory whatever the number of files. Files the reader serves in place
(:mod:`wslviz.formats.served`: float32 safetensors files of one layout) need no store: their rows are the files'
own bytes, and only where they are is kept. Beside it go the metadata, the architecture's spec and what the reader
noted; reopening the same folder, unchanged (the same files with the same sizes and modification times, the same
reader options), maps the store (or the files) again and reads no checkpoint. A changed folder replaces its store;
each folder keeps one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from wslviz.core.protocol import from_spec
from wslviz.core.zoo import Zoo
from wslviz.formats import detect_format, read_zoo
from wslviz.formats.native import mmap_safetensor
from wslviz.formats.served import serve_again

STORE_ABOVE = 256 * 2**20
"""Bytes of files above which a folder's weight matrix goes to a row store (below, it is read into memory)."""
LAYOUTS = ("folder", "huggingface")
"""The layouts read file by file into a matrix (the native and Model Zoos layouts are memory-mapped already)."""
FOLDER = "opened"
FILES = ("zoo.json", "metadata.json")
WEIGHTS = "weights.safetensors"


def _files(path: Path) -> list[tuple[str, int, int]]:
    """``(relative path, size, modification time in ns)`` of every file below ``path`` (hidden ones left out)."""
    out = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                st = os.stat(os.path.join(root, name))
                out.append((os.path.relpath(os.path.join(root, name), path), st.st_size, st.st_mtime_ns))
    return out


def store_key(path: Path, fmt: str, options: Mapping[str, Any]) -> str | None:
    """What a store must have been made from to be reused: the folder's files and the reader options; None when
    the options are not plain data (an architecture object, a base model), which are then read afresh."""
    try:
        stated = json.dumps(options, sort_keys=True)
    except (TypeError, ValueError):
        return None
    return json.dumps({"format": fmt, "options": stated, "files": _files(path)})


def store_folder(root: Path, path: Path) -> Path:
    """The store of the folder ``path`` under the cache root ``root``."""
    return root / FOLDER / hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]


def _reopen(where: Path, key: str, path: Path) -> Zoo | None:
    """The zoo kept at ``where`` when it was made from ``key``, else None."""
    if not all((where / name).is_file() for name in FILES) or not (where / "key.json").is_file():
        return None
    if (where / "key.json").read_text() != key:
        return None
    info = json.loads((where / "zoo.json").read_text())
    served = info["extra"].get("served")
    if served is not None:
        weights = serve_again(served)
    elif (where / WEIGHTS).is_file():
        weights = mmap_safetensor(where / WEIGHTS)
    else:
        weights = None
    if weights is None:
        return None
    metadata = pd.read_json(io.StringIO((where / "metadata.json").read_text()), orient="table")
    return Zoo(name=info["name"], metadata=metadata.reset_index(drop=True),
               weights=weights, arch=from_spec(info["architecture"]),
               description=info["description"], path=path, format=info["format"], extra=info["extra"])


def open_stored(path: Path, root: Path, format: str | None = None, **options: Any) -> Zoo | None:
    """Open the folder ``path`` through its row store under ``root`` (see the module docstring); None when the
    folder is not one of :data:`LAYOUTS`, holds at most :data:`STORE_ABOVE` bytes, or its reader options are not
    plain data. ``options`` go to the reader (a ``progress`` callback is not part of the key)."""
    fmt = format or detect_format(path)
    if fmt not in LAYOUTS or options.get("allow_code") or not path.is_dir():
        return None
    stated = {k: v for k, v in options.items() if k != "progress"}
    key = store_key(path, fmt, stated)
    if key is None or sum(size for _, size, _ in json.loads(key)["files"]) <= STORE_ABOVE:
        return None
    where = store_folder(root, path)
    kept = _reopen(where, key, path)
    if kept is not None:
        return kept
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}-", dir=where.parent))
    try:
        zoo = read_zoo(path, fmt, store=tmp / WEIGHTS, **options)
    except OSError:  # no room for the store (or the files cannot be read: the caller's read says which)
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        info = {"name": zoo.name, "description": zoo.description, "format": zoo.format,
                "architecture": zoo.arch.spec, "extra": zoo.extra}
        (tmp / "zoo.json").write_text(json.dumps(info))
        (tmp / "metadata.json").write_text(zoo.metadata.to_json(orient="table", index=False))
        (tmp / "key.json").write_text(key)
    except (OSError, TypeError, ValueError):  # not kept (what the reader noted is not plain data): used once
        shutil.rmtree(tmp, ignore_errors=True)
        return zoo
    if where.exists():
        shutil.rmtree(where, ignore_errors=True)
    os.replace(tmp, where)
    return zoo
