"""REPAIR and BatchNorm-statistics reset: fixing the statistics of interpolated and merged networks.

Averaging two aligned networks shrinks the variance of hidden activations ("variance collapse", Jordan et
al., "REPAIR: REnormalizing Permuted Activations for Interpolation Repair", ICLR 2023), which is much of the
loss barrier that remains after alignment. Two corrections, both computed from a task's training inputs:

* **BatchNorm reset** (``"reset"``): every BatchNorm's running mean and variance are recomputed from the
  merged network's own activations (one pass, :func:`wslviz.core.module_eval.batchnorm_statistics`). The
  normalised channels then carry the interpolated BatchNorm scale and shift; this is the default for networks
  with BatchNorm, since the averaged running statistics describe neither endpoint's activations.
* **REPAIR** (``"repair"``): the output channels of the interpolated network ``(1 - t) a + t b`` are rescaled so
  that their mean and standard deviation over the data are the interpolation ``(1 - t) mu_a + t mu_b``,
  ``(1 - t) sigma_a + t sigma_b`` of the endpoints' (Jordan et al., Eq. 2), layer by layer in graph order (each
  layer sees the corrected layers before it), the affine correction folded into the layer's weights and bias.
  Without BatchNorm the corrected layers are the hidden linear/conv layers. With BatchNorm it is the reset
  followed by the same correction of every BatchNorm's *output* (folded into its weight and bias): after the
  reset a channel's standard deviation is ``|(1 - t) gamma_a + t gamma_b|``, below the endpoints' interpolated
  ``(1 - t) |gamma_a| + t |gamma_b|`` wherever the two scales differ in sign, and the endpoints' own outputs
  differ from their ``gamma``, ``beta`` where their running statistics are not their data's (Jordan et al.,
  Sec. 4.3: the reset alone is REPAIR on BatchNorm networks only up to these terms).

Both return ordinary weight vectors of the same architecture, so everything downstream (evaluation, barriers,
export) is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wslviz.core import module_eval
from wslviz.core.tasks import Task

METHODS = ("none", "reset", "repair")
N_SAMPLES = 2048
"""Training inputs used for the statistics (the first ones of the training split)."""


def default_method(arch: Any) -> str:
    """``"reset"`` for networks with BatchNorm (their averaged running statistics are wrong), else ``"none"``."""
    return "reset" if _has_batchnorm(arch) else "none"


def _has_batchnorm(arch: Any) -> bool:
    if module_eval.is_module_arch(arch):
        return bool(arch.has_batchnorm)
    return any(layer.get("type") == "batchnorm" for layer in getattr(arch, "layers", []))


def _inputs(task: Task | None, n_samples: int) -> torch.Tensor:
    if task is None:
        raise ValueError("REPAIR and BatchNorm reset need data: this zoo has no task")
    return task.x_train[:n_samples]


def reset_batchnorm(arch: Any, weights: torch.Tensor, task: Task | None = None,
                    n_samples: int = N_SAMPLES, device: torch.device | str = "cpu") -> torch.Tensor:
    """``weights`` ([P] or [B, P]) with every BatchNorm's running statistics recomputed from the first
    ``n_samples`` training inputs of ``task`` (no task: mean 0, variance 1). No-op without BatchNorm."""
    single = weights.dim() == 1
    w = weights.unsqueeze(0) if single else weights
    m = module_eval.as_module_arch(arch)
    if task is None:
        out = w.detach().float().clone()
        for p in m.layout:
            if p.role == "running_mean":
                out[:, p.slice] = 0.0
            elif p.role == "running_var":
                out[:, p.slice] = 1.0
    else:
        out = module_eval.batchnorm_statistics(m, w, _inputs(task, n_samples), device=device)
    return out[0] if single else out


def _producers(m: Any) -> list[tuple[str, str, str | None, int]]:
    """The layers of a module architecture, in graph order, whose output channels REPAIR rescales:
    ``(graph node, weight name, bias name or None, channel axis of the output)``. With BatchNorm, the affine
    BatchNorm layers; without, the hidden linear/conv layers (those whose outputs are the network's outputs,
    fixed axes of the permutation spec, are left out)."""
    from wslviz.core.fx_spec import trace

    gm = trace(m)
    names = {p.name for p in m.layout}
    out_fixed = set()
    spec = getattr(m, "perm_spec", None) if module_eval.is_module_arch(m) else getattr(m.arch, "perm_spec", None)
    if spec is not None:
        out_fixed = {f.name for f in spec.fixed if f.axis == 0 and "output" in f.reason}
    kinds = (nn.modules.batchnorm._BatchNorm,) if _has_batchnorm(m) else (nn.Linear, nn.Conv1d, nn.Conv2d)
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
        found.append((node.name, weight, bias if bias in names else None, axis))
    return found


def _channel_stats(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation ``[B, C]`` of captured activations ``h`` [B, N, C, ...] over the
    samples and every other axis."""
    flat = h.movedim(2, 1).double().reshape(h.shape[0], h.shape[2], -1)
    return flat.mean(-1), flat.std(-1, correction=0)


