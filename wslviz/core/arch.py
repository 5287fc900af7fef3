"""Architectures: a JSON-able spec <-> ``nn.Module``, and the flat parameter layout.

A spec is a plain dict::

    {"input_shape": [2],
     "layers": [{"type": "linear", "in_features": 2, "out_features": 16},
                {"type": "relu"},
                {"type": "linear", "in_features": 16, "out_features": 2}]}

Layer types: ``linear``, ``conv2d`` (``in_channels, out_channels, kernel_size, stride, padding``),
``maxpool2d`` / ``avgpool2d`` (``kernel_size, stride``), ``global_avg_pool``, ``flatten``,
``batchnorm`` (``num_features``; 1d or 2d by position), ``layernorm`` (``normalized_shape``, over the
last axis of flat features), ``dropout`` (``p``), and the activations ``relu``, ``leaky_relu``
(``negative_slope``), ``tanh``, ``gelu``, ``sigmoid``, ``sin`` (``w0``, SIREN's frequency).

The module built from a spec is an ``nn.Sequential`` whose children are named by layer index, so its
state dict keys are ``"{index}.weight"`` etc. A model's *flat vector* concatenates, in layer order,
every parameter and BatchNorm running statistic (the buffers are part of the function in eval mode);
``num_batches_tracked`` is not.

A spec may carry ``"assumed": {what: phrase}``: the choices :func:`infer_architecture` made for what a state
dict does not record (activation, input size, pooling); they are kept with the spec (``zoo.json``) so that
the app can show them as assumed. They do not change the function, so equality ignores them.

This is the *sequential* kind of the architecture protocol (:mod:`wslviz.core.kind`). It runs on the CPU through
its own batched kernels (:mod:`wslviz.core.batched`, :mod:`wslviz.core.seq_eval`); on another device, and for
BatchNorm statistics, through the ``nn.Sequential`` it builds, as the module kind runs (:mod:`wslviz.core.module_eval`).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import torch
from torch import nn

from wslviz.core import batched, module_eval, seq_eval
from wslviz.core.device import Device, on_cpu
from wslviz.core.fx_graph import trace
from wslviz.core.kind import ArchitectureBase, BatchNormFold, Progress, RepairLayer
from wslviz.core.layout import (
    ACTIVATIONS,
    LAYER_TYPES,
    PARAMETRIC,
    SHAPE_ONLY,
    ArchitectureError,
    ParamInfo,
    conv_out,
)
from wslviz.core.permutation import PermutationSpec, sequential_perm_spec
from wslviz.core.stacks import find_stacks, layer_keys, stack_spec
from wslviz.core.tasks import Task

__all__ = ["ACTIVATIONS", "LAYER_TYPES", "PARAMETRIC", "SHAPE_ONLY", "Architecture", "ArchitectureError",
           "ParamInfo", "infer_architecture", "mlp_spec"]

class Sin(nn.Module):
    """``sin(w0 * x)``, the SIREN activation."""

    def __init__(self, w0: float = 1.0):
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


class GlobalAvgPool(nn.Module):
    """Mean over the two spatial axes: ``[N, C, H, W] -> [N, C]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


def _pair(v: Any) -> int:
    if isinstance(v, list | tuple):
        if len(set(v)) != 1:
            raise ArchitectureError(f"only square kernels/strides are supported, got {v}")
        v = v[0]
    return int(v)


