"""Hugging Face model folders: ``model.safetensors``, or shards listed in
``model.safetensors.index.json`` (``{"weight_map": {tensor name: shard file}}``).

A folder that is one such model opens as a one-checkpoint zoo; a folder whose sub-folders are such
models opens as a zoo with one row per sub-folder (``model`` column), grouped by architecture as plain
folders are (:mod:`wslviz.formats.folder`). Sequential MLP/CNN state dicts become a network (``arch=`` gives
any other), the rest a weights-only layout; the activation is read from ``config.json``
(``hidden_act``/``activation``) when present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from safetensors import safe_open

from wslviz.core.hf_arch import HuggingFaceArchitecture
from wslviz.core.layout import ArchitectureError
from wslviz.core.protocol import ArchitectureLike
from wslviz.formats._common import ACTIVATION_NAMES, read_json, require_dir
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.folder import parse_arch, read_files
from wslviz.formats.groups import GroupedCheckpoints
from wslviz.formats.safeio import Checkpoint, read_checkpoint
from wslviz.formats.served import laid_out, serve_files, serve_inferred

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def is_model(path: Path) -> bool:
    return (path / SINGLE).is_file() or (path / INDEX).is_file()


def detect(path: Path) -> bool:
    if not path.is_dir():
        return False
    return is_model(path) or any(p.is_dir() and is_model(p) for p in path.iterdir())


def model_checkpoint(folder: Path) -> Checkpoint:
    """The state dict of one model folder, gathering shards through the index when there is one."""
    if (folder / SINGLE).is_file():
        return read_checkpoint(folder / SINGLE)
    where = folder / INDEX
    index = read_json(where)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ZooFormatError(where, "expected a non-empty 'weight_map' {tensor name: shard file}")
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        if not isinstance(shard, str) or len(PurePosixPath(shard).parts) != 1 or shard in ("..", "."):
            raise ZooFormatError(where, f"tensor {key!r}: shard {shard!r} must be a file name in this folder")
        shards.setdefault(shard, []).append(key)
    out: dict[str, torch.Tensor] = {}
    notes: list[str] = []
    for shard, keys in shards.items():
        if not (folder / shard).is_file():
            raise ZooFormatError(folder / shard, f"missing shard listed in {INDEX}")
        part = read_checkpoint(folder / shard)
        notes += [n for n in part.notes if n not in notes]
        for key in keys:
            if key not in part.tensors:
                raise ZooFormatError(folder / shard, f"tensor {key!r} listed in {INDEX} is not in this shard")
            out[key] = part.tensors[key]
    return Checkpoint(out, tuple(notes))


def tensor_names(folder: Path) -> list[str]:
    """The tensor names of one model folder, read from the safetensors header or the shard index (no tensor is
    loaded)."""
    if (folder / SINGLE).is_file():
        try:
            with safe_open(str(folder / SINGLE), framework="pt") as f:
                return list(f.keys())
        except Exception as e:  # a file the safe reader (model_checkpoint) will refuse with its own reason
            raise ZooFormatError(folder / SINGLE, f"cannot read the safetensors header ({str(e)[:200]})") from None
    index = read_json(folder / INDEX)
    return list(index.get("weight_map", {})) if isinstance(index, dict) else []


def _activation(folder: Path, default: str | None) -> str | None:
    if not (folder / "config.json").is_file():
        return default
    config = read_json(folder / "config.json")
    value = next((config.get(k) for k in ("hidden_act", "activation", "activation_function")
                  if isinstance(config, dict) and isinstance(config.get(k), str)), None)
    return ACTIVATION_NAMES.get(str(value).lower().replace("_", ""), ACTIVATION_NAMES.get(str(value), default))


def config_architecture(folder: Path, input_shape: Sequence[int] | None = None) -> tuple[Any, str]:
    """The model a folder's ``config.json`` describes, built by ``transformers`` (the ``hf`` kind,
    :mod:`wslviz.core.hf_arch`), with a note; ``(None, why not)`` without a config, without ``transformers``,
    or for a config it cannot build (the folder then opens as before, from its tensors)."""
    if not (folder / "config.json").is_file():
        return None, ""
    config = read_json(folder / "config.json")
    if not isinstance(config, dict) or "model_type" not in config:
        return None, "config.json names no model_type: the tensors are read without it"
    if config.get("auto_map"):
        raise ZooFormatError(folder / "config.json", "names remote code (auto_map); wslviz never runs code from "
                             "a model folder: state the architecture instead")
    spec = {"kind": "hf", "config": config, **({"input_shape": list(input_shape)} if input_shape else {})}
    try:
        return HuggingFaceArchitecture(spec), f"built from config.json ({config['model_type']}) by transformers"
    except ArchitectureError as e:
        return None, f"config.json not used ({e})"


def _in_order(built: HuggingFaceArchitecture, keys: list[str]) -> ArchitectureLike | None:
    """``built`` laid out in the order of a file's ``keys``, when they are exactly its tensors (no other head's,
    no tied copy); else None."""
    names = [built.layout_name(k) for k in keys]
    return None if None in names else laid_out(built, names)


def _served(built: HuggingFaceArchitecture, check_finite: bool, progress: Callable[[int, int], None] | None,
            folders: Sequence[Path], names: Sequence[str]) -> GroupedCheckpoints | None:
    """The model folders' rows read in place from their ``model.safetensors`` (:mod:`wslviz.formats.served`), the
    architecture laid out in the files' order; None where the files do not allow it."""
    return serve_files([f / SINGLE for f in folders], names, partial(_in_order, built), check_finite, progress)


