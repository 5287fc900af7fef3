"""Metanetworks: networks whose input is another network's weights ``[B, P]``.

- :class:`EquivariantMetanet`: typed objects (``"np"``: NFN-NP, Zhou et al., NeurIPS 2023; ``"hnp"``:
  DWSNets-style, Navon et al., ICML 2023) -> ``depth`` x (:class:`EquivariantLinear` + ReLU) ->
  :class:`InvariantHead`. Its output is invariant to every permutation of hidden units.
- :class:`FlatMLP`: the baseline that reads the flat weight vector as is (DWSNets' "MLP" row), which
  permutation symmetry scrambles; with permutation augmentation it has to learn the invariance from data.
"""

from __future__ import annotations

import torch
from torch import nn

from wslviz.represent.metanet.layers import EquivariantLinear, InvariantHead
from wslviz.represent.metanet.weightspace import Features, WeightSpace


class EquivariantMetanet(nn.Module):
    """Permutation-invariant metanetwork ``[B, P] -> [B, out_dim]`` for the weights of ``space``.

    ``mode``: ``"np"`` or ``"hnp"`` (see :mod:`wslviz.represent.metanet.weightspace`); ``hidden`` channels per
    object in ``depth`` equivariant layers; the head pools every object to its mean and applies an MLP
    with ``head_hidden`` units."""

    def __init__(self, space: WeightSpace, mode: str, out_dim: int, hidden: int = 32, depth: int = 3,
                 head_hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        self.space, self.mode = space, mode
        schema = space.schema(mode)
        layers = []
        for _ in range(depth):
            layers.append(EquivariantLinear(schema, schema.with_channels(hidden)))
            schema = schema.with_channels(hidden)
        self.layers = nn.ModuleList(layers)
        self.head = InvariantHead(schema, head_hidden, out_dim, dropout=dropout)

    def equivariant_features(self, weights: torch.Tensor) -> Features:
        """The typed objects after the equivariant layers (they move with the input's neuron permutations)."""
        x = self.space.features(weights, self.mode)
        for layer in self.layers:
            x = layer(x).map(torch.relu)
        return x

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        return self.head(self.equivariant_features(weights))


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