class Architecture(ArchitectureBase):
    """A sequential network described by a JSON-able spec, with its flat parameter layout.

    Attributes: ``spec`` (dict), ``layers`` (list of layer dicts, defaults filled in),
    ``input_shape`` (tuple), ``layout`` (tuple of :class:`ParamInfo`), ``n_params`` (int),
    ``shapes`` (the activation shape after each layer, without the batch axis), ``assumed`` (what was
    chosen for what a state dict does not record, ``{what: phrase}``), ``source_keys`` (the state-dict keys
    the layout's tensors were inferred from, one per layout entry, or None).
    """

    kind = "sequential"
    has_forward = True

    def __init__(self, spec: Mapping[str, Any], allow_code: bool = False, base: Any = None):
        """``allow_code`` and ``base`` are the protocol's constructor options; a sequential spec runs no code."""
        if not isinstance(spec, Mapping) or "layers" not in spec or "input_shape" not in spec:
            raise ArchitectureError("an architecture spec needs 'input_shape' and 'layers'")
        self.input_shape = tuple(int(s) for s in spec["input_shape"])
        self.layers = [self._normalise(i, dict(layer)) for i, layer in enumerate(spec["layers"])]
        assumed = spec.get("assumed") or {}
        if not isinstance(assumed, Mapping) or not all(isinstance(v, str) for v in assumed.values()):
            raise ArchitectureError("'assumed' must map what was assumed to a phrase")
        self.assumed = {str(k): v for k, v in assumed.items()}
        self.spec = {"input_shape": list(self.input_shape), "layers": copy.deepcopy(self.layers)}
        if self.assumed:
            self.spec["assumed"] = dict(self.assumed)
        self.shapes = self._infer_shapes()
        self.layout = self._make_layout()
        self.n_params = sum(p.numel for p in self.layout)
        self.source_keys: tuple[str, ...] | None = None

    # ---------------------------------------------------------------- construction
    @staticmethod
    def _normalise(i: int, layer: dict[str, Any]) -> dict[str, Any]:
        kind = layer.get("type")
        if kind not in LAYER_TYPES:
            raise ArchitectureError(f"layer {i}: unknown type {kind!r}; known: {', '.join(LAYER_TYPES)}")
        if kind == "linear":
            layer = {"type": kind, "in_features": int(layer["in_features"]),
                     "out_features": int(layer["out_features"]), "bias": bool(layer.get("bias", True))}
        elif kind == "conv2d":
            layer = {"type": kind, "in_channels": int(layer["in_channels"]),
                     "out_channels": int(layer["out_channels"]), "kernel_size": _pair(layer["kernel_size"]),
                     "stride": _pair(layer.get("stride", 1)), "padding": _pair(layer.get("padding", 0)),
                     "bias": bool(layer.get("bias", True))}
        elif kind in ("maxpool2d", "avgpool2d"):
            k = _pair(layer["kernel_size"])
            layer = {"type": kind, "kernel_size": k, "stride": _pair(layer.get("stride") or k)}
        elif kind == "batchnorm":
            layer = {"type": kind, "num_features": int(layer["num_features"]), "eps": float(layer.get("eps", 1e-5))}
        elif kind == "layernorm":
            layer = {"type": kind, "normalized_shape": int(layer["normalized_shape"]),
                     "eps": float(layer.get("eps", 1e-5))}
        elif kind == "dropout":
            layer = {"type": kind, "p": float(layer.get("p", 0.0))}
        elif kind == "leaky_relu":
            layer = {"type": kind, "negative_slope": float(layer.get("negative_slope", 0.01))}
        elif kind == "sin":
            layer = {"type": kind, "w0": float(layer.get("w0", 1.0))}
        else:
            layer = {"type": kind}
        return layer

    def _infer_shapes(self) -> list[tuple[int, ...]]:
        shape = self.input_shape
        shapes = []
        for i, layer in enumerate(self.layers):
            kind = layer["type"]
            where = f"layer {i} ({kind}) on input of shape {list(shape)}"
            if kind == "linear":
                if len(shape) != 1 or shape[0] != layer["in_features"]:
                    raise ArchitectureError(f"{where}: expects {layer['in_features']} flat features")
                shape = (layer["out_features"],)
            elif kind == "conv2d":
                if len(shape) != 3 or shape[0] != layer["in_channels"]:
                    raise ArchitectureError(f"{where}: expects [{layer['in_channels']}, H, W]")
                k, s, p = layer["kernel_size"], layer["stride"], layer["padding"]
                shape = (layer["out_channels"], conv_out(shape[1], k, s, p), conv_out(shape[2], k, s, p))
                if min(shape[1:]) < 1:
                    raise ArchitectureError(f"{where}: the image is too small for this kernel")
            elif kind in ("maxpool2d", "avgpool2d"):
                if len(shape) != 3:
                    raise ArchitectureError(f"{where}: pooling needs [C, H, W]")
                k, s = layer["kernel_size"], layer["stride"]
                shape = (shape[0], conv_out(shape[1], k, s, 0), conv_out(shape[2], k, s, 0))
            elif kind == "global_avg_pool":
                if len(shape) != 3:
                    raise ArchitectureError(f"{where}: global average pooling needs [C, H, W]")
                shape = (shape[0],)
            elif kind == "flatten":
                shape = (math.prod(shape),)
            elif kind == "batchnorm":
                if shape[0] != layer["num_features"] or len(shape) not in (1, 3):
                    raise ArchitectureError(f"{where}: expects {layer['num_features']} channels")
            elif kind == "layernorm":
                if len(shape) != 1 or shape[0] != layer["normalized_shape"]:
                    raise ArchitectureError(f"{where}: layernorm is supported over flat features only")
            shapes.append(shape)
        return shapes

    def _make_layout(self) -> tuple[ParamInfo, ...]:
        layout, offset = [], 0
        for i, layer in enumerate(self.layers):
            kind = layer["type"]
            entries: list[tuple[str, tuple[int, ...]]] = []
            if kind == "linear":
                entries.append(("weight", (layer["out_features"], layer["in_features"])))
                if layer["bias"]:
                    entries.append(("bias", (layer["out_features"],)))
            elif kind == "conv2d":
                k = layer["kernel_size"]
                entries.append(("weight", (layer["out_channels"], layer["in_channels"], k, k)))
                if layer["bias"]:
                    entries.append(("bias", (layer["out_channels"],)))
            elif kind == "batchnorm":
                c = (layer["num_features"],)
                entries += [("weight", c), ("bias", c), ("running_mean", c), ("running_var", c)]
            elif kind == "layernorm":
                c = (layer["normalized_shape"],)
                entries += [("weight", c), ("bias", c)]
            for role, shape in entries:
                info = ParamInfo(f"{i}.{role}", shape, offset, i, role)
                layout.append(info)
                offset += info.numel
        return tuple(layout)

    # ---------------------------------------------------------------- modules
    def build(self, weights: torch.Tensor | None = None) -> nn.Sequential:
        """A fresh ``nn.Sequential`` in eval mode; loads ``weights`` ([P]) when given."""
        modules: list[nn.Module] = []
        for i, layer in enumerate(self.layers):
            kind = layer["type"]
            if kind == "linear":
                m: nn.Module = nn.Linear(layer["in_features"], layer["out_features"], bias=layer["bias"])
            elif kind == "conv2d":
                m = nn.Conv2d(layer["in_channels"], layer["out_channels"], layer["kernel_size"],
                              stride=layer["stride"], padding=layer["padding"], bias=layer["bias"])
            elif kind == "maxpool2d":
                m = nn.MaxPool2d(layer["kernel_size"], layer["stride"])
            elif kind == "avgpool2d":
                m = nn.AvgPool2d(layer["kernel_size"], layer["stride"])
            elif kind == "global_avg_pool":
                m = GlobalAvgPool()
            elif kind == "flatten":
                m = nn.Flatten()
            elif kind == "batchnorm":
                bn = nn.BatchNorm2d if len(self.shapes[i]) == 3 else nn.BatchNorm1d
                m = bn(layer["num_features"], eps=layer["eps"])
            elif kind == "layernorm":
                m = nn.LayerNorm(layer["normalized_shape"], eps=layer["eps"])
            elif kind == "dropout":
                m = nn.Dropout(layer["p"])
            elif kind == "relu":
                m = nn.ReLU()
            elif kind == "leaky_relu":
                m = nn.LeakyReLU(layer["negative_slope"])
            elif kind == "tanh":
                m = nn.Tanh()
            elif kind == "gelu":
                m = nn.GELU()
            elif kind == "sigmoid":
                m = nn.Sigmoid()
            else:
                m = Sin(layer["w0"])
            modules.append(m)
        model = nn.Sequential(*modules).eval()
        if weights is not None:
            model.load_state_dict(self.unflatten(weights), strict=False)
        return model

    # ---------------------------------------------------------------- flat vectors
    def flatten(self, state_dict: Mapping[str, torch.Tensor], by_order: bool = False,
                out: torch.Tensor | None = None) -> torch.Tensor:
        """A state dict of this architecture -> float32 ``[P]`` (into ``out`` when given); names the first missing
        or misshapen key.

        ``by_order=True`` accepts foreign key names (``net.0.weight``, ``fc1.bias``, ``module_list.3.bias``):
        keys are matched to the layout in layer order, as :func:`infer_architecture` chains them.
        """
        if by_order:
            state_dict = _rename_by_order(self, state_dict)
        return self.pack({k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")},
                         "this architecture", out=out)

    # ---------------------------------------------------------------- descriptions
    @property
    def output_dim(self) -> int:
        return math.prod(self.shapes[-1])

    @property
    def weight_layers(self) -> list[int]:
        """Indices of the linear/conv layers, in order."""
        return [i for i, layer in enumerate(self.layers) if layer["type"] in ("linear", "conv2d")]

    @property
    def activations(self) -> list[str]:
        return sorted({layer["type"] for layer in self.layers if layer["type"] in ACTIVATIONS})

    @cached_property
    def perm_spec(self) -> PermutationSpec:
        """The permutation spec (see :mod:`wslviz.core.permutation`): which tensor axes share a permutation."""
        return sequential_perm_spec(self)

    def describe(self) -> str:
        """A one-line summary such as ``"MLP 2-16-16-2 (relu), 386 params"``."""
        acts = "/".join(self.activations) or "linear"
        if any(layer["type"] == "conv2d" for layer in self.layers):
            chans = [str(self.layers[i].get("out_channels", self.layers[i].get("out_features")))
                     for i in self.weight_layers]
            body = f"CNN {'x'.join(map(str, self.input_shape))} -> " + "-".join(chans)
        else:
            widths = [str(self.input_shape[0])] + [str(self.layers[i]["out_features"]) for i in self.weight_layers]
            body = "MLP " + "-".join(widths)
        return f"{body} ({acts}), {self.n_params:,} params"

    # ---------------------------------------------------------------- running (the protocol)
    @property
    def plain_stack(self) -> bool:
        return True

    def forward(self, weights: torch.Tensor, x: torch.Tensor, capture: set | None = None, train: bool = False,
                device: Device = None, dropout: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """See :meth:`ArchitectureBase.forward`; ``capture`` names layer indices. ``dropout`` [B] gives each
        model its own dropout rate in train mode (batched training)."""
        if on_cpu(device):
            return batched.forward(self, weights, x, train=train, dropout=dropout, capture=frozenset(capture or ()))
        return self._as_module.forward(weights, x, capture, train, device)

    def model_outputs(self, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
                      progress: Progress = None, device: Device = None) -> torch.Tensor:
        if on_cpu(device):
            return seq_eval.model_outputs(self, weights, x, chunk_size, progress)
        return self._as_module.model_outputs(weights, x, chunk_size, progress, device)

    def evaluate(self, task: Task, weights: torch.Tensor, split: str = "test", chunk_size: int | None = None,
                 progress: Progress = None, device: Device = None) -> dict[str, torch.Tensor]:
        if on_cpu(device):
            return seq_eval.evaluate(self, task, weights, split, chunk_size, progress)
        return self._as_module.evaluate(task, weights, split, chunk_size, progress, device)

    def evaluate_affine(self, task: Task, origin: torch.Tensor, directions: torch.Tensor, coords: torch.Tensor,
                        split: str = "test", chunk_size: int | None = None, progress: Progress = None,
                        device: Device = None) -> dict[str, torch.Tensor]:
        if on_cpu(device):
            return seq_eval.evaluate_affine(self, task, origin, directions, coords, split, chunk_size, progress)
        return self._as_module.evaluate_affine(task, origin, directions, coords, split, chunk_size, progress, device)

    def batchnorm_statistics(self, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
                             device: Device = None) -> torch.Tensor:
        return self._as_module.batchnorm_statistics(weights, x, chunk_size, device)

    def repair_layers(self) -> list[RepairLayer]:
        names = {p.name for p in self.layout}
        if self.has_batchnorm:
            chosen = [i for i, layer in enumerate(self.layers) if layer["type"] == "batchnorm"]
        else:
            chosen = self.weight_layers[:-1]  # the last layer's outputs are the network's
        return [RepairLayer(i, f"{i}.weight", f"{i}.bias" if f"{i}.bias" in names else None) for i in chosen]

    def batchnorm_folds(self) -> list[BatchNormFold]:
        names = {p.name for p in self.layout}
        return [BatchNormFold(f"{i - 1}.weight", f"{i - 1}.bias" if f"{i - 1}.bias" in names else None,
                              f"{i}.weight", f"{i}.bias", f"{i}.running_mean", f"{i}.running_var", layer["eps"])
                for i, layer in enumerate(self.layers)
                if layer["type"] == "batchnorm" and i > 0 and self.layers[i - 1]["type"] in ("linear", "conv2d")]

    @cached_property
    def _as_module(self) -> _SequentialModule:
        return _SequentialModule(self)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Architecture) and self.input_shape == other.input_shape
                and self.layers == other.layers)

    def __hash__(self) -> int:
        return hash(json.dumps([self.input_shape, self.layers], sort_keys=True))