def _served_inferred(arch: Any, activation: str | None, input_shape: Sequence[int] | None, check_finite: bool,
                     progress: Callable[[int, int], None] | None, folders: Sequence[Path],
                     names: Sequence[str]) -> GroupedCheckpoints | None:
    """The model folders' rows read in place where no architecture was built from ``config.json``: the stated one
    or the one their tensors give (:func:`wslviz.formats.served.serve_inferred`)."""
    return serve_inferred([f / SINGLE for f in folders], names, parse_arch(arch), activation, input_shape,
                          check_finite, progress)


def read(path: Path, arch: Any = None, activation: str | None = None, input_shape: Sequence[int] | None = None,
         check_finite: bool = True, progress: Callable[[int, int], None] | None = None,
         stack: int | str | None = None, group: int | None = None, store: Path | None = None, **_: Any):
    """Read one Hugging Face model folder, or a folder of them (options as for
    :func:`wslviz.formats.folder.read`; the activation defaults to the one ``config.json`` names). Without a
    stated ``arch``, a ``config.json`` that ``transformers`` can build gives the network
    (:func:`config_architecture`): its forward, and for GPT-2, BERT and Llama its symmetries."""
    path = require_dir(path, "Hugging Face")
    folders = [path] if is_model(path) else sorted(p for p in path.iterdir() if p.is_dir() and is_model(p))
    if not folders:
        raise ZooFormatError(path, f"no {SINGLE} or {INDEX}")
    act = activation or _activation(folders[0], None)
    note, built = "", None
    if arch is None and stack is None:
        built, note = config_architecture(folders[0], input_shape)
        arch = built
    serve = None
    if group is None and stack is None and all((f / SINGLE).is_file() for f in folders):
        serve = (partial(_served, built, check_finite, progress) if built is not None else
                 partial(_served_inferred, arch, act, input_shape, check_finite, progress))
    zoo = read_files(path, folders, "huggingface", arch, act, input_shape, check_finite, loader=model_checkpoint,
                     description="Hugging Face model folder(s)", progress=progress, stack=stack, group=group,
                     store=store, serve=serve)
    notes = dict(zoo.extra.get("notes", {}))
    if note:
        notes[note] = len(folders)
    if built is not None:
        left = built.unused_keys(tensor_names(folders[0]))
        if left:
            notes[f"{len(left)} tensor(s) this model does not hold left out (e.g. {left[0]})"] = len(folders)
    zoo.extra["notes"] = notes
    zoo.metadata = zoo.metadata.rename(columns={"file": "model"})
    if folders == [path]:
        zoo.metadata["model"] = [path.name]
    return zoo
