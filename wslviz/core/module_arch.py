"""Module architectures: any ``nn.Module`` (a built-in by name or a user's factory) with a flat layout.

The *module* kind of architecture (beside sequential specs, :mod:`wslviz.core.arch`): the network is an
``nn.Module`` whose state dict (parameters and buffers: BatchNorm running statistics are part of the
function in eval mode; ``num_batches_tracked`` counters are not) is cut from one float32 vector per model,
in state-dict order. Its spec is JSON-able and stored in ``zoo.json``::

    {"kind": "module", "builtin": "resnet20", "kwargs": {"depth": 8, "width": 0.25, "in_channels": 1},
     "input_shape": [1, 8, 8]}
    {"kind": "module", "factory": "path/to/models.py:make_net", "kwargs": {...}, "input_shape": [3, 32, 32]}
    {"kind": "module", "factory": "package.module:Class", ...}

``input_dtype: "int"`` with ``input_high`` marks integer inputs (token ids, stored as floats in a task) so
that probe inputs are drawn from ``[0, input_high)``.

**A factory runs the user's own Python code** (importing the file or package and calling the function or
class). It is built only when the caller says so (``allow_code=True``: :func:`wv.load_zoo` passes it only when
asked, and never for uploaded archives or in the browser); a spec with a factory read from a ``zoo.json``
without that permission raises :class:`ArchitectureError` saying why.

The interface is the sequential :class:`~wslviz.core.arch.Architecture`'s: ``layout``, ``n_params``,
``input_shape``, ``output_dim``, ``perm_spec`` (derived from the ``torch.fx`` graph,
:mod:`wslviz.core.fx_spec`), ``build``, ``unflatten``, ``flatten``, ``describe``, ``spec``, ``to_json``,
``fingerprint``, plus ``layers`` (one ``{"type", "name"}`` entry per module owning tensors, which
``ParamInfo.layer`` indexes) and ``weight_layers``; evaluation dispatches on ``kind == "module"`` to
:mod:`wslviz.core.module_eval`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import math
import sys
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wslviz.core.builtins import BUILTINS, INPUTS
from wslviz.core.layout import ArchitectureError, FlatLayout, ParamInfo
from wslviz.core.permutation import PermutationSpec

KIND = "module"
COUNTER_SUFFIX = "num_batches_tracked"
MODULE_TYPES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Linear, "linear"), (nn.Conv2d, "conv2d"), (nn.Conv1d, "conv1d"),
    (nn.modules.batchnorm._BatchNorm, "batchnorm"), (nn.LayerNorm, "layernorm"), (nn.GroupNorm, "groupnorm"),
    (nn.Embedding, "embedding"),
)
"""Layer type names by module class (the first match wins); other modules owning tensors are named by class."""


def is_module_spec(spec: Any) -> bool:
    """Whether ``spec`` (a zoo.json architecture entry) describes a module architecture."""
    return isinstance(spec, Mapping) and spec.get("kind") == KIND


def _load_factory(target: str, base: Path | None) -> Any:
    """The callable named by ``"path/to/file.py:name"`` or ``"package.module:name"`` (imports user code)."""
    if ":" not in target:
        raise ArchitectureError(f"factory {target!r} must look like 'path/to/models.py:make_net' or "
                                "'package.module:Class'")
    where, name = target.rsplit(":", 1)
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise ArchitectureError(f"factory file {path} does not exist")
        mod_name = "wslviz_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        if mod_name not in sys.modules:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise ArchitectureError(f"cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[mod_name]
                raise
        module = sys.modules[mod_name]
    else:
        module = importlib.import_module(where)
    try:
        return getattr(module, name)
    except AttributeError:
        raise ArchitectureError(f"{where} has no {name!r}") from None


def _layer_type(module: nn.Module) -> str:
    for cls, name in MODULE_TYPES:
        if isinstance(module, cls):
            return name
    return type(module).__name__.lower()


class ModuleArchitecture(FlatLayout):
    """An ``nn.Module`` architecture with the flat layout of its state dict (see the module docstring).

    Build one with :meth:`builtin` (``ModuleArchitecture.builtin("resnet20", depth=8, width=0.25,
    in_channels=1, input_shape=[1, 8, 8])``), :meth:`factory` (user code; ``allow_code`` is implied by
    calling it) or from a spec dict.
    """

    kind = KIND
    has_forward = True

    def __init__(self, spec: Mapping[str, Any], allow_code: bool = False, base: str | Path | None = None):
        if not is_module_spec(spec):
            raise ArchitectureError("a module architecture spec needs \"kind\": \"module\"")
        kwargs = dict(spec.get("kwargs") or {})
        if ("builtin" in spec) == ("factory" in spec):
            raise ArchitectureError("a module architecture spec names exactly one of 'builtin' and 'factory'")
        if "builtin" in spec:
            name = spec["builtin"]
            if name not in BUILTINS:
                raise ArchitectureError(f"unknown built-in architecture {name!r}; known: {', '.join(BUILTINS)}")
            make = BUILTINS[name]
            defaults = INPUTS[name](kwargs)
        else:
            if not allow_code:
                raise ArchitectureError(
                    f"this architecture is built by user code ({spec['factory']!r}); it runs only when you allow "
                    "it (wv.load_zoo(..., allow_code=True) or `wslviz app --allow-code`), and never for uploads")
            make = _load_factory(str(spec["factory"]), Path(base) if base is not None else None)
            defaults = {}
        shape = spec.get("input_shape", defaults.get("shape"))
        if shape is None:
            raise ArchitectureError("a module architecture needs 'input_shape' (one example input, no batch axis)")
        self.input_shape = tuple(int(s) for s in shape)
        self.input_dtype = str(spec.get("input_dtype", defaults.get("dtype", "float")))
        if self.input_dtype not in ("float", "int"):
            raise ArchitectureError(f"input_dtype must be 'float' or 'int', got {self.input_dtype!r}")
        self.input_high = int(spec.get("input_high", defaults.get("high", 0)))
        self.spec: dict[str, Any] = {"kind": KIND, **({"builtin": spec["builtin"]} if "builtin" in spec else
                                                      {"factory": str(spec["factory"])}),
                                     "kwargs": kwargs, "input_shape": list(self.input_shape)}
        if self.input_dtype == "int":
            self.spec.update(input_dtype="int", input_high=self.input_high)
        try:
            module = make(**kwargs)
        except (TypeError, ValueError) as e:
            raise ArchitectureError(f"cannot build {self.name}({kwargs}): {e}") from None
        if not isinstance(module, nn.Module):
            raise ArchitectureError(f"{self.name} returned {type(module).__name__}, not an nn.Module")
        self.module = module.eval()
        self.assumed: dict[str, str] = {}
        self.layout, self.layers, self.aliases = self._make_layout()
        self.n_params = sum(p.numel for p in self.layout)

    @classmethod
    def builtin(cls, name: str, input_shape: list[int] | tuple[int, ...] | None = None,
                **kwargs: Any) -> ModuleArchitecture:
        """A built-in of :data:`wslviz.core.builtins.BUILTINS` with keyword arguments ``kwargs``."""
        spec: dict[str, Any] = {"kind": KIND, "builtin": name, "kwargs": kwargs}
        if input_shape is not None:
            spec["input_shape"] = list(input_shape)
        return cls(spec)

    @classmethod
    def factory(cls, target: str, input_shape: list[int] | tuple[int, ...], **kwargs: Any) -> ModuleArchitecture:
        """The module ``target(**kwargs)`` (``"path/to/models.py:make_net"`` or ``"package.module:Class"``).

        Runs the user's code: only for code you trust (never for a path that came from an upload)."""
        return cls({"kind": KIND, "factory": target, "kwargs": kwargs, "input_shape": list(input_shape)},
                   allow_code=True)

    @property
    def name(self) -> str:
        return str(self.spec.get("builtin") or self.spec.get("factory"))

    # ---------------------------------------------------------------- layout
    def _make_layout(self) -> tuple[tuple[ParamInfo, ...], list[dict[str, str]], dict[str, str]]:
        """Layout of the state dict in order (tied tensors once: later names become aliases of the first)."""
        modules = dict(self.module.named_modules())
        buffers = {name for name, _ in self.module.named_buffers()}
        layout, layers, owners, aliases, seen = [], [], {}, {}, {}
        offset = 0
        for key, value in self.module.state_dict(keep_vars=True).items():
            if key.endswith(COUNTER_SUFFIX) or not torch.is_floating_point(value):
                continue
            ident = (value.data_ptr(), tuple(value.shape), value.stride()) if value.numel() else None
            if ident is not None and ident in seen:
                aliases[key] = seen[ident]
                continue
            owner, _, leaf = key.rpartition(".")
            if owner not in owners:
                owners[owner] = len(layers)
                layers.append({"type": _layer_type(modules.get(owner, self.module)), "name": owner})
            role = leaf if leaf in ("weight", "bias", "running_mean", "running_var") else "other"
            if key in buffers and role not in ("running_mean", "running_var"):
                role = "other"
            info = ParamInfo(key, tuple(value.shape), offset, owners[owner], role)
            layout.append(info)
            if ident is not None:
                seen[ident] = key
            offset += info.numel
        if not layout:
            raise ArchitectureError(f"{self.name} has no floating-point parameters or buffers")
        return tuple(layout), layers, aliases

    @property
    def weight_layers(self) -> list[int]:
        """Indices (into :attr:`layers`) of the linear and conv layers, in state-dict order."""
        return [i for i, layer in enumerate(self.layers) if layer["type"] in ("linear", "conv2d", "conv1d")]

    @property
    def has_batchnorm(self) -> bool:
        return any(layer["type"] == "batchnorm" for layer in self.layers)

    # ---------------------------------------------------------------- modules and vectors
    def build(self, weights: torch.Tensor | None = None) -> nn.Module:
        """A fresh copy of the module in eval mode; loads ``weights`` ([P]) when given."""
        model = copy.deepcopy(self.module).eval()
        if weights is not None:
            model.load_state_dict(self.unflatten(weights.detach().float()), strict=False)
        return model

    def flatten(self, state_dict: Mapping[str, torch.Tensor], by_order: bool = False) -> torch.Tensor:
        """A state dict of this module -> float32 ``[P]``; names the first missing, unexpected or misshapen key.

        Wrapper prefixes shared by every key (``module.``, ``model.``, ``_orig_mod.``) are stripped first;
        tied names may be present or not. ``by_order`` is accepted for the sequential interface and ignored:
        module state dicts are matched by name."""
        del by_order
        sd = {k: v for k, v in state_dict.items() if not k.endswith(COUNTER_SUFFIX)}
        for prefix in ("module.", "model.", "_orig_mod."):
            if sd and all(k.startswith(prefix) for k in sd) and not any(p.name.startswith(prefix) for p in self.layout):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
        return self.pack(sd, self.name, also=set(self.aliases))  # tied names (aliases) may be present or not

    def initial_weights(self) -> torch.Tensor:
        """The module's own initialisation as ``[P]`` (what the builder drew)."""
        return self.flatten(self.module.state_dict())

    def probe_inputs(self, n: int = 256, seed: int = 0) -> torch.Tensor:
        """Deterministic probe inputs ``[n, *input_shape]``: standard normal, or integers in
        ``[0, input_high)`` (as floats) for integer inputs."""
        gen = torch.Generator().manual_seed(seed)
        if self.input_dtype == "int":
            return torch.randint(0, max(self.input_high, 1), (n, *self.input_shape), generator=gen).float()
        return torch.randn(n, *self.input_shape, generator=gen)

    @cached_property
    def output_dim(self) -> int:
        with torch.no_grad():
            out = self.module(self.probe_inputs(2))
        return math.prod(out.shape[1:])

    @cached_property
    def perm_spec(self) -> PermutationSpec:
        """The permutation spec derived from the module's ``torch.fx`` graph (:func:`wslviz.core.fx_spec.derive`)."""
        from wslviz.core.fx_spec import derive

        return derive(self)

    # ---------------------------------------------------------------- descriptions
    @property
    def activations(self) -> list[str]:
        acts = {type(m).__name__.lower() for m in self.module.modules()
                if isinstance(m, nn.ReLU | nn.GELU | nn.Tanh | nn.LeakyReLU | nn.Sigmoid)}
        return sorted(acts)

    def describe(self) -> str:
        """A one-line summary such as ``"resnet20 (depth=8, width=0.25), 4,978 params"``."""
        kwargs = ", ".join(f"{k}={v}" for k, v in self.spec["kwargs"].items())
        head = f"{self.name} ({kwargs})" if kwargs else self.name
        return f"{head}, {self.n_params:,} params"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleArchitecture) and self.spec == other.spec

    def __hash__(self) -> int:
        return hash(self.to_json())
