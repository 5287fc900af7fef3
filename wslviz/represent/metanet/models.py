"""Metanetworks: networks whose input is another network's weights ``[B, P]``.

- :class:`EquivariantMetanet`: typed objects (``"np"``: NFN-NP, Zhou et al., NeurIPS 2023; ``"hnp"``:
  DWSNets-style, Navon et al., ICML 2023) -> ``depth`` x (:class:`EquivariantLinear` + ReLU) ->
  :class:`InvariantHead`. Its output is invariant to every permutation of hidden units. With ``stats=True``
  (the hybrid "metanetwork + stats") the head also reads :func:`tensor_stats` of the input weights, the
  per-tensor statistics of Unterthiner et al. ("Predicting Neural Network Accuracy from Weights", 2020),
  which are invariant too (functions of each tensor's multiset of entries).
- :class:`FlatMLP`: the baseline that reads the flat weight vector as is (DWSNets' "MLP" row), which
  permutation symmetry scrambles; with permutation augmentation it has to learn the invariance from data.
"""

from __future__ import annotations

import torch
from torch import nn

from wslviz.represent.metanet.layers import EquivariantLinear, InvariantHead
from wslviz.represent.metanet.weightspace import Features, WeightSpace

STAT_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
N_STATS = 2 + len(STAT_QUANTILES)
"""Statistics per parameter tensor in :func:`tensor_stats`: mean, std and the quantiles."""


def tensor_stats(space: WeightSpace, weights: torch.Tensor) -> torch.Tensor:
    """Per weight and bias tensor of ``space``: mean, population std and the :data:`STAT_QUANTILES`;
    ``[B, P] -> [B, N_STATS * n_tensors]`` (the ``stats`` features of :mod:`wslviz.represent.features`)."""
    q = torch.tensor(STAT_QUANTILES, dtype=weights.dtype)
    cols = []
    for layer in space.layers:
        for p in (layer.weight, layer.bias):
            if p is None:
                continue
            t = weights[:, p.slice]
            cols += [t.mean(1, keepdim=True), t.std(1, correction=0, keepdim=True), torch.quantile(t, q, dim=1).T]
    return torch.cat(cols, 1)


class EquivariantMetanet(nn.Module):
    """Permutation-invariant metanetwork ``[B, P] -> [B, out_dim]`` for the weights of ``space``.

    ``mode``: ``"np"`` or ``"hnp"`` (see :mod:`wslviz.represent.metanet.weightspace`); ``hidden`` channels per
    object in ``depth`` equivariant layers; the head pools every object to its mean and applies an MLP
    with ``head_hidden`` units. ``stats``: the head also reads the weights' :func:`tensor_stats`, appended to the
    input (``[B, P + n_stats]``, made by :meth:`with_stats`: sorting for the quantiles costs more than the rest
    of a small network's step, so an estimator computes them once per row) and standardised by the buffers
    ``stats_mean`` / ``stats_std`` (set from training inputs with :meth:`fit_stats`)."""

    def __init__(self, space: WeightSpace, mode: str, out_dim: int, hidden: int = 32, depth: int = 3,
                 head_hidden: int = 64, dropout: float = 0.0, stats: bool = False):
        super().__init__()
        self.space, self.mode, self.stats = space, mode, stats
        self.n_stats = n_stats = N_STATS * sum(1 + (layer.bias is not None) for layer in space.layers) if stats else 0
        self.register_buffer("stats_mean", torch.zeros(n_stats))
        self.register_buffer("stats_std", torch.ones(n_stats))
        schema = space.schema(mode)
        layers = []
        for _ in range(depth):
            layers.append(EquivariantLinear(schema, schema.with_channels(hidden)))
            schema = schema.with_channels(hidden)
        self.layers = nn.ModuleList(layers)
        self.head = InvariantHead(schema, head_hidden, out_dim, dropout=dropout, extra=n_stats)

    def with_stats(self, weights: torch.Tensor) -> torch.Tensor:
        """The network's input for weights ``[B, P]``: with :func:`tensor_stats` appended when ``stats``."""
        return torch.cat([weights, tensor_stats(self.space, weights)], 1) if self.stats else weights

    @torch.no_grad()
    def fit_stats(self, inputs: torch.Tensor) -> None:
        """Standardise the head's statistics by their mean and std over training ``inputs`` (:meth:`with_stats`)."""
        if self.stats:
            s = inputs[:, inputs.shape[1] - self.n_stats:]
            self.stats_mean.copy_(s.mean(0))
            self.stats_std.copy_(s.std(0).clamp_min(1e-8))

    def equivariant_features(self, weights: torch.Tensor) -> Features:
        """The typed objects after the equivariant layers (they move with the input's neuron permutations)."""
        x = self.space.features(weights, self.mode)
        for layer in self.layers:
            x = layer(x).map(torch.relu)
        return x

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, P]`` weights (``[B, P + n_stats]`` from :meth:`with_stats` when ``stats``) -> ``[B, out_dim]``."""
        if not self.stats:
            return self.head(self.equivariant_features(inputs))
        n_params = inputs.shape[1] - self.n_stats
        extra = (inputs[:, n_params:] - self.stats_mean) / self.stats_std
        return self.head(self.equivariant_features(inputs[:, :n_params]), extra)


class FlatMLP(nn.Module):
    """An MLP on the flat weight vector: ``[B, P] -> [B, out_dim]`` (``depth`` hidden layers of ``hidden``)."""

    def __init__(self, n_params: int, out_dim: int, hidden: int = 256, depth: int = 2, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_params
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        return self.mlp(weights)
