"""p-diff checkpoint folders (Wang et al. 2024, "Neural Network Diffusion")::

    <root>/checkpoint/{i:04d}_acc{acc:.4f}_seed{seed:04d}_{tag}.pth     torch.save(state_dict)

The accuracy and seed live only in the file name; they become the ``test_acc`` and ``seed``
columns (``model_id`` is ``i``). ``<root>`` may also be the ``checkpoint`` folder itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wslviz.formats._common import put_first, require_dir
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.folder import read_files

NAME = re.compile(r"^(?P<i>\d+)_acc(?P<acc>\d+(?:\.\d+)?)_seed(?P<seed>\d+)_(?P<tag>.+)\.pth$")


def _folder(path: Path) -> Path:
    return path / "checkpoint" if (path / "checkpoint").is_dir() else path


def detect(path: Path) -> bool:
    if not path.is_dir():
        return False
    folder = _folder(path)
    return any(NAME.match(p.name) for p in folder.iterdir())


def read(path: Path, arch: Any = None, activation: str | None = None, input_shape: Sequence[int] | None = None,
         check_finite: bool = True, progress: Callable[[int, int], None] | None = None, **_: Any):
    """Read a p-diff checkpoint folder; files whose names do not follow the pattern are ignored, files that
    cannot be used are listed in ``zoo.extra["skipped"]`` (see :func:`wslviz.formats.folder.read_files`)."""
    path = require_dir(path, "p-diff")
    folder = _folder(path)
    if not folder.is_dir():
        raise ZooFormatError(path, "no checkpoint folder")
    found = sorted(((m, p) for p in folder.iterdir() if (m := NAME.match(p.name))), key=lambda e: int(e[0]["i"]))
    if not found:
        raise ZooFormatError(folder, "no files named {i:04d}_acc{acc}_seed{seed}_{tag}.pth")
    for (m1, p1), (m2, p2) in zip(found, found[1:], strict=False):
        if int(m1["i"]) == int(m2["i"]):
            raise ZooFormatError(p2, f"index {int(m1['i'])} is used twice ({p1.name} and {p2.name})")
    by_name = {p.name: m for m, p in found}
    zoo = read_files(folder, [p for _, p in found], "pdiff", arch, activation, input_shape, check_finite,
                     description="p-diff checkpoints (Wang et al. 2024)", progress=progress, parse_names=False)
    kept = [by_name[name] for name in zoo.metadata["file"]]
    zoo.metadata = put_first(zoo.metadata, {"model_id": [int(m["i"]) for m in kept],
                                            "test_acc": [float(m["acc"]) for m in kept],
                                            "seed": [int(m["seed"]) for m in kept],
                                            "tag": [m["tag"] for m in kept]})
    zoo.name = path.name
    zoo.path = path
    return zoo
