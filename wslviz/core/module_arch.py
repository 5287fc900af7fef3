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
that probe inputs are drawn from ``[0, input_high)``. ``order`` (a list of every state-dict name) lays the
tensors out in that order instead of the state dict's: a zoo served from its files' bytes keeps the files' order
(:mod:`wslviz.formats.served`); names, shapes and everything computed from them are the same.

**A factory runs the user's own Python code** (importing the file or package and calling the function or
class). It is built only when the caller says so (``allow_code=True``: :func:`wv.load_zoo` passes it only when
asked, and never for uploaded archives or in the browser); a spec with a factory read from a ``zoo.json``
without that permission raises :class:`ArchitectureError` saying why.

A module instance a user already holds becomes an architecture without a factory file:
:meth:`ModuleArchitecture.from_module` (``wv.from_module(net, input_shape=[3, 32, 32])``). Its spec records the
class for the record (``{"kind": "module", "instance": "mypkg.MyNet", ...}``); such a spec cannot be rebuilt
from JSON alone, so reopening a zoo saved with it asks for the instance again.

It implements the architecture protocol (:class:`~wslviz.core.kind.ArchitectureBase`): ``layers`` has one
``{"type", "name"}`` entry per module owning tensors (which ``ParamInfo.layer`` indexes); the permutation spec
is derived from the ``torch.fx`` graph (:mod:`wslviz.core.fx_spec`), the forward is ``vmap`` of
``functional_call`` (:mod:`wslviz.core.module_eval`), REPAIR's layers and BatchNorm folds are read off the traced
graph (:mod:`wslviz.core.fx_graph`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import math
import sys
import weakref
from collections.abc import Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wslviz.core import fx_graph, module_eval
from wslviz.core.builtins import BUILTINS, INPUTS
from wslviz.core.device import Device
from wslviz.core.fx_spec import derive
from wslviz.core.kind import ArchitectureBase, BatchNormFold, RepairLayer
from wslviz.core.layout import ArchitectureError, ParamInfo, in_order
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


_TEMPLATES: weakref.WeakValueDictionary[str, nn.Module] = weakref.WeakValueDictionary()


def _template(name: str, **kwargs: Any) -> nn.Module:
    """The built-in ``name(**kwargs)``, its initialisation drawn with seed 0 (the caller's random state untouched):
    one module shared by the architectures of one built-in alive at once, which never change it (forwards run on
    copies). Drawing a ResNet-18's 11.7M initial values took most of the time of opening a folder of them, and an
    architecture is built again for each new order of its tensors (:mod:`wslviz.formats.served`)."""
    key = json.dumps([name, kwargs], sort_keys=True, default=str)
    module = _TEMPLATES.get(key)
    if module is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = BUILTINS[name](**kwargs)
        _TEMPLATES[key] = module
    return module


class ModuleArchitecture(ArchitectureBase):
    """An ``nn.Module`` architecture with the flat layout of its state dict (see the module docstring).

    Build one with :meth:`builtin` (``ModuleArchitecture.builtin("resnet20", depth=8, width=0.25,
    in_channels=1, input_shape=[1, 8, 8])``), :meth:`factory` (user code; ``allow_code`` is implied by
    calling it) or from a spec dict.
    """

    kind = KIND
    has_forward = True

    def __init__(self, spec: Mapping[str, Any], allow_code: bool = False, base: str | Path | None = None,
                 module: nn.Module | None = None):
        if not is_module_spec(spec):
            raise ArchitectureError("a module architecture spec needs \"kind\": \"module\"")
        kwargs = dict(spec.get("kwargs") or {})
        if "instance" in spec:
            if module is None:
                raise ArchitectureError(
                    f"this architecture was made in Python from a module instance ({spec['instance']}), which a "
                    "spec cannot rebuild: pass the instance again (wv.load_zoo(path, arch=wv.from_module(net, "
                    "input_shape=...)))")
            make, defaults = (lambda: module), {}
        elif ("builtin" in spec) == ("factory" in spec):
            raise ArchitectureError("a module architecture spec names exactly one of 'builtin' and 'factory'")
        elif "builtin" in spec:
            name = spec["builtin"]
            if name not in BUILTINS:
                raise ArchitectureError(f"unknown built-in architecture {name!r}; known: {', '.join(BUILTINS)}")
            make = partial(_template, name)
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
        source = next(k for k in ("instance", "builtin", "factory") if k in spec)
        self.spec: dict[str, Any] = {"kind": KIND, source: str(spec[source]), "kwargs": kwargs,
                                     "input_shape": list(self.input_shape)}
        if self.input_dtype == "int":
            self.spec.update(input_dtype="int", input_high=self.input_high)
        try:
            module = make(**kwargs)
        except (TypeError, ValueError) as e:
            raise ArchitectureError(f"cannot build {self.name}({kwargs}): {e}") from None
        if not isinstance(module, nn.Module):
            raise ArchitectureError(f"{self.name} returned {type(module).__name__}, not an nn.Module")
        self.module = module.eval()
        self.assumed: dict[str, str] = {str(k): str(v) for k, v in (spec.get("assumed") or {}).items()}
        if self.assumed:  # what was chosen for what the checkpoints do not record (a recognised family's input size)
            self.spec["assumed"] = dict(self.assumed)
        self.layout, self.layers, self.aliases = self._make_layout()
        if spec.get("order"):  # the tensors in another order than the state dict's (files served in place)
            self.layout = in_order(self.layout, [str(n) for n in spec["order"]])
            self.spec["order"] = [p.name for p in self.layout]
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

    @classmethod
    def from_module(cls, net: nn.Module, input_shape: list[int] | tuple[int, ...], input_dtype: str = "float",
                    input_high: int = 0) -> ModuleArchitecture:
        """The architecture of a module instance ``net`` (not copied: its weights at this moment are the builder's
        initialisation, :meth:`initial_weights`), taking inputs of ``input_shape`` (one example, no batch axis;
        ``input_dtype="int"`` with ``input_high`` for token ids)."""
        if not isinstance(net, nn.Module):
            raise ArchitectureError(f"from_module takes an nn.Module instance, got {type(net).__name__}")
        spec: dict[str, Any] = {"kind": KIND, "instance": f"{type(net).__module__}.{type(net).__qualname__}",
                                "input_shape": list(input_shape), "input_dtype": input_dtype}
        if input_dtype == "int":
            spec["input_high"] = int(input_high)
        return cls(spec, module=net)

    @property
    def name(self) -> str:
        return str(self.spec.get("builtin") or self.spec.get("factory") or self.spec.get("instance"))

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

    # ---------------------------------------------------------------- modules and vectors
    def build(self, weights: torch.Tensor | None = None) -> nn.Module:
        """A fresh copy of the module in eval mode; loads ``weights`` ([P]) when given."""
        model = copy.deepcopy(self.module).eval()
        if weights is not None:
            model.load_state_dict(self.unflatten(weights.detach().float()), strict=False)
        return model

    def flatten(self, state_dict: Mapping[str, torch.Tensor], by_order: bool = False,
                out: torch.Tensor | None = None) -> torch.Tensor:
        """A state dict of this module -> float32 ``[P]`` (into ``out`` when given); names the first missing,
        unexpected or misshapen key.

        Wrapper prefixes shared by every key (``module.``, ``model.``, ``_orig_mod.``) are stripped first;
        tied names may be present or not. ``by_order`` is accepted for the sequential interface and ignored:
        module state dicts are matched by name."""
        del by_order
        sd = {k: v for k, v in state_dict.items() if not k.endswith(COUNTER_SUFFIX)}
        for prefix in ("module.", "model.", "_orig_mod."):
            if sd and all(k.startswith(prefix) for k in sd) and not any(p.name.startswith(prefix) for p in self.layout):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
        return self.pack(sd, self.name, also=set(self.aliases), out=out)  # tied names (aliases) may be present or not

    def initial_weights(self) -> torch.Tensor:
        """The module's own initialisation as ``[P]`` (what the builder drew; a built-in's, with seed 0)."""
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
        return derive(self)

    # ---------------------------------------------------------------- running (the protocol)
    def forward(self, weights: torch.Tensor, x: torch.Tensor, capture: set | None = None, train: bool = False,
                device: Device = None) -> tuple[torch.Tensor, dict]:
        """See :meth:`ArchitectureBase.forward`; ``capture`` names ``(graph node, axis)`` pairs."""
        return module_eval.forward(self, weights, x, capture, train, device)

    def chunk_size(self, n_inputs: int, n_models: int) -> int:
        return module_eval.default_chunk_size(self, n_inputs, n_models)

    def batchnorm_statistics(self, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
                             device: Device = None) -> torch.Tensor:
        return module_eval.batchnorm_statistics(self, weights, x, chunk_size, device)

    def repair_layers(self) -> list[RepairLayer]:
        return fx_graph.repair_layers(self)

    def batchnorm_folds(self) -> list[BatchNormFold]:
        return fx_graph.batchnorm_folds(self)

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
