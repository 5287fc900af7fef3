"""Building blocks the built-in networks share (:mod:`wslviz.core.builtins`, :mod:`wslviz.core.published`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATION_MODULES: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU,
                                                          "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid}


def activation_module(name: str) -> nn.Module:
    """A fresh activation module by name (``relu``, ``tanh``, ``gelu``, ``leaky_relu``, ``sigmoid``)."""
    if name not in ACTIVATION_MODULES:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATION_MODULES)}")
    return ACTIVATION_MODULES[name]()


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; the shortcut is the identity, or a strided 1x1
    conv + BatchNorm (``downsample``) when the shape changes. ``norm=False`` drops the BatchNorms (and gives the
    convs biases)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(cout) if norm else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=not norm)
        self.bn2 = nn.BatchNorm2d(cout) if norm else nn.Identity()
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            parts: list[nn.Module] = [nn.Conv2d(cin, cout, 1, stride, bias=not norm)]
            if norm:
                parts.append(nn.BatchNorm2d(cout))
            self.downsample = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.downsample(x))