class _SequentialModule(ArchitectureBase):
    """A sequential network as the ``nn.Sequential`` it builds, run like a module architecture (``vmap`` of
    ``functional_call``): the sequential kind's path on devices other than the CPU, where its hand-written CPU
    kernels do not apply, and for BatchNorm statistics. Capture keys stay layer indices."""

    kind = "sequential"

    def __init__(self, arch: Architecture):
        self.arch, self.module = arch, arch.build()
        self.layout, self.n_params, self.layers = arch.layout, arch.n_params, arch.layers
        self.input_shape, self.spec, self.assumed = arch.input_shape, arch.spec, arch.assumed

    def describe(self) -> str:
        return self.arch.describe()

    @property
    def output_dim(self) -> int:
        return self.arch.output_dim

    def build(self, weights: torch.Tensor | None = None) -> nn.Module:
        return self.arch.build(weights)

    def chunk_size(self, n_inputs: int, n_models: int) -> int:
        return module_eval.default_chunk_size(self, n_inputs, n_models)

    def forward(self, weights: torch.Tensor, x: torch.Tensor, capture: set | None = None, train: bool = False,
                device: Device = None) -> tuple[torch.Tensor, dict]:
        nodes = {}
        if capture:  # layer i is the traced node of child module "i"; its channels are axis 1 of [N, C, ...]
            by_target = {n.target: n.name for n in trace(self).graph.nodes if n.op == "call_module"}
            nodes = {i: (by_target[str(i)], 1) for i in capture}
        out, found = module_eval.forward(self, weights, x, set(nodes.values()), train, device)
        return out, {i: found[key] for i, key in nodes.items()}

    def batchnorm_statistics(self, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
                             device: Device = None) -> torch.Tensor:
        return module_eval.batchnorm_statistics(self, weights, x, chunk_size, device)


