"""A network's weights as the typed objects equivariant metanetworks read: edges, nodes and a global vector.

For a stack of L linear/conv layers with ``n_0`` inputs, ``n_1 .. n_{L-1}`` hidden units (channels) and
``n_L`` outputs, layer i has a weight ``W_i`` indexed by (unit of set i, unit of set i-1) and a bias
``b_i`` indexed by set i. Hidden units can be permuted (:mod:`wslviz.core.permutation`); a metanetwork
that respects this sees the weights as objects indexed by *neuron sets*:

- an **edge** tensor ``[B, n_i, n_{i-1}, C]`` per layer: one C-vector per connection;
- a **node** tensor ``[B, n_h, C]`` per neuron set: one C-vector per unit;
- a **global** vector ``[B, C]``: what no permutation moves.

Convolutions are handled as in NFN (Zhou et al., "Permutation Equivariant Neural Functionals", NeurIPS
2023, Sec. 2.3): a kernel ``[n_i, n_{i-1}, k, k]`` is an edge tensor whose ``k*k`` kernel positions are
channels; a linear layer after a flatten of ``H x W`` conv maps is an edge tensor over the channels
with ``H*W`` channels (each channel owns a block of ``H*W`` inputs).

Two ways to cut the weights into objects, one per group of symmetries:

- ``"np"`` (NFN's *neuron permutation* setting): every neuron set is treated as permutable, the input
  and output ones too. Edges ``W_1 .. W_L``, nodes ``b_1 .. b_L``, no global vector.
- ``"hnp"`` (*hidden* neuron permutation, the exact symmetry group, as DWSNets: Navon et al.,
  "Equivariant Architectures for Learning in Deep Weight Spaces", ICML 2023): input and output units
  keep their identity, so their index is folded into channels. Edges ``W_2 .. W_{L-1}``; node of set 1:
  ``b_1`` with the rows of ``W_1`` (``n_0 * s_1`` more channels); node of set L-1 also gets the columns of
  ``W_L`` (``n_L * s_L`` channels); the global vector is ``b_L``. A map that is equivariant on these objects
  can mix input and output indices freely, which DWSNets' basis for the fixed axes allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from wslviz.core.layout import ParamInfo
from wslviz.core.protocol import ArchitectureLike

MODES = ("np", "hnp")


class WeightSpaceError(ValueError):
    """An architecture whose weights a metanetwork cannot read (normalisation layers, mismatched axes)."""


@dataclass(frozen=True)
class Layer:
    """One weight layer: ``weight`` and ``bias`` parameters, ``n_out`` x ``n_in`` units, and ``spatial``
    channels per connection (``k*k`` kernel positions, times the flatten block ``H*W`` where it applies)."""

    weight: ParamInfo
    bias: ParamInfo | None
    n_out: int
    n_in: int
    spatial: int


@dataclass(frozen=True)
class Schema:
    """Which objects exist and their channel counts: ``edges[i-1]`` for layer i (0: absent), ``nodes[h]`` for
    neuron set h = 0..L (0: absent), ``glob`` (0: absent)."""

    edges: tuple[int, ...]
    nodes: tuple[int, ...]
    glob: int

    def with_channels(self, c: int) -> Schema:
        """The same objects, each with ``c`` channels."""
        return Schema(tuple(c if e else 0 for e in self.edges), tuple(c if n else 0 for n in self.nodes),
                      c if self.glob else 0)

    @property
    def pooled_width(self) -> int:
        """Channels of the vector of all objects' means (:func:`global_means`)."""
        return sum(self.edges) + sum(self.nodes) + self.glob


@dataclass
class Features:
    """Typed objects of a batch: ``edges[i-1]`` ``[B, n_i, n_{i-1}, C]``, ``nodes[h]`` ``[B, n_h, C]``,
    ``glob`` ``[B, C]``; None where the schema has no such object."""

    edges: list[torch.Tensor | None]
    nodes: list[torch.Tensor | None]
    glob: torch.Tensor | None = None

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Features:
        """``fn`` applied to every object (an elementwise nonlinearity keeps equivariance)."""
        return Features([None if e is None else fn(e) for e in self.edges],
                        [None if n is None else fn(n) for n in self.nodes],
                        None if self.glob is None else fn(self.glob))


