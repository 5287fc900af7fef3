"""Weight-space augmentation of INRs by moving the image under them: rotate, zoom and shift in weight space.

An INR ``f`` of an image maps coordinates to pixels; ``f(A x + t)`` is the INR of the image rotated/zoomed
by ``A`` and shifted by ``t``, and it is again a network of the same architecture: the first layer
``W x + b`` becomes ``(W A) x + (b + W t)``. So a small random similarity transform of every training INR
is a new, label-preserving training example obtained without refitting anything (the weight-space
counterpart of image augmentation; DWSNets and NFN train their INR classifiers on far more INRs than the
1,797 images of scikit-learn's digits, and this closes part of that gap).
"""

from __future__ import annotations

import math

import torch

from wslviz.core.protocol import ArchitectureLike


def is_coordinate_mlp(arch: ArchitectureLike) -> bool:
    """Whether ``arch`` starts with a linear layer on 2 input coordinates (what :func:`coordinate_affine` needs)."""
    return (arch.plain_stack and arch.input_shape == (2,)
            and arch.layers[0]["type"] == "linear")


def coordinate_affine(arch: ArchitectureLike, weights: torch.Tensor, gen: torch.Generator, rotation: float = 15.0,
                      zoom: float = 0.1, shift: float = 0.1) -> torch.Tensor:
    """A random similarity transform of each INR's input coordinates, in weight space: ``[B, P] -> [B, P]``.

    Per row: rotation uniform in ``+-rotation`` degrees, scale uniform in ``1 +- zoom``, shift uniform in
    ``+-shift`` per axis (the image spans ``[-1, 1]``). Only the first layer's weight and bias change."""
    if not is_coordinate_mlp(arch):
        raise ValueError(f"coordinate augmentation needs a coordinate MLP (first layer linear on 2 inputs), "
                         f"got {arch.describe()}")
    b = len(weights)
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(rotation)
    scale = 1 + (torch.rand(b, generator=gen) * 2 - 1) * zoom
    t = (torch.rand(b, 2, generator=gen) * 2 - 1) * shift
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    a = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # [B, 2, 2]
    w_info = next(p for p in arch.layout if p.layer == 0 and p.role == "weight")
    b_info = next((p for p in arch.layout if p.layer == 0 and p.role == "bias"), None)
    out = weights.clone()
    w = weights[:, w_info.slice].reshape(b, *w_info.shape)  # [B, n_1, 2]
    out[:, w_info.slice] = torch.bmm(w, a).reshape(b, -1)
    if b_info is not None:
        out[:, b_info.slice] = weights[:, b_info.slice] + torch.bmm(w, t.unsqueeze(-1)).squeeze(-1)
    return out
