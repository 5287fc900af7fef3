"""INR zoos as DWSNets (Navon et al. 2023) and NFN (Zhou et al. 2023) use them: one SIREN per image,
each saved as a ``.pth`` state dict somewhere below the root, the image's label in the path::

    <root>/mnist_png_training_2_23645/checkpoints/model_final.pth    seq.0.weight [32, 2], seq.0.bias,
                                                                      seq.1.weight [32, 32], ..., seq.2.weight [1, 32]
    <root>/splits.json   optional: {"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}

The network (DWSNets' ``INR``): Siren(2, h) -> Siren(h, h) ... -> Linear(h, out), where a Siren layer
computes ``sin(w0 * (W x + b))`` with ``w0 = 30`` (Sitzmann et al. 2020). DWSNets adds 0.5 to the
output to get pixel values; that constant is not part of the weights and is recorded in
``zoo.extra["output_offset"]``. Labels come from ``splits.json`` when it lists the file, else from a
path component like ``<dataset>_<split>_<label>_<index>``, else from the first folder below the root.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from wslviz.core.zoo import Zoo
from wslviz.formats._common import read_json, require_dir, require_finite, set_sin_w0, stack_files
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.folder import is_runs

SPLITS = "splits.json"
W0 = 30.0
OUTPUT_OFFSET = 0.5
PART = re.compile(r"_(?P<split>train|training|test|testing|val|validation)_(?P<label>[^_/]+)_\d+$")
SPLIT_NAMES = {"training": "train", "testing": "test", "validation": "val"}


def detect(path: Path) -> bool:
    if not path.is_dir():
        return False
    if (path / SPLITS).is_file():
        return True
    if any(p.suffix == ".pth" for p in path.iterdir()) or is_runs(path):
        return False  # checkpoints at the top level, or one folder of epochs per run: a plain folder
    for _, _, files in os.walk(path):
        if any(f.endswith(".pth") for f in files):
            return True
    return False


def label_from_path(rel: PurePosixPath) -> tuple[str | None, str | None]:
    """(label, split) from a relative path: a ``*_<split>_<label>_<n>`` folder, else the first folder."""
    for part in reversed(rel.parts[:-1]):
        m = PART.search(part)
        if m:
            return m["label"], SPLIT_NAMES.get(m["split"], m["split"])
    return (rel.parts[0], None) if len(rel.parts) > 1 else (None, None)


def read_splits(path: Path, rel_paths: list[PurePosixPath]) -> dict[PurePosixPath, tuple[str, Any]]:
    """relative path -> (split, label) from ``splits.json``; listed paths are matched to our files by
    their longest common tail, since the file records the paths of the machine that wrote it."""
    where = path / SPLITS
    data = read_json(where)
    if not isinstance(data, Mapping):
        raise ZooFormatError(where, "expected {split: {'path': [...], 'label': [...]}}")
    by_tail: dict[tuple[str, ...], PurePosixPath] = {}
    for rel in rel_paths:
        for k in range(1, len(rel.parts) + 1):
            tail = rel.parts[-k:]
            by_tail[tail] = rel if tail not in by_tail or by_tail[tail] == rel else None
    out: dict[PurePosixPath, tuple[str, Any]] = {}
    for split, entry in data.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), list):
            raise ZooFormatError(where, f"split {split!r}: expected {{'path': [...], 'label': [...]}}")
        labels = entry.get("label", [None] * len(entry["path"]))
        if not isinstance(labels, list) or len(labels) != len(entry["path"]):
            raise ZooFormatError(where, f"split {split!r}: 'label' must be a list as long as 'path'")
        for listed, label in zip(entry["path"], labels, strict=True):
            parts = PurePosixPath(str(listed).replace("\\", "/")).parts
            match = next((by_tail[parts[-k:]] for k in range(len(parts), 0, -1) if parts[-k:] in by_tail), None)
            if match is None:
                raise ZooFormatError(where, f"split {split!r} lists {listed!r}, which matches no single file below "
                                     f"{path}")
            if match in out:
                raise ZooFormatError(where, f"{listed!r} is listed twice (splits {out[match][0]!r} and {split!r})")
            if label is not None and not isinstance(label, int | str | float):
                raise ZooFormatError(where, f"label {label!r} of {listed!r} is not a number or a string")
            out[match] = (str(split), label)
    return out


def read(path: Path, w0: float = W0, check_finite: bool = True, progress: Callable[[int, int], None] | None = None,
         **_: Any):
    """Read an INR zoo (SIREN state dicts below ``path``); ``w0`` is the sine frequency."""
    path = require_dir(path, "INR")
    files = sorted(path.rglob("*.pth"))
    if not files:
        raise ZooFormatError(path, "no .pth files below this folder")
    arch, weights = stack_files(files, activation="sin", progress=progress)
    arch = set_sin_w0(arch, w0)
    if check_finite:
        require_finite(weights, lambda i: files[i])
    rels = [PurePosixPath(f.relative_to(path).as_posix()) for f in files]
    from_path = [label_from_path(r) for r in rels]
    splits = read_splits(path, rels) if (path / SPLITS).is_file() else {}
    meta = pd.DataFrame({
        "model_id": range(len(files)),
        "file": [str(r) for r in rels],
        "label": [splits[r][1] if r in splits and splits[r][1] is not None else lab
                  for r, (lab, _) in zip(rels, from_path, strict=True)],
        "split": [splits[r][0] if r in splits else sp for r, (_, sp) in zip(rels, from_path, strict=True)],
    })
    try:
        meta["label"] = pd.to_numeric(meta["label"])
    except (ValueError, TypeError):
        meta["label"] = meta["label"].astype(object)
    return Zoo(name=path.name, metadata=meta, weights=weights, arch=arch, task=None, path=path, format="inr",
               description=f"INR zoo (SIREN, w0={w0:g}); image = network output + {OUTPUT_OFFSET}",
               extra={"output_offset": OUTPUT_OFFSET})