def global_means(x: Features) -> torch.Tensor:
    """The invariant vector of every object's mean over its neuron axes, concatenated: ``[B, pooled_width]``."""
    parts = [e.mean((1, 2)) for e in x.edges if e is not None] + [n.mean(1) for n in x.nodes if n is not None]
    if x.glob is not None:
        parts.append(x.glob)
    return torch.cat(parts, -1)


class WeightSpace:
    """The weight layers of a sequential MLP/CNN, and the cut of ``[B, P]`` weights into typed objects.

    ``layers``: one :class:`Layer` per linear/conv layer. Raises :class:`WeightSpaceError` for
    architectures with parameters other than linear/conv weights and biases (BatchNorm, LayerNorm).
    """

    def __init__(self, arch: ArchitectureLike):
        if not arch.plain_stack:
            raise WeightSpaceError(f"metanetworks read plain MLP/CNN stacks; {arch.describe()} is not one")
        others = sorted({arch.layers[p.layer]["type"] for p in arch.layout
                         if arch.layers[p.layer]["type"] not in ("linear", "conv2d")})
        if others:
            raise WeightSpaceError(f"metanetworks read linear/conv weights and biases only; this architecture "
                                   f"also has {', '.join(others)} parameters")
        self.arch = arch
        by_layer: dict[int, dict[str, ParamInfo]] = {}
        for p in arch.layout:
            by_layer.setdefault(p.layer, {})[p.role] = p
        groups = arch.perm_spec.groups
        layers = []
        for j, i in enumerate(arch.weight_layers):
            w = by_layer[i]["weight"]
            kernel = w.shape[2] * w.shape[3] if len(w.shape) == 4 else 1
            if j == 0:
                n_in, block = w.shape[1], 1
            else:
                n_in = groups[j - 1].size
                block = w.shape[1] // n_in
                if n_in * block != w.shape[1]:
                    raise WeightSpaceError(f"layer {i} takes {w.shape[1]} inputs, not {n_in} units of equal blocks")
            layers.append(Layer(w, by_layer[i].get("bias"), w.shape[0], n_in, kernel * block))
        self.layers = tuple(layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Units per neuron set ``(n_0, ..., n_L)``."""
        return (self.layers[0].n_in, *(layer.n_out for layer in self.layers))

    # ------------------------------------------------------------ raw tensors
    def split(self, weights: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """``[B, P]`` -> weights ``[B, n_out, n_in, spatial]`` and biases ``[B, n_out]`` (None: no bias) per layer."""
        b = weights.shape[0]
        ws = [weights[:, layer.weight.slice].reshape(b, layer.n_out, layer.n_in, layer.spatial)
              for layer in self.layers]
        bs = [None if layer.bias is None else weights[:, layer.bias.slice] for layer in self.layers]
        return ws, bs

    def join(self, ws: list[torch.Tensor], bs: list[torch.Tensor | None]) -> torch.Tensor:
        """Inverse of :meth:`split`: per-layer tensors -> ``[B, P]`` in the architecture's layout order."""
        out = torch.empty(ws[0].shape[0], self.arch.n_params, dtype=ws[0].dtype)
        for layer, w, bias in zip(self.layers, ws, bs, strict=True):
            out[:, layer.weight.slice] = w.reshape(len(w), -1)
            if layer.bias is not None:
                out[:, layer.bias.slice] = bias
        return out

    # ------------------------------------------------------------ typed objects
    def schema(self, mode: str) -> Schema:
        """The input schema of :meth:`features` in ``mode`` (``"np"`` or ``"hnp"``)."""
        _check_mode(mode)
        n_l = self.n_layers
        has_bias = [layer.bias is not None for layer in self.layers]
        if mode == "np":
            return Schema(tuple(layer.spatial for layer in self.layers), (0, *(int(h) for h in has_bias)), 0)
        edges = tuple(layer.spatial if 1 <= j <= n_l - 2 else 0 for j, layer in enumerate(self.layers))
        nodes = [0] * (n_l + 1)
        for h in range(1, n_l):
            nodes[h] = int(has_bias[h - 1])
        if n_l == 1:  # no hidden units: nothing is permuted, everything is global
            only = self.layers[0]
            return Schema(edges, tuple(nodes), only.n_out * (only.n_in * only.spatial + int(has_bias[0])))
        first, last = self.layers[0], self.layers[-1]
        nodes[1] += first.n_in * first.spatial
        nodes[n_l - 1] += last.n_out * last.spatial
        return Schema(edges, tuple(nodes), last.n_out * int(has_bias[-1]))

    def features(self, weights: torch.Tensor, mode: str) -> Features:
        """``[B, P]`` weights -> typed objects (see the module docstring), channels last."""
        _check_mode(mode)
        ws, bs = self.split(weights)
        n_l = self.n_layers
        if mode == "np":
            return Features(list(ws), [None, *(None if b is None else b.unsqueeze(-1) for b in bs)])
        edges: list[torch.Tensor | None] = [w if 1 <= j <= n_l - 2 else None for j, w in enumerate(ws)]
        nodes: list[torch.Tensor | None] = [None] * (n_l + 1)
        if n_l == 1:
            parts = [ws[0].flatten(1)] + ([bs[0]] if bs[0] is not None else [])
            return Features(edges, nodes, torch.cat(parts, 1))
        node_parts: list[list[torch.Tensor]] = [[] for _ in range(n_l + 1)]
        for h in range(1, n_l):
            if bs[h - 1] is not None:
                node_parts[h].append(bs[h - 1].unsqueeze(-1))
        node_parts[1].append(ws[0].flatten(2))  # [B, n_1, n_0 * s_1]
        node_parts[n_l - 1].append(ws[-1].permute(0, 2, 1, 3).flatten(2))  # [B, n_{L-1}, n_L * s_L]
        nodes = [torch.cat(p, -1) if p else None for p in node_parts]
        return Features(edges, nodes, bs[-1])

    def unfeatures(self, x: Features, mode: str) -> torch.Tensor:
        """Inverse of :meth:`features` for objects with the channels of :meth:`schema` -> ``[B, P]``."""
        _check_mode(mode)
        n_l = self.n_layers
        if mode == "np":
            return self.join(list(x.edges), [None if n is None else n[..., 0] for n in x.nodes[1:]])
        bsz = next(t for t in [*x.edges, *x.nodes, x.glob] if t is not None).shape[0]
        if n_l == 1:
            layer = self.layers[0]
            n_w = layer.n_out * layer.n_in * layer.spatial
            w = x.glob[:, :n_w].reshape(bsz, layer.n_out, layer.n_in, layer.spatial)
            return self.join([w], [x.glob[:, n_w:] if layer.bias is not None else None])
        ws: list[torch.Tensor | None] = list(x.edges)
        bs: list[torch.Tensor | None] = [None] * n_l
        rest = [n for n in x.nodes]
        for h in range(1, n_l):
            if self.layers[h - 1].bias is not None:
                bs[h - 1], rest[h] = rest[h][..., 0], rest[h][..., 1:]
        first, last = self.layers[0], self.layers[-1]
        k = first.n_in * first.spatial
        ws[0], rest[1] = rest[1][..., :k].reshape(bsz, first.n_out, first.n_in, first.spatial), rest[1][..., k:]
        ws[-1] = rest[n_l - 1].reshape(bsz, last.n_in, last.n_out, last.spatial).permute(0, 2, 1, 3)
        bs[-1] = x.glob if last.bias is not None else None
        return self.join(ws, bs)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise WeightSpaceError(f"unknown weight-space mode {mode!r}; known: {', '.join(MODES)}")
