"""Zoo readers, one module per on-disk layout, behind one registry.

Each reader module exposes ``detect(path) -> bool`` (cheap: looks at file names only) and
``read(path, **options) -> Zoo``. :func:`read_zoo` tries ``detect`` in ``READERS`` order and calls the
first that claims the path; :func:`save_zoo` writes the native layout. Every reader raises
:class:`ZooFormatError` naming the file and the problem for anything malformed.

The public ``wv.load_zoo`` is :func:`wslviz.scale.cache.load_zoo`: :func:`read_zoo` plus the precompute
cache that belongs to the zoo (this layer knows nothing of caches).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pandas as pd

from wslviz.core.zoo import Zoo
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.folder import parse_arch
from wslviz.formats.native import write

__all__ = ["READERS", "ZooFormatError", "detect_format", "read_zoo", "reader", "save_zoo"]



# name -> module under wslviz.formats; order is detection priority (most specific first).
READERS: dict[str, str] = {
    "native": "wslviz.formats.native",  # zoo.json
    "archive": "wslviz.formats.archive",  # a .zip/.tar.gz/.tgz/.tar file holding a zoo in any layout
    "peft": "wslviz.formats.peft",  # adapter_config.json + adapter_model.safetensors/.bin (LoRA adapters)
    "huggingface": "wslviz.formats.huggingface",  # model.safetensors / model.safetensors.index.json
    "modelzoos": "wslviz.formats.modelzoos",  # <trial>/params.json + checkpoint_<e>/checkpoints
    "cnnzoo": "wslviz.formats.cnnzoo",  # weights.npy + layout.csv (+ metrics.csv.gz)
    "pdiff": "wslviz.formats.pdiff",  # [checkpoint/]NNNN_accX_seedN_tag.pth
    "inr": "wslviz.formats.inr",  # splits.json, or .pth files only in sub-folders
    "folder": "wslviz.formats.folder",  # .safetensors/.pt/.pth/.bin/.ckpt files, or run folders of epochs
}


def reader(name: str):
    """The reader module registered as ``name``."""
    if name not in READERS:
        raise ZooFormatError(None, f"unknown zoo format {name!r}; known: {', '.join(READERS)}")
    return importlib.import_module(READERS[name])


def detect_format(path: str | Path) -> str:
    """Name of the first registered format whose ``detect`` claims ``path``."""
    path = Path(path)
    if not path.exists():
        raise ZooFormatError(path, "no such file or directory")
    for name in READERS:
        if reader(name).detect(path):
            return name
    raise ZooFormatError(path, f"not a zoo in any known layout ({', '.join(READERS)}): {contents(path)}. A folder of "
                         "checkpoints needs PyTorch (torch.save) or safetensors files, whatever their names; a "
                         "native zoo needs zoo.json. In the app, open the folder that holds the checkpoint files "
                         "(Folder path), or upload them as a .zip")


def contents(path: Path, shown: int = 6) -> str:
    """What a path holds, in words: ``"a file of 2.1 MB"``, or ``"12 files (10 .th, 2 .json) and 3 folders"``."""
    if path.is_file():
        return f"a file of {path.stat().st_size:,} bytes that no reader recognises"
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    files = [p for p in entries if p.is_file()]
    folders = len(entries) - len(files)
    if not entries:
        return "the folder is empty"
    counts = pd.Series([p.suffix.lower() or "(no suffix)" for p in files]).value_counts()
    kinds = ", ".join(f"{n} {s}" for s, n in counts.iloc[:shown].items()) + (", ..." if len(counts) > shown else "")
    return (f"{len(files)} file(s)" + (f" ({kinds})" if files else "") + (f" and {folders} folder(s)" if folders
                                                                             else "")
            + (", none of them a checkpoint" if files else ""))


def read_zoo(path: str | Path, format: str | None = None, task: Any = None, **options: Any) -> Zoo:
    """Read a zoo in any supported layout (auto-detected, or ``format=`` one of :data:`READERS`);
    ``options`` go to the reader. Raises :class:`ZooFormatError` naming the file and the problem.

    What checkpoints do not record can be stated: ``arch`` (an architecture or spec of any kind, JSON text or a
    ``.json`` file), ``activation``, ``input_shape`` (``[C, H, W]``), ``stack`` (one of several stacks in a
    state dict), ``group`` (one of several architectures in a folder); ``task`` (a ``.npz`` path, a task spec
    or a :class:`~wslviz.core.tasks.Task`) is attached after reading so that the zoo can be evaluated.
    ``allow_code=True`` lets a module spec with a factory (user code), stated or stored in ``zoo.json``, run."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ZooFormatError(path, "no such file or directory")
    allow_code = bool(options.pop("allow_code", False))
    if options.get("arch") is not None:
        options["arch"] = parse_arch(options["arch"], allow_code=allow_code)
    module = reader(format or detect_format(path))
    if "allow_code" in inspect.signature(module.read).parameters:  # readers that build stored specs (never archives)
        options["allow_code"] = allow_code
    zoo = module.read(path, **options)
    return zoo if task is None else zoo.with_task(task)


def save_zoo(zoo: Zoo, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``zoo`` in the native layout (see :mod:`wslviz.formats.native`); refuses to overwrite unless asked."""
    return write(zoo, path, overwrite=overwrite)
