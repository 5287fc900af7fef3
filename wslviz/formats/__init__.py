"""Zoo readers, one module per on-disk layout, behind one registry.

Each reader module exposes ``detect(path) -> bool`` (cheap: looks at file names only) and
``read(path, **options) -> Zoo``. :func:`wslviz.zoo.load_zoo` tries ``detect`` in ``READERS`` order
and calls the first that claims the path. Every reader raises :class:`ZooFormatError` naming the file
and the problem for anything malformed.
"""

from __future__ import annotations

import importlib
from pathlib import Path


class ZooFormatError(ValueError):
    """A zoo on disk that cannot be read; the message names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)


# name -> module under wslviz.formats; order is detection priority (most specific first).
READERS: dict[str, str] = {
    "native": "wslviz.formats.native",  # zoo.json
    "archive": "wslviz.formats.archive",  # a .zip/.tar.gz/.tgz/.tar file holding a zoo in any layout
    "huggingface": "wslviz.formats.huggingface",  # model.safetensors / model.safetensors.index.json
    "modelzoos": "wslviz.formats.modelzoos",  # <trial>/params.json + checkpoint_<e>/checkpoints
    "cnnzoo": "wslviz.formats.cnnzoo",  # weights.npy + layout.csv (+ metrics.csv.gz)
    "pdiff": "wslviz.formats.pdiff",  # [checkpoint/]NNNN_accX_seedN_tag.pth
    "inr": "wslviz.formats.inr",  # splits.json, or .pth files only in sub-folders
    "folder": "wslviz.formats.folder",  # .safetensors/.pt/.pth/.bin files at the top level
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
    raise ZooFormatError(path, f"not a zoo in any known layout ({', '.join(READERS)})")
