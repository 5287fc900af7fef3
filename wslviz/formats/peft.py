"""PEFT LoRA adapter folders: ``adapter_config.json`` + ``adapter_model.safetensors`` (or ``adapter_model.bin``).

A folder that is one adapter opens as a one-adapter zoo; a folder whose sub-folders are adapters opens as a zoo with
one row per adapter. The zoo's architecture is the :mod:`wslviz.core.lora` kind: per adapted module ``A`` and ``B``
(``B`` times the module's scaling ``alpha / r``, or ``alpha / sqrt(r)`` with ``use_rslora``), DoRA's magnitude
vectors, and the full tensors saved beside them (``modules_to_save``, e.g. a classifier head). Adapters of one base
with different ranks form one zoo (smaller ranks padded with zeros, which leaves ``B A`` unchanged); adapters of other
modules are listed as not opened, with the reason. Rank, alpha, target modules, base model and the PEFT flags become
metadata columns.

Key names as PEFT writes them, in every version seen: a ``base_model.model.`` prefix (or none), with or without the
adapter name (``fc.lora_A.weight``, ``fc.lora_A.default.weight``), ``lora_embedding_A/B`` for embeddings (their
update is ``(B A)^T``), ``lora_magnitude_vector`` (DoRA), ``modules_to_save`` copies (``head.weight`` or
``head.modules_to_save.default.weight``; the ``original_module`` copy is the base's and is dropped).
``fan_in_fan_out`` (GPT-2's ``Conv1D``, which stores ``[in, out]``), ``rank_pattern`` and ``alpha_pattern``
(per-module ranks and alphas, keys matched as PEFT matches them: the module name or its trailing dotted part).

The configuration is read with ``peft``'s own :class:`peft.LoraConfig` when ``peft`` is installed (``pip install
wslviz[hf]``), as documented JSON otherwise. The weights are read without running code (:mod:`wslviz.formats.safeio`).
With the base model (``base=`` a Hugging Face model folder, or ``(architecture, weights)``) the adapters run
(evaluation, landscapes, merging by accuracy).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from wslviz.core.lora import LoraArchitecture, lora_spec
from wslviz.core.zoo import Zoo
from wslviz.formats._common import read_json, require_dir, require_finite
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.safeio import read_checkpoint

CONFIG = "adapter_config.json"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PREFIX = "base_model.model."
_FACTOR = re.compile(r"^(?P<module>.+)\.lora_(?P<part>A|B)(?:\.(?P<adapter>[^.]+))?\.(?P<leaf>weight|bias)$")
_EMBEDDING = re.compile(r"^(?P<module>.+)\.lora_embedding_(?P<part>A|B)(?:\.(?P<adapter>[^.]+))?$")
_MAGNITUDE = re.compile(r"^(?P<module>.+)\.lora_magnitude_vector(?:\.(?P<adapter>(?!weight$)[^.]+))?(?:\.weight)?$")
_SAVED = re.compile(r"^(?P<module>.+)\.modules_to_save\.(?P<adapter>[^.]+)\.(?P<leaf>.+)$")


def is_adapter(path: Path) -> bool:
    return (path / CONFIG).is_file()


def detect(path: Path) -> bool:
    if not path.is_dir():
        return False
    return is_adapter(path) or any(p.is_dir() and is_adapter(p) for p in path.iterdir())


def read_config(folder: Path) -> dict[str, Any]:
    """The adapter's LoRA configuration as a dict (through ``peft.LoraConfig`` when installed)."""
    raw = read_json(folder / CONFIG)
    if not isinstance(raw, dict):
        raise ZooFormatError(folder / CONFIG, "expected a JSON object")
    peft_type = str(raw.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ZooFormatError(folder / CONFIG, f"peft_type {peft_type} is not LoRA (only LoRA adapters open as a LoRA "
                             "zoo)")
    try:
        from peft import LoraConfig
    except ImportError:
        return raw
    known = {f.name for f in fields(LoraConfig)}
    try:  # from the dict already read (from_pretrained would read the file again, and may reach for the hub)
        config = LoraConfig(**{k: v for k, v in raw.items() if k in known and k != "peft_type"})
    except Exception:  # a config this peft version cannot parse: its documented keys still read
        return raw
    return {**raw, **{k: getattr(config, k) for k in raw if k in known}}


def _pattern(patterns: Any, module: str) -> Any:
    """The value of the first key of ``patterns`` that names ``module`` (the whole name or its trailing dotted
    part, as PEFT matches ``rank_pattern``/``alpha_pattern`` keys), else None."""
    for key, value in (patterns or {}).items():
        try:
            if module == key or re.fullmatch(rf"(.*\.)?{key}", module):
                return value
        except re.error:
            continue
    return None


@dataclass
class Adapter:
    """One adapter read from its folder: ``modules`` (name -> module entry of :func:`wslviz.core.lora.lora_spec`),
    ``tensors`` (layout name -> tensor, ``B`` already scaled), ``config``, ``notes``."""

    name: str
    config: dict[str, Any]
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def signature(self) -> tuple:
        """What must agree for adapters to share a zoo: the modules, their target shapes and kinds, the extras."""
        mods = tuple((n, tuple(m["target_shape"]), m["transpose"], m["dora"]) for n, m in sorted(self.modules.items()))
        return mods, tuple(sorted((k, tuple(v)) for k, v in self.extra.items()))


def _weights_file(folder: Path) -> Path:
    for name in WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    raise ZooFormatError(folder, f"an adapter folder needs {' or '.join(WEIGHTS)} beside {CONFIG}")


def read_adapter(folder: Path, name: str | None = None) -> Adapter:
    """Read one adapter folder (see the module docstring)."""
    config = read_config(folder)
    where = _weights_file(folder)
    ckpt = read_checkpoint(where)
    adapter = Adapter(name or folder.name, config, notes=list(ckpt.notes))
    factors: dict[str, dict[str, torch.Tensor]] = {}
    embedding: set[str] = set()
    names_seen: set[str] = set()
    for key, t in ckpt.tensors.items():
        k = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if m := _FACTOR.match(k):
            if m["leaf"] == "bias":
                raise ZooFormatError(where, f"{key}: LoRA biases (lora_bias=True) are not supported")
            factors.setdefault(m["module"], {})[m["part"]] = t
        elif m := _EMBEDDING.match(k):
            factors.setdefault(m["module"], {})[m["part"]] = t
            embedding.add(m["module"])
        elif m := _MAGNITUDE.match(k):
            factors.setdefault(m["module"], {})["M"] = t.reshape(-1)
        elif m := _SAVED.match(k):
            adapter.extra[f"{m['module']}.{m['leaf']}"] = list(t.shape)
            adapter.tensors[f"{m['module']}.{m['leaf']}"] = t
        elif ".original_module." in k:
            continue
        else:
            adapter.extra[k] = list(t.shape)
            adapter.tensors[k] = t
        if m is not None and m.groupdict().get("adapter"):
            names_seen.add(m["adapter"])
    if len(names_seen) > 1:
        raise ZooFormatError(where, f"holds several adapters ({', '.join(sorted(names_seen))}); save one per folder")
    if not factors:
        raise ZooFormatError(where, "holds no lora_A / lora_B tensors")
    alpha0, use_rs = float(config.get("lora_alpha", 8)), bool(config.get("use_rslora", False))
    for module, parts in factors.items():
        if "A" not in parts or "B" not in parts:
            raise ZooFormatError(where, f"module {module}: lora_A and lora_B must both be saved")
        a, b, is_emb = parts["A"], parts["B"], module in embedding
        r = a.shape[0]
        if b.dim() < 2 or b.shape[1] != r:
            raise ZooFormatError(where, f"module {module}: lora_B {list(b.shape)} does not fit lora_A {list(a.shape)}")
        alpha = _pattern(config.get("alpha_pattern"), module)
        alpha = alpha0 if alpha is None else float(alpha)
        scaling = alpha / math.sqrt(r) if use_rs else alpha / r
        transpose = is_emb or (a.dim() == 2 and bool(config.get("fan_in_fan_out", False)))
        k = math.prod(a.shape[1:])
        target = [k, b.shape[0]] if transpose else [b.shape[0], *a.shape[1:]]
        adapter.modules[module] = {"name": module, "rank": r, "a_shape": list(a.shape), "b_shape": list(b.shape),
                                   "target": f"{module}.weight", "target_shape": target, "transpose": transpose,
                                   "dora": "M" in parts, "scaling": scaling, "alpha": alpha}
        adapter.tensors[f"{module}.lora_A"] = a
        adapter.tensors[f"{module}.lora_B"] = b * scaling
        if "M" in parts:
            adapter.tensors[f"{module}.lora_magnitude"] = parts["M"]
    return adapter


def _padded(t: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    if t.shape[axis] == size:
        return t
    shape = list(t.shape)
    shape[axis] = size - t.shape[axis]
    return torch.cat([t, t.new_zeros(shape)], axis)


def adapter_folders(path: Path) -> list[Path]:
    """The adapter folders a path names: itself, or its sub-folders that are adapters (sorted by name)."""
    if is_adapter(path):
        return [path]
    return sorted((p for p in path.iterdir() if p.is_dir() and is_adapter(p)), key=lambda p: p.name)


def _metadata(adapter: Adapter) -> dict[str, Any]:
    c = adapter.config
    ranks = sorted({m["rank"] for m in adapter.modules.values()})
    return {"adapter": adapter.name, "rank": int(c.get("r", max(ranks))), "alpha": float(c.get("lora_alpha", 8)),
            "module_ranks": "/".join(map(str, ranks)), "target_modules": ", ".join(sorted(adapter.modules)),
            "base": str(c.get("base_model_name_or_path") or ""), "use_rslora": bool(c.get("use_rslora", False)),
            "use_dora": any(m["dora"] for m in adapter.modules.values()),
            "fan_in_fan_out": bool(c.get("fan_in_fan_out", False)), "task_type": str(c.get("task_type") or "")}


def read(path: Path, base: Any = None, check_finite: bool = True, progress: Callable[[int, int], None] | None = None,
         **_: Any) -> Zoo:
    """Read a PEFT adapter folder or a folder of them (see the module docstring). ``base``: the base model, so that
    the adapters run: a model folder (a Hugging Face folder with ``config.json``, or any zoo layout; its first
    checkpoint), or ``(architecture, weights [P])`` (or a mapping with ``arch`` and ``weights``)."""
    path = require_dir(path, "PEFT adapter")
    folders = adapter_folders(path)
    if not folders:
        raise ZooFormatError(path, f"no adapter folders ({CONFIG} + {' or '.join(WEIGHTS)})")
    adapters, skipped = [], {}
    for i, folder in enumerate(folders):
        name = folder.name if folder != path else path.name
        try:
            adapters.append(read_adapter(folder, name))
        except ZooFormatError as e:
            if len(folders) == 1:
                raise
            skipped[name] = e.problem
        if progress:
            progress(i + 1, len(folders))
    if not adapters:
        raise ZooFormatError(path, f"no adapter could be read: {next(iter(skipped.values()))}")
    groups: dict[tuple, list[Adapter]] = {}
    for a in adapters:
        groups.setdefault(a.signature, []).append(a)
    chosen = max(groups.values(), key=len)
    for a in adapters:
        if a.signature != chosen[0].signature:
            skipped[a.name] = (f"adapts other modules ({', '.join(sorted(a.modules))}) than the "
                               f"{len(chosen)} adapters opened ({', '.join(sorted(chosen[0].modules))})")
    modules = []
    for name, m in sorted(chosen[0].modules.items()):
        r = max(a.modules[name]["rank"] for a in chosen)
        modules.append({**{k: v for k, v in m.items() if k not in ("scaling", "alpha")}, "rank": r,
                        "a_shape": [r, *m["a_shape"][1:]], "b_shape": [m["b_shape"][0], r, *m["b_shape"][2:]]})
    extra = [{"name": k, "shape": v} for k, v in sorted(chosen[0].extra.items())]
    base_model = str(chosen[0].config.get("base_model_name_or_path") or "")
    spec = lora_spec(modules, extra, base_model)
    checkpoint = None
    if isinstance(base, str | Path):  # a model folder: the base model's architecture and its (first) weights
        from wslviz.formats import read_zoo

        folder = Path(base)
        base_zoo = read_zoo(folder)
        base = (base_zoo.arch, base_zoo.weights[0])
        if base_zoo.format == "huggingface" and base_zoo.n_checkpoints == 1:
            checkpoint = str(folder.resolve())  # referenced, not copied into the spec
    if base is not None:
        b_arch, b_weights = (base["arch"], base["weights"]) if isinstance(base, Mapping) else base
        arch = LoraArchitecture.with_base(spec, b_arch, torch.as_tensor(b_weights).float(), checkpoint)
    else:
        arch = LoraArchitecture(spec)
    rows = []
    for a in chosen:
        tensors = dict(a.tensors)
        for m in modules:
            n, r = m["name"], m["rank"]
            tensors[f"{n}.lora_A"] = _padded(tensors[f"{n}.lora_A"], 0, r)
            tensors[f"{n}.lora_B"] = _padded(tensors[f"{n}.lora_B"], 1, r)
        rows.append(arch.flatten(tensors))
    weights = torch.stack(rows)
    if check_finite:
        require_finite(weights, lambda i: chosen[i].name, "adapter")
    meta = pd.DataFrame([{"model_id": i, **_metadata(a)} for i, a in enumerate(chosen)])
    notes = {"B holds each adapter's scaling alpha / r (alpha / sqrt(r) with rsLoRA), so delta_W = B A": len(chosen)}
    for a in chosen:
        for n in a.notes:
            notes[n] = notes.get(n, 0) + 1
    parts = [f"{len(chosen)} LoRA adapter(s) of {base_model or 'an unnamed base model'}"]
    if skipped:
        parts.append(f"{len(skipped)} folder(s) not opened")
    return Zoo(name=path.name, metadata=meta, weights=weights, arch=arch, task=None, path=path, format="peft",
               description="; ".join(parts), extra={"skipped": skipped, "notes": notes})
