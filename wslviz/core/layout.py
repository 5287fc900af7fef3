"""The flat parameter layout every architecture kind shares, and the layer vocabulary of sequential specs.

A model's weights travel as one float32 vector (``[P]``, or ``[B, P]`` for a batch); a layout is the list
of :class:`ParamInfo` that cuts it into named tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "gelu", "sigmoid", "sin")
PARAMETRIC = ("linear", "conv2d", "batchnorm", "layernorm")
SHAPE_ONLY = ("maxpool2d", "avgpool2d", "global_avg_pool", "flatten", "dropout")
LAYER_TYPES = PARAMETRIC + SHAPE_ONLY + ACTIVATIONS


class ArchitectureError(ValueError):
    """A spec or state dict that does not describe a supported architecture."""


@dataclass(frozen=True)
class ParamInfo:
    """One tensor of the flat vector: ``vector[offset:offset+numel].view(shape)``."""

    name: str
    shape: tuple[int, ...]
    offset: int
    layer: int
    role: str  # weight | bias | running_mean | running_var

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def trainable(self) -> bool:
        return self.role in ("weight", "bias")

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.numel)
