"""Model Zoos (Schürholt et al., NeurIPS 2022 Datasets & Benchmarks): the raw Ray Tune layout::

    <root>/<trial dir>/params.json                  config: seed, model::type, model::nlin, optim::lr, ...
    <root>/<trial dir>/result.json                  one JSON object per line per epoch
                                                    (train_acc, test_acc, ..., training_iteration)
    <root>/<trial dir>/checkpoint_<e>/checkpoints   torch.save(state_dict), no suffix; the folder is
                                                    spelled checkpoint_{e} or checkpoint_{e:06d}

Epoch 0 is the untrained model (its metrics are missing when ``result.json`` has no line for
``training_iteration`` 0). The state dict keys are ``module_list.{i}.weight/.bias``; ``i`` shifts
with dropout layers, so layers are matched by order and shape, never by index.

Architectures (``model::type``):

* ``CNN`` (CNN-s): Conv2d(c,8,5) -> MaxPool2d(2) -> act -> Conv2d(8,6,5) -> MaxPool2d(2) -> act ->
  Conv2d(6,4,2) -> act -> Flatten(36) -> Linear(36,20) -> act -> Linear(20,10); 28x28 inputs.
* ``CNN3`` (CNN-l): three Conv2d(3x3) each followed by MaxPool2d(2) -> act, Flatten(60) ->
  Linear(60,20) -> act -> Linear(20,10); 32x32 inputs.
* ``Resnet18``: torchvision's ResNet-18 keys (``conv1``, ``bn1``, ``layer1.0.conv1``, ...) with a 3x3 stride-1
  stem and no max-pool, opened as a module architecture (``resnet18_modelzoos``); 32x32 inputs.

Dropout layers are left out: in evaluation mode they are the identity, so the function is the same.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from wslviz.core.arch import Architecture, ArchitectureError
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.zoo import Zoo
from wslviz.formats._common import (
    activation_name,
    pick_activation,
    read_json,
    require_dir,
    require_finite,
    scalar_items,
    stack_files,
)
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.safeio import load_state_dict

CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
CHECKPOINT_FILE = "checkpoints"
# which conv layers are followed by max-pooling, per model::type
POOLED = {"CNN": (True, True, False), "CNN3": (True, True, True)}
STANDARD_SIZE = {"CNN": 28, "CNN3": 32}
_SKIP_RESULT = ("timestamp", "pid", "time_", "timesteps_", "episodes_", "iterations_since_restore", "done")


def _checkpoint_dirs(trial: Path) -> list[tuple[int, Path]]:
    out = []
    for p in trial.iterdir():
        m = CHECKPOINT_DIR.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def _is_trial(p: Path) -> bool:
    return (p / "params.json").is_file() and any(
        CHECKPOINT_DIR.match(c.name) and (c / CHECKPOINT_FILE).is_file() for c in p.iterdir())


def detect(path: Path) -> bool:
    if not path.is_dir():
        return False
    if _is_trial(path):
        return True
    return any(p.is_dir() and _is_trial(p) for p in path.iterdir())


def _trials(path: Path) -> list[Path]:
    if (path / "params.json").is_file():
        return [path]
    trials = sorted(p for p in path.iterdir() if p.is_dir() and (p / "params.json").is_file())
    if not trials:
        raise ZooFormatError(path, "no trial folders with params.json (Model Zoos / Ray Tune layout)")
    return trials


def _results(path: Path) -> dict[int, dict[str, Any]]:
    """``training_iteration`` -> that epoch's scalar metrics, from a line-per-epoch result.json."""
    if not path.is_file():
        return {}
    out: dict[int, dict[str, Any]] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ZooFormatError(path, f"unreadable ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise ZooFormatError(path, f"line {n} is not valid JSON") from None
        if not isinstance(row, dict) or "training_iteration" not in row:
            raise ZooFormatError(path, f"line {n} has no 'training_iteration'")
        it = row["training_iteration"]
        if isinstance(it, bool) or not isinstance(it, int | float) or not math.isfinite(it) or it != int(it):
            raise ZooFormatError(path, f"line {n}: training_iteration {it!r} is not an integer")
        if int(it) in out:
            raise ZooFormatError(path, f"line {n}: training_iteration {int(it)} appears twice")
        out[int(it)] = {k: v for k, v in row.items()
                        if isinstance(v, int | float) and not isinstance(v, bool) and not k.startswith(_SKIP_RESULT)}
    return out


def architecture(state_dict: dict[str, torch.Tensor], path: Path, model_type: str | None, activation: str,
                 input_shape: list[int] | None = None) -> Architecture:
    """The sequential spec of a Model Zoos CNN from its ``module_list`` state dict (see module doc)."""
    layers = []
    for key, value in state_dict.items():
        m = re.fullmatch(r"module_list\.(\d+)\.(weight|bias)", key)
        if not m:
            raise ZooFormatError(path, f"unexpected key {key!r}; Model Zoos CNNs have module_list.<i>.weight/bias")
        if m.group(2) == "weight":
            layers.append((int(m.group(1)), tuple(value.shape)))
    layers.sort()
    convs = [s for _, s in layers if len(s) == 4]
    linears = [s for _, s in layers if len(s) == 2]
    shapes = [len(s) for _, s in layers]
    if model_type not in (None, *POOLED):
        raise ZooFormatError(path, f"model::type {model_type!r} is not supported (CNN, CNN3 and Resnet18 are)")
    if len(convs) != 3 or len(linears) != 2 or shapes != [4, 4, 4, 2, 2]:
        raise ZooFormatError(path, f"expected 3 conv and 2 linear layers (Model Zoos CNN-s/CNN-l), found weight "
                             f"shapes {[list(s) for _, s in layers]}")
    candidates = [model_type] if model_type else list(POOLED)
    for kind in candidates:
        sizes = [input_shape[1]] if input_shape else [STANDARD_SIZE[kind], *range(4, 257)]
        for size in sizes:
            spec_layers: list[dict[str, Any]] = []
            for (out_c, in_c, k, _), pooled in zip(convs, POOLED[kind], strict=True):
                spec_layers.append({"type": "conv2d", "in_channels": in_c, "out_channels": out_c, "kernel_size": k})
                if pooled:
                    spec_layers.append({"type": "maxpool2d", "kernel_size": 2})
                spec_layers.append({"type": activation})
            spec_layers += [{"type": "flatten"},
                            {"type": "linear", "in_features": linears[0][1], "out_features": linears[0][0]},
                            {"type": activation},
                            {"type": "linear", "in_features": linears[1][1], "out_features": linears[1][0]}]
            try:
                return Architecture({"input_shape": [convs[0][1], size, size], "layers": spec_layers})
            except ArchitectureError:
                continue
    raise ZooFormatError(path, f"no image size makes the conv stack give the {linears[0][1]} features the first "
                         "linear layer takes; pass input_shape=[C, H, W]")


def resnet18_architecture(state_dict: dict[str, torch.Tensor], path: Path,
                           input_shape: list[int] | None = None) -> ModuleArchitecture:
    """The ``Resnet18`` of the Model Zoos (torchvision's ResNet-18 with a 3x3 stride-1 stem and no max-pool,
    :class:`wslviz.core.builtins.ResNet18`), its input channels, width and classes read from the checkpoint."""
    if "conv1.weight" not in state_dict or "fc.weight" not in state_dict:
        raise ZooFormatError(path, "model::type Resnet18, but the checkpoint has no conv1.weight / fc.weight "
                             f"(found {sorted(state_dict)[:4]}...)")
    stem, fc = tuple(state_dict["conv1.weight"].shape), tuple(state_dict["fc.weight"].shape)
    shape = list(input_shape) if input_shape else [stem[1], 32, 32]
    try:
        return ModuleArchitecture.builtin("resnet18_modelzoos", input_shape=shape, in_channels=stem[1],
                                          n_classes=fc[0], width=stem[0] / 64)
    except ArchitectureError as e:
        raise ZooFormatError(path, f"model::type Resnet18: {e}") from None


def read(path: Path, activation: str | None = None, input_shape: list[int] | None = None,
         check_finite: bool = True, progress: Callable[[int, int], None] | None = None, **_: Any):
    """Read a Model Zoos folder (or one trial folder). ``activation`` picks which models to open when
    trials differ in ``model::nlin``; ``input_shape`` overrides the standard image size."""
    path = require_dir(path, "Model Zoos")
    trials = _trials(path)
    configs = []
    for trial in trials:
        params = read_json(trial / "params.json")
        if not isinstance(params, dict):
            raise ZooFormatError(trial / "params.json", "expected a JSON object of hyper-parameters")
        nlin = params.get("model::nlin", activation or "relu")
        configs.append((trial, params, activation_name(nlin, trial / "params.json")))
    chosen, keep, note = pick_activation([c[2] for c in configs], activation, path)
    rows: list[dict[str, Any]] = []
    files: list[Path] = []
    for model_id, (trial, params, act) in enumerate(configs):
        if act != chosen:
            continue
        results = _results(trial / "result.json")
        epochs = _checkpoint_dirs(trial)
        if not epochs:
            raise ZooFormatError(trial, "no checkpoint_<epoch> folders")
        for (e1, d1), (e2, d2) in zip(epochs, epochs[1:], strict=False):
            if e1 == e2:
                raise ZooFormatError(d2, f"epoch {e1} appears twice ({d1.name} and {d2.name})")
        config = scalar_items(params)
        for epoch, folder in epochs:
            file = folder / CHECKPOINT_FILE
            if not file.is_file():
                raise ZooFormatError(file, "missing checkpoint file")
            rows.append({**config, **results.get(epoch, {}), "model_id": model_id, "trial": trial.name,
                         "seed": params.get("seed"), "epoch": epoch, "training_iteration": epoch})
            files.append(file)
    model_type = configs[int(keep.nonzero()[0][0])][1].get("model::type")
    first = load_state_dict(files[0])
    if model_type == "Resnet18":
        arch = resnet18_architecture(first, files[0], input_shape)
    else:
        arch = architecture(first, files[0], model_type, chosen, input_shape)
    arch, weights = stack_files(files, arch=arch, progress=progress)
    if check_finite:
        require_finite(weights, lambda i: files[i])
    meta = pd.DataFrame(rows)
    for col in ("epoch", "training_iteration"):
        meta[col] = meta[col].astype(int)
    if "train_acc" in meta and "test_acc" in meta:
        meta["ggap"] = pd.to_numeric(meta["train_acc"]) - pd.to_numeric(meta["test_acc"])
    front = [c for c in ("model_id", "trial", "epoch", "seed", "test_acc", "train_acc", "ggap") if c in meta]
    meta = meta[front + [c for c in meta.columns if c not in front]]
    description = f"Model Zoos (Schürholt et al. 2022), {model_type or 'CNN'}; {note}".rstrip("; ")
    return Zoo(name=path.name, metadata=meta, weights=weights, arch=arch, task=None, description=description,
               path=path, format="modelzoos")
