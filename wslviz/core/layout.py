"""The flat parameter layout every architecture kind shares, and the layer vocabulary of sequential specs.

A model's weights travel as one float32 vector (``[P]``, or ``[B, P]`` for a batch); a layout is the list
of :class:`ParamInfo` that cuts it into named tensors. The errors every architecture kind raises live here
too, so that each kind's module can raise them without importing the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
