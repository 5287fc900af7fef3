"""A module's ``torch.fx`` graph, and what the protocol reads off it for module architectures.

:func:`trace` traces an architecture's ``nn.Module`` (standard layers kept as leaves) and records every node's
shape; the permutation spec is derived from it (:mod:`wslviz.core.fx_spec`), and so are the layers REPAIR
rescales (:func:`repair_layers`) and the BatchNorms folded by BatchNorm-aware weight matching
(:func:`batchnorm_folds`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from wslviz.core.kind import BatchNormFold, RepairLayer

LEAVES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.Embedding,
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.Softmax, nn.Dropout,
    nn.Identity, nn.Flatten,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MultiheadAttention, nn.RNNBase,
)
"""Modules traced as single nodes; every other module is traced through."""


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, LEAVES)


def trace(arch: Any) -> fx.GraphModule:
    """The architecture's ``arch.module`` as a ``torch.fx.GraphModule`` (standard layers as leaves) with every
    node's shape recorded for three of its probe inputs."""
    graph = _Tracer().trace(arch.module)
    gm = fx.GraphModule(arch.module, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(arch.probe_inputs(3))
    return gm


def repair_layers(arch: Any) -> list[RepairLayer]:
    """The layers of a module architecture, in graph order, whose output channels REPAIR rescales: with
    BatchNorm the affine BatchNorm layers, without the hidden linear/conv layers (those whose outputs are the
    network's outputs, fixed axes of the permutation spec, are left out). Capture keys are ``(node, axis)``."""
    gm = trace(arch)
    names = {p.name for p in arch.layout}
    out_fixed = {f.name for f in arch.perm_spec.fixed if f.axis == 0 and "output" in f.reason}
    kinds = (nn.modules.batchnorm._BatchNorm,) if arch.has_batchnorm else (nn.Linear, nn.Conv1d, nn.Conv2d)
    modules = dict(gm.named_modules())
    found = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], kinds):
            continue
        weight, bias = f"{node.target}.weight", f"{node.target}.bias"
        if weight not in names or weight in out_fixed:
            continue
        shape = node.meta["tensor_meta"].shape
        axis = len(shape) - 1 if isinstance(modules[node.target], nn.Linear) else 1
        found.append(RepairLayer((node.name, axis), weight, bias if bias in names else None))
    return found


def batchnorm_folds(arch: Any) -> list[BatchNormFold]:
    """Every BatchNorm of a module architecture fed directly by a layer with a weight in the layout."""
    gm = trace(arch)
    modules = dict(gm.named_modules())
    names = {p.name for p in arch.layout}
    folds = []
    for node in gm.graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or f"{node.target}.weight" not in names:
            continue
        src = node.args[0]
        if not (isinstance(src, fx.Node) and src.op == "call_module" and f"{src.target}.weight" in names):
            continue  # a BatchNorm not fed directly by a layer: nothing to fold it into
        bias = f"{src.target}.bias"
        folds.append(BatchNormFold(f"{src.target}.weight", bias if bias in names else None,
                                   *(f"{node.target}.{k}" for k in ("weight", "bias", "running_mean", "running_var")),
                                   bn.eps))
    return folds