@torch.no_grad()
def repair(arch: Any, a: torch.Tensor, b: torch.Tensor, points: torch.Tensor, t: torch.Tensor,
           task: Task | None, n_samples: int = N_SAMPLES, eps: float = 1e-6,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """REPAIR (Jordan et al. 2023) of interpolated networks ``points`` [G, P] lying at ``t`` [G] between
    endpoints ``a`` and ``b`` [P] (``b`` already aligned to ``a``): see the module docstring (with BatchNorm:
    :func:`reset_batchnorm`, then the correction of the BatchNorm outputs)."""
    m = module_eval.as_module_arch(arch)
    x = _inputs(task, n_samples)
    out = points.detach().float().clone()
    if _has_batchnorm(arch):
        out = reset_batchnorm(arch, out, task, n_samples, device)
    layers = _producers(m)
    if not layers:
        return out
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    keys = {(node, axis) for node, _, _, axis in layers}
    _, ends = module_eval.forward(m, torch.stack([a, b]).float(), x, capture=keys, device=device)
    info = {p.name: p for p in m.layout}
    for node, weight, bias, axis in layers:
        key = (node, axis)
        mu_ab, sd_ab = _channel_stats(ends[key])
        goal_mu = (1 - t) * mu_ab[0] + t * mu_ab[1]
        goal_sd = (1 - t) * sd_ab[0] + t * sd_ab[1]
        if m.has_batchnorm:  # the layers corrected so far changed this BatchNorm's input: its statistics follow
            out = reset_batchnorm(arch, out, task, n_samples, device)
        _, now = module_eval.forward(m, out, x, capture={key}, device=device)
        mu, sd = _channel_stats(now[key])
        scale = goal_sd / (sd + eps)  # [G, C]
        shift = goal_mu - mu * scale
        pw = info[weight]
        rows = out[:, pw.slice].reshape(len(out), pw.shape[0], -1).double()
        out[:, pw.slice] = (rows * scale.unsqueeze(-1)).reshape(len(out), -1).float()
        if bias is not None:
            pb = info[bias]
            out[:, pb.slice] = (out[:, pb.slice].double() * scale + shift).float()
        else:
            raise ValueError(f"REPAIR needs a bias on {weight.rsplit('.', 1)[0]} to shift its channels")
    return out


def correct(arch: Any, task: Task | None, a: torch.Tensor, b: torch.Tensor, points: torch.Tensor,
            t: torch.Tensor, method: str | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``points`` [G, P] at ``t`` [G] on the line from ``a`` to ``b`` corrected by ``method``: ``"none"`` (as they
    are), ``"reset"`` (:func:`reset_batchnorm`), ``"repair"`` (:func:`repair`); ``None``: :func:`default_method`.
    Points at ``t = 0`` or ``t = 1`` are the endpoints themselves and are returned unchanged, as is the line of a
    model with itself (its barrier stays 0)."""
    method = default_method(arch) if method is None else method
    if method not in METHODS:
        raise ValueError(f"unknown correction {method!r}; known: {', '.join(METHODS)}")
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
    inner = ((t > 0) & (t < 1)).nonzero().flatten()  # the endpoints are the models themselves: left as they are
    if method == "none" or len(inner) == 0 or torch.equal(a, b):  # a line of one model needs no correction
        return points
    out = points.clone()
    if method == "reset":
        out[inner] = reset_batchnorm(arch, points[inner], task, device=device)
    else:
        out[inner] = repair(arch, a, b, points[inner], t[inner], task, device=device)
    return out
