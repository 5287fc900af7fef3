"""The permutation spec: which tensor axes of an architecture share one permutation of hidden units.

Hidden units (or channels) of a network can be reordered without changing its function when the next
layer's inputs are reordered the same way (Hecht-Nielsen 1990; Ainsworth et al., "Git Re-Basin", ICLR
2023, whose ``weight_matching.py`` keeps the same information as a ``PermutationSpec``). A spec is
structural knowledge of the architecture, so it lives here beside it; :mod:`wslviz.understand.symmetry`
draws, applies and canonicalises the group elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from wslviz.core.layout import ACTIVATIONS, ArchitectureError

KINDS = ("permutation", "scale", "sign")
PASSES: dict[str, set[str]] = {
    "relu": {"scale"}, "leaky_relu": {"scale"}, "maxpool2d": {"scale"}, "max_pool2d": {"scale"},
    "tanh": {"sign"}, "sin": {"sign"}, "neg": {"sign"},
    "avgpool2d": {"scale", "sign"}, "avg_pool2d": {"scale", "sign"}, "adaptive_avg_pool2d": {"scale", "sign"},
    "global_avg_pool": {"scale", "sign"}, "flatten": {"scale", "sign"}, "dropout": {"scale", "sign"},
    "identity": {"scale", "sign"}, "contiguous": {"scale", "sign"}, "clone": {"scale", "sign"},
    "detach": {"scale", "sign"}, "float": {"scale", "sign"}, "to": {"scale", "sign"},
    "gelu": set(), "sigmoid": set(), "silu": set(), "elu": set(), "softplus": set(), "exp": set(), "log": set(),
    "relu6": set(), "hardtanh": set(), "abs": set(), "sqrt": set(), "rsqrt": set(), "square": set(), "cos": set(),
    "long": set(), "int": set(), "bool": set(), "type_as": set(), "erf": set(),
}
"""Elementwise layers and ops (sequential layer types and traced op names alike), and the unit transforms that
pass through them unchanged: ``relu(s z) = s relu(z)`` for ``s > 0``, ``tanh(-z) = -tanh(z)``; pooling over space
acts per channel (max commutes with ``s > 0`` only). The one table both spec derivations read."""
_NONLINEAR = set(ACTIVATIONS) | {"maxpool2d"}


class SymmetryError(ArchitectureError):
    """An architecture, weight tensor or group element the symmetry code cannot handle."""


@dataclass(frozen=True)
class AxisRef:
    """One tensor axis moved by a permutation group.

    ``name``: parameter name (``"3.weight"``); ``axis``: the tensor axis indexed by the group's units;
    ``block``: entries per unit along that axis (``H*W`` where a conv channel is flattened into a
    linear layer's input, else 1); ``power``: how a unit scale ``s`` acts on this tensor (``+1``
    multiply, ``-1`` divide, ``0`` untouched); ``incoming``: whether the tensor belongs to the unit's
    own computation (its weights, bias, normalisation parameters) rather than to the next layer.
    ``start`` and ``length``: the range of axis entries the units occupy when they share the axis with
    other units (a ``cat`` of two groups, a fused query/key/value projection); ``length`` 0 means from
    ``start`` to the end of the axis.
    """

    name: str
    axis: int
    block: int = 1
    power: int = 0
    incoming: bool = True
    start: int = 0
    length: int = 0


@dataclass(frozen=True)
class PermGroup:
    """The hidden units (or channels) output by one linear/conv layer, and every axis they move.

    ``layer``: index of the weight layer whose outputs these are; ``size``: number of units;
    ``refs``: the axes; ``kinds``: the symmetries valid here (always ``"permutation"``, plus
    ``"scale"`` and/or ``"sign"`` when the layers up to the next affine map allow them);
    ``activation``: the nonlinearity acting on these units (None for none); ``capture``: the layer
    index whose output holds these units' activations (for activation matching; a module architecture
    names the traced node and the axis that holds the units, ``(node, axis)``).

    ``heads`` > 1: the units form ``heads`` equal consecutive blocks (attention heads) and only
    permutations that move whole blocks and reorder units inside each block are symmetries; groups with
    the same non-empty ``tie`` move their blocks by one shared permutation (the heads of the
    query/key projections and of the value/output projections).
    """

    name: str
    layer: int
    size: int
    refs: tuple[AxisRef, ...]
    kinds: tuple[str, ...]
    activation: str | None
    capture: int | tuple[str, int]
    heads: int = 1
    tie: str = ""

    @property
    def head_size(self) -> int:
        return self.size // self.heads


@dataclass(frozen=True)
class FixedAxis:
    """A tensor axis no permutation moves, and why (``reason``: the network's input or output, or an
    operation whose effect on units the graph tracer cannot follow)."""

    name: str
    axis: int
    reason: str


@dataclass(frozen=True)
class PermutationSpec:
    """All permutation groups of an architecture, in layer order."""

    groups: tuple[PermGroup, ...]
    n_params: int
    fixed: tuple[FixedAxis, ...] = ()
    """Axes that stay fixed and why (derived specs of module architectures list them)."""

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def tie_classes(self) -> list[list[int]]:
        """Indices of the groups that must be solved together: groups sharing a ``tie``, others alone."""
        classes: dict[str, list[int]] = {}
        out: list[list[int]] = []
        for i, g in enumerate(self.groups):
            if not g.tie:
                out.append([i])
            elif g.tie in classes:
                classes[g.tie].append(i)
            else:
                classes[g.tie] = [i]
                out.append(classes[g.tie])
        return out

    @property
    def log10_size(self) -> float:
        """log10 of the number of permutation symmetries: ``n!`` per plain group; ``heads! * (n/heads)!^heads``
        per block-structured group, the ``heads!`` counted once per tie."""
        total, ties = 0.0, set()
        for g in self.groups:
            if g.heads == 1:
                total += math.lgamma(g.size + 1)
                continue
            total += g.heads * math.lgamma(g.head_size + 1)
            if not g.tie or g.tie not in ties:
                total += math.lgamma(g.heads + 1)
                ties.add(g.tie)
        return total / math.log(10)


def sequential_perm_spec(arch: Any) -> PermutationSpec:
    """Derive the permutation groups of a sequential MLP/CNN.

    One group per linear/conv layer except the last (whose outputs are the network's outputs). A group
    moves the layer's weight rows and bias, the per-channel parameters and running statistics of the
    BatchNorm/LayerNorm layers before the next weight layer, and the next weight layer's input axis;
    across a ``flatten`` after a conv, one channel owns a block of ``H*W`` consecutive inputs of the
    next linear layer. Scale and sign symmetries act on the last affine map before the nonlinearity
    (the weight layer, or a BatchNorm/LayerNorm after it) and are undone by the next affine map (the
    next weight layer, or a BatchNorm after the nonlinearity, through its running mean and weight).
    Raises :class:`SymmetryError` for a layer it cannot place.
    """
    weight_layers = arch.weight_layers
    groups = []
    for k, nxt in zip(weight_layers[:-1], weight_layers[1:], strict=True):
        groups.append(_group(arch, k, nxt))
    return PermutationSpec(tuple(groups), arch.n_params)


def _params_of(arch: Any, layer: int) -> dict[str, str]:
    return {p.role: p.name for p in arch.layout if p.layer == layer}


def _group(arch: Any, k: int, nxt: int) -> PermGroup:
    layer = arch.layers[k]
    n = layer.get("out_features", layer.get("out_channels"))
    # the affine map that produces the nonlinearity's input, and the one that undoes a unit scale
    producer, consumer, activation, capture = k, nxt, None, k
    kinds = {"scale", "sign"}
    block, seen_nonlinear = 1, False
    for i in range(k + 1, nxt):
        kind = arch.layers[i]["type"]
        if kind in ("batchnorm", "layernorm"):
            width = arch.layers[i].get("num_features", arch.layers[i].get("normalized_shape"))
            if width != n:
                raise SymmetryError(f"layer {i} ({kind}) normalises {width} features, layer {k} gives {n} units")
            if not seen_nonlinear:
                producer = i
            elif consumer == nxt:
                consumer = i
                if kind == "layernorm":  # LayerNorm mixes units: no per-unit scale passes it
                    kinds.clear()
        elif kind in PASSES:
            if kind == "flatten":
                before = arch.shapes[i - 1]
                block = math.prod(before[1:]) if len(before) == 3 else 1
            if consumer == nxt:
                kinds &= PASSES[kind]
            seen_nonlinear = seen_nonlinear or kind in _NONLINEAR
            if kind in ACTIVATIONS and activation is None:
                activation, capture = kind, i
        else:
            raise SymmetryError(f"layer {i} ({kind}) between weight layers {k} and {nxt} is not supported")
    capture = capture if activation else producer
    refs: list[AxisRef] = []
    for i in range(k, nxt):
        kind = arch.layers[i]["type"]
        if kind not in ("linear", "conv2d", "batchnorm", "layernorm"):
            continue
        for role, name in _params_of(arch, i).items():
            power = 0
            if i == producer and role in ("weight", "bias"):
                power = 1
            elif i == consumer and role == "running_mean":
                power = 1
            elif i == consumer and role == "weight":
                power = -1
            refs.append(AxisRef(name, 0, 1, power, True))
    w_next = _params_of(arch, nxt)["weight"]
    if arch.layout[[p.name for p in arch.layout].index(w_next)].shape[1] != n * block:
        raise SymmetryError(f"layer {nxt} takes inputs that are not {n} units of {block} entries each")
    refs.append(AxisRef(w_next, 1, block, -1 if consumer == nxt else 0, False))
    ordered = tuple(kind for kind in KINDS if kind == "permutation" or kind in kinds)
    name = f"layer {k} ({layer['type']}, {n} {'channels' if layer['type'] == 'conv2d' else 'units'})"
    return PermGroup(name, k, n, tuple(refs), ordered, activation, capture)
