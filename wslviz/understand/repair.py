"""REPAIR and BatchNorm-statistics reset: fixing the statistics of interpolated and merged networks.

Averaging two aligned networks shrinks the variance of hidden activations ("variance collapse", Jordan et
al., "REPAIR: REnormalizing Permuted Activations for Interpolation Repair", ICLR 2023), which is much of the
loss barrier that remains after alignment. Two corrections, both computed from a task's training inputs:

* **BatchNorm reset** (``"reset"``): every BatchNorm's running mean and variance are recomputed from the
  merged network's own activations (one pass, :func:`wslviz.core.evaluation.batchnorm_statistics`). The
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

:func:`repair_to` generalises REPAIR to a merge of K models with coefficients (the goal statistics are the same
combination of the K models' statistics); :func:`repair` is its two-endpoint case. Both work on every kind of
architecture through the protocol: the layers to correct come from ``arch.repair_layers()``, their activations
from ``arch.forward(..., capture=...)``.

Both return ordinary weight vectors of the same architecture, so everything downstream (evaluation, barriers,
export) is unchanged.
"""

from __future__ import annotations

import torch

from wslviz.core.device import Device
from wslviz.core.evaluation import batchnorm_statistics, forward
from wslviz.core.kind import ArchitectureBase
from wslviz.core.tasks import Task

METHODS = ("none", "reset", "repair")
LABELS = {"none": "no correction", "reset": "BatchNorm reset", "repair": "REPAIR"}
"""How pages name each correction beside the numbers measured with it."""
N_SAMPLES = 2048
"""Training inputs used for the statistics (the first ones of the training split)."""


def default_method(arch: ArchitectureBase) -> str:
    """``"reset"`` for networks with BatchNorm (their averaged running statistics are wrong), else ``"none"``."""
    return "reset" if arch.has_batchnorm else "none"


def _inputs(task: Task | None, n_samples: int) -> torch.Tensor:
    if task is None:
        raise ValueError("REPAIR and BatchNorm reset need data: this zoo has no task")
    return task.x_train[:n_samples]


def reset_batchnorm(arch: ArchitectureBase, weights: torch.Tensor, task: Task | None = None,
                    n_samples: int = N_SAMPLES, device: Device = "cpu") -> torch.Tensor:
    """``weights`` ([P] or [B, P]) with every BatchNorm's running statistics recomputed from the first
    ``n_samples`` training inputs of ``task`` (no task: mean 0, variance 1). No-op without BatchNorm. The one
    BatchNorm reset of the library: alignment, merging and paths all call it."""
    single = weights.dim() == 1
    w = weights.unsqueeze(0) if single else weights
    if not arch.has_batchnorm:
        out = w.detach().float().clone()
    elif task is None:
        out = w.detach().float().clone()
        for p in arch.layout:
            if p.role == "running_mean":
                out[:, p.slice] = 0.0
            elif p.role == "running_var":
                out[:, p.slice] = 1.0
    else:
        out = batchnorm_statistics(arch, w, _inputs(task, n_samples), device=device)
    return out[0] if single else out


def _channel_stats(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation ``[B, C]`` of captured activations ``h`` [B, N, C, ...] over the
    samples and every other axis."""
    flat = h.movedim(2, 1).double().reshape(h.shape[0], h.shape[2], -1)
    return flat.mean(-1), flat.std(-1, correction=0)


@torch.no_grad()
def repair_to(arch: ArchitectureBase, models: torch.Tensor, points: torch.Tensor, coefficients: torch.Tensor,
              x: torch.Tensor, eps: float = 1e-6, device: Device = "cpu") -> torch.Tensor:
    """REPAIR (Jordan et al. 2023) of G merged networks ``points`` [G, P], each the combination
    ``coefficients`` [G, K] of the K aligned ``models`` [K, P]: every layer of ``arch.repair_layers()`` gets its
    output channels' mean and standard deviation over the inputs ``x`` [N, ...] set to the same combination of
    the K models' (Eq. 2 of the paper for K = 2), layer by layer in forward order; with BatchNorm the statistics
    are recomputed on ``x`` first (and again before each layer, whose input the corrected layers changed)."""
    out = points.detach().float().clone()
    if arch.has_batchnorm:
        out = batchnorm_statistics(arch, out, x, device=device)
    layers = arch.repair_layers()
    if not layers:
        return out
    c = torch.as_tensor(coefficients, dtype=torch.float64).reshape(len(points), len(models))
    _, ends = forward(arch, models.float(), x, capture={layer.capture for layer in layers}, device=device)
    info = {p.name: p for p in arch.layout}
    for layer in layers:
        mu_k, sd_k = _channel_stats(ends[layer.capture])  # [K, C]
        goal_mu, goal_sd = c @ mu_k, c @ sd_k  # [G, C]
        if arch.has_batchnorm and layer is not layers[0]:  # the layers corrected so far changed this input
            out = batchnorm_statistics(arch, out, x, device=device)
        _, now = forward(arch, out, x, capture={layer.capture}, device=device)
        mu, sd = _channel_stats(now[layer.capture])
        scale = goal_sd / (sd + eps)  # [G, C]
        shift = goal_mu - mu * scale
        if layer.bias is None:
            raise ValueError(f"REPAIR needs a bias on {layer.weight.rsplit('.', 1)[0]} to shift its channels")
        pw, pb = info[layer.weight], info[layer.bias]
        rows = out[:, pw.slice].reshape(len(out), pw.shape[0], -1).double()
        out[:, pw.slice] = (rows * scale.unsqueeze(-1)).reshape(len(out), -1).float()
        out[:, pb.slice] = (out[:, pb.slice].double() * scale + shift).float()
    return out


def repair(arch: ArchitectureBase, a: torch.Tensor, b: torch.Tensor, points: torch.Tensor, t: torch.Tensor,
           task: Task | None, n_samples: int = N_SAMPLES, eps: float = 1e-6, device: Device = "cpu") -> torch.Tensor:
    """REPAIR of interpolated networks ``points`` [G, P] lying at ``t`` [G] between endpoints ``a`` and ``b``
    [P] (``b`` already aligned to ``a``): :func:`repair_to` with coefficients ``(1 - t, t)``."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    return repair_to(arch, torch.stack([a, b]), points, torch.cat([1 - t, t], 1), _inputs(task, n_samples), eps,
                     device)


def correct(arch: ArchitectureBase, task: Task | None, a: torch.Tensor, b: torch.Tensor, points: torch.Tensor,
            t: torch.Tensor, method: str | None, device: Device = "cpu") -> torch.Tensor:
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
