"""The flat parameter layout every architecture kind shares, and the layer vocabulary of sequential specs.

A model's weights travel as one float32 vector (``[P]``, or ``[B, P]`` for a batch); a layout is the list
of :class:`ParamInfo` that cuts it into named tensors. :class:`FlatLayout` is what every architecture kind
(sequential, module, weights-only) does with its layout: cut a vector into tensors, pack a state dict into a
vector, name itself. The errors every architecture kind raises live here too, so that each kind's module can
raise them without importing the others.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "gelu", "sigmoid", "sin")
PARAMETRIC = ("linear", "conv2d", "batchnorm", "layernorm")
SHAPE_ONLY = ("maxpool2d", "avgpool2d", "global_avg_pool", "flatten", "dropout")
LAYER_TYPES = PARAMETRIC + SHAPE_ONLY + ACTIVATIONS


ROLES = ("weight", "bias", "running_mean", "running_var", "other")
"""What a tensor of a layout is: a layer's weight or bias, a BatchNorm running statistic (part of the
function in eval mode, not trained), or ``other`` (a learned tensor whose name says no more, e.g. ``log_std``)."""
STATISTICS = ("running_mean", "running_var")


class ArchitectureError(ValueError):
    """A spec or state dict that does not describe a supported architecture."""


class NoForwardError(ArchitectureError):
    """A computation that runs the network, asked of an architecture without a forward (a weights-only layout)."""


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial size after a convolution or pooling window: ``(size + 2 padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class ParamInfo:
    """One tensor of the flat vector: ``vector[offset:offset+numel].view(shape)``."""

    name: str
    shape: tuple[int, ...]
    offset: int
    layer: int
    role: str  # one of ROLES

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def trainable(self) -> bool:
        """Learned by training (everything but running statistics)."""
        return self.role not in STATISTICS

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.numel)


def in_order(layout: Sequence[ParamInfo], names: Sequence[str]) -> tuple[ParamInfo, ...]:
    """``layout`` with its tensors one after the other in the order of ``names`` (each of its names once): the same
    tensors at new offsets. A zoo whose rows are its files' bytes keeps the files' order (see
    :mod:`wslviz.formats.served`); raises :class:`ArchitectureError` naming what is missing or unknown."""
    by_name = {p.name: p for p in layout}
    missing = [n for n in by_name if n not in set(names)]
    unknown = [n for n in names if n not in by_name]
    if missing or unknown or len(set(names)) != len(names):
        raise ArchitectureError(f"an order must name each tensor of the layout once (missing {missing[:3]}, "
                                f"unknown {unknown[:3]}, {len(names) - len(set(names))} repeated)")
    out, offset = [], 0
    for name in names:
        out.append(replace(by_name[name], offset=offset))
        offset += by_name[name].numel
    return tuple(out)


class FlatLayout:
    """The flat-vector side every architecture kind shares: subclasses set ``layout`` (a tuple of
    :class:`ParamInfo`), ``n_params`` and ``spec`` (JSON-serialisable), and define ``describe()``."""

    layout: tuple[ParamInfo, ...]
    n_params: int
    spec: dict[str, Any]

    def describe(self) -> str:
        raise NotImplementedError

    def unflatten(self, weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[P] -> {name: tensor}`` or ``[B, P] -> {name: [B, *shape]}`` (views, no copies)."""
        if weights.shape[-1] != self.n_params:
            raise ArchitectureError(f"expected {self.n_params} parameters per model, got {weights.shape[-1]}")
        lead = weights.shape[:-1]
        return {p.name: weights[..., p.slice].reshape(*lead, *p.shape) for p in self.layout}

    def pack(self, tensors: Mapping[str, Any], what: str, also: frozenset[str] | set[str] = frozenset(),
             out: torch.Tensor | None = None) -> torch.Tensor:
        """``{name: tensor}`` with exactly the layout's names (and any of ``also``, e.g. tied aliases, which are
        ignored) -> float32 ``[P]`` (written into ``out`` when given: a row of a matrix, a buffer used again);
        raises :class:`ArchitectureError` naming the first unexpected, missing or misshapen key (``what`` says whose
        keys they are, for the message)."""
        extra = sorted(set(tensors) - {p.name for p in self.layout} - set(also))
        if extra:
            raise ArchitectureError(f"unexpected keys for {what}: {extra[:5]}")
        parts = []
        for p in self.layout:
            if p.name not in tensors:
                raise ArchitectureError(f"missing key {p.name!r}")
            t = torch.as_tensor(tensors[p.name])
            if tuple(t.shape) != p.shape:
                raise ArchitectureError(f"{p.name}: shape {list(t.shape)}, expected {list(p.shape)}")
            parts.append(t.detach().reshape(-1).to(torch.float32))
        if out is not None:
            return torch.cat(parts, out=out) if parts else out
        return torch.cat(parts) if parts else torch.zeros(0)

    def to_json(self) -> str:
        return json.dumps(self.spec, sort_keys=True)

    @property
    def fingerprint(self) -> str:
        """12 hex digits identifying the spec."""
        return hashlib.sha1(self.to_json().encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"