def _rename_by_order(arch: Architecture, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    shapes = {k: tuple(torch.as_tensor(v).shape) for k, v in state_dict.items()
              if not k.endswith("num_batches_tracked") and torch.as_tensor(v).is_floating_point()}
    keys = layer_keys(shapes)
    if len(keys) != len(arch.layout):
        raise ArchitectureError(f"state dict has {len(keys)} tensors, the architecture {len(arch.layout)}")
    return {p.name: state_dict[k] for p, k in zip(arch.layout, keys, strict=True)}


def mlp_spec(widths: list[int], activation: str = "relu", **act_kwargs: Any) -> dict[str, Any]:
    """Spec of an MLP with the given layer widths, e.g. ``[2, 16, 16, 2]``."""
    layers: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append({"type": "linear", "in_features": a, "out_features": b})
        if i < len(widths) - 2:
            layers.append({"type": activation, **act_kwargs})
    return {"input_shape": [widths[0]], "layers": layers}


def infer_architecture(
    state_dict: Mapping[str, torch.Tensor],
    activation: str | None = None,
    input_shape: tuple[int, ...] | list[int] | None = None,
    stack: int | str | None = None,
) -> Architecture:
    """Infer a sequential MLP/CNN from the key names and shapes of a state dict of any key naming.

    Keys are grouped into layers by prefix and chained by shapes (see :mod:`wslviz.core.stacks`):
    ``l1.weight``, ``conv1.weight``, ``features.3.weight``, ``net.0.weight``, ``module.fc2.bias`` and
    ``0.weight`` alike; bias-free layers, BatchNorm and LayerNorm are recognised by their tensors.
    ``num_batches_tracked`` and non-floating tensors are not weights. What a state dict does not record is
    chosen and listed in ``arch.assumed``: ``activation`` between layers (relu when None), a CNN's
    ``input_shape`` ``[C, H, W]`` and the padding/pooling that make the flatten into the first linear layer
    fit. ``stack`` picks one of several independent stacks (an actor and a critic) by index or name; the
    result's ``source_keys`` are the keys it was built from. Raises :class:`ArchitectureError` saying why
    the state dict is not one sequential stack.
    """
    shapes = {k: tuple(torch.as_tensor(v).shape) for k, v in state_dict.items()
              if not k.endswith("num_batches_tracked") and torch.as_tensor(v).is_floating_point()}
    if not shapes:
        raise ArchitectureError("cannot infer an architecture from an empty state dict")
    chosen = find_stacks(shapes).pick(stack)
    try:
        arch = Architecture(stack_spec(chosen, activation, input_shape))
    except ArchitectureError as e:
        raise ArchitectureError(f"the stack {chosen.name} does not make a network: {e}") from None
    arch.source_keys = tuple(chosen.keys)
    return arch
