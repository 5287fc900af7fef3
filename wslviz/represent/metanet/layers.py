"""Permutation-equivariant linear layers on weight spaces, and the invariant pooling head.

Given typed objects (:mod:`wslviz.represent.metanet.weightspace`: edge tensors per layer, node tensors per
neuron set, a global vector), :class:`EquivariantLinear` is the *complete* space of linear maps that
commute with every permutation of every neuron set, with one channel-mixing matrix per basis term.
Each neuron set appears in at most two edge tensors (as rows of layer h, as columns of layer h+1),
which makes the basis small. Writing ``S_h`` for the per-unit features of set h (the row means of edge
h, the column means of edge h+1 and node h, concatenated) and ``G`` for every object's full mean:

- edge of layer i at (j, k): ``A E[j, k] + B S_i[j] + C S_{i-1}[k] + D G + bias``
  (self, shared row unit, shared column unit, global: the 4 orbits of index pairs of two distinct sets,
  plus the neighbouring layers through ``S``);
- node of set h at j: ``B S_h[j] + D G + bias``;
- global: ``D G + bias``.

With every neuron set permutable (``"np"`` objects) these are the terms of NFN's NP layer (Zhou et al.,
"Permutation Equivariant Neural Functionals", NeurIPS 2023, Eq. 4: each weight sees itself, its row and
column means, the neighbouring layers' means over the shared units, the biases of its two units, and
all global means). With input and output units fixed (``"hnp"`` objects, folded into channels) the same
terms give DWSNets' weight/bias blocks (Navon et al., "Equivariant Architectures for Learning in Deep
Weight Spaces", ICML 2023): weight->weight (edge->edge), weight->bias (edge->node), bias->weight
(node->edge) and bias->bias (node->node), with free linear maps over the fixed input/output indices.
The layer works for any widths: it pools by means, so it never depends on the number of units.
"""

from __future__ import annotations

import torch
from torch import nn

from wslviz.represent.metanet.weightspace import Features, Schema, global_means


def _set_widths(schema: Schema) -> list[int]:
    """Channels of ``S_h`` per neuron set h."""
    n_l = len(schema.edges)
    return [(schema.edges[h - 1] if h >= 1 else 0) + (schema.edges[h] if h < n_l else 0) + schema.nodes[h]
            for h in range(n_l + 1)]


def set_features(x: Features) -> list[torch.Tensor | None]:
    """Per neuron set h, ``S_h`` ``[B, n_h, C_h]``: row means of edge h, column means of edge h+1, node h."""
    n_l = len(x.edges)
    out: list[torch.Tensor | None] = []
    for h in range(n_l + 1):
        parts = []
        if h >= 1 and x.edges[h - 1] is not None:
            parts.append(x.edges[h - 1].mean(2))
        if h < n_l and x.edges[h] is not None:
            parts.append(x.edges[h].mean(1))
        if x.nodes[h] is not None:
            parts.append(x.nodes[h])
        out.append(torch.cat(parts, -1) if parts else None)
    return out


class EquivariantLinear(nn.Module):
    """The equivariant linear map between two schemas with the same objects (see the module docstring).

    ``forward(Features) -> Features``; output channels from ``schema_out``. Parameters: a self map per edge
    tensor; per neuron set one map from ``S_h`` to every output term indexed by that set (the rows of edge
    h, the columns of edge h+1, node h), fused into one matrix; one map from ``G`` to every output object,
    with the biases, fused likewise (fewer, larger matrix products: the layer's cost is mostly per call).
    """

    def __init__(self, schema_in: Schema, schema_out: Schema):
        super().__init__()
        same = ([bool(c) for c in schema_in.edges] == [bool(c) for c in schema_out.edges]
                and [bool(c) for c in schema_in.nodes] == [bool(c) for c in schema_out.nodes]
                and bool(schema_in.glob) == bool(schema_out.glob))
        if not same:
            raise ValueError("EquivariantLinear maps between schemas with the same objects")
        self.schema_in, self.schema_out = schema_in, schema_out
        n_l = len(schema_out.edges)
        edges_out, nodes_out = schema_out.edges, schema_out.nodes
        self.edge_self = nn.ModuleList(_linear(ci, co, bias=False) for ci, co in zip(schema_in.edges, edges_out,
                                                                                  strict=True))
        # per set h, output columns: [rows of edge h-1 | columns of edge h | node h]
        self.set_split = [((edges_out[h - 1] if h >= 1 else 0), (edges_out[h] if h < n_l else 0), nodes_out[h])
                          for h in range(n_l + 1)]
        self.set_maps = nn.ModuleList(_linear(w, sum(parts), bias=False)
                                      for w, parts in zip(_set_widths(schema_in), self.set_split, strict=True))
        # global map, output columns: [every edge | every node | the global vector]
        self.glob_split = [*edges_out, *nodes_out, schema_out.glob]
        self.glob_map = nn.Linear(schema_in.pooled_width, sum(self.glob_split))

    def forward(self, x: Features) -> Features:
        n_l = len(x.edges)
        per_set = [None if m is None else m(s).split(parts, -1)
                   for m, s, parts in zip(self.set_maps, set_features(x), self.set_split, strict=True)]
        glob = self.glob_map(global_means(x)).split(self.glob_split, -1)
        edges: list[torch.Tensor | None] = []
        for i, e in enumerate(x.edges):
            if e is None:
                edges.append(None)
                continue
            rows, cols = per_set[i + 1][0], per_set[i][1]  # edge i: rows are set i+1, columns set i
            edges.append(self.edge_self[i](e) + rows.unsqueeze(2) + cols.unsqueeze(1) + glob[i][:, None, None])
        nodes = [None if n is None else per_set[h][2] + glob[n_l + h].unsqueeze(1) for h, n in enumerate(x.nodes)]
        return Features(edges, nodes, None if x.glob is None else glob[-1])


def _linear(c_in: int, c_out: int, bias: bool = True) -> nn.Module | None:
    """A channel-mixing map, or None where the output object (or the input) does not exist."""
    return nn.Linear(c_in, c_out, bias=bias) if c_in and c_out else None


class InvariantHead(nn.Module):
    """Invariant pooling and an MLP: every object's mean over its neuron axes (a permutation-invariant
    vector, as NFN's invariant pooling layer), then ``Linear-ReLU`` x ``depth`` and a linear output.
    ``extra`` more invariant inputs (``[B, extra]``, e.g. per-tensor statistics) join the pooled vector.

    ``forward(Features, extra=None) -> [B, out_dim]``."""

    def __init__(self, schema: Schema, hidden: int, out_dim: int, depth: int = 1, dropout: float = 0.0,
                 extra: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        width = schema.pooled_width + extra
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Features, extra: torch.Tensor | None = None) -> torch.Tensor:
        pooled = global_means(x)
        return self.mlp(pooled if extra is None else torch.cat([pooled, extra], -1))
