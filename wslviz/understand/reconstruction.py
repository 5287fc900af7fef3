"""Training examples read back from a network's parameters: the KKT conditions of the margin problem.

Gradient descent on a positively homogeneous network (bias-free linear and convolution layers, ReLUs, pooling) with
the logistic or cross-entropy loss converges in direction to a KKT point of the margin problem
``min |theta|^2 / 2  s.t.  f_y(x_i) - f_j(x_i) >= 1`` (Lyu & Li, ICLR 2020), so that

    theta = sum_i sum_{j != y_i} lambda_ij  grad_theta [f_{y_i}(x_i) - f_j(x_i)],   lambda_ij >= 0,

with non-zero multipliers only on examples at the margin. The training examples are a solution of that equation
in the unknowns ``x_i, lambda_ij``. Haim et al. ("Reconstructing Training Data from Trained Neural Networks",
NeurIPS 2022; Buzaglo et al., NeurIPS 2023, for several classes) optimise candidate inputs and multipliers until the
right-hand side matches the parameters, and find actual training examples among the candidates. As in their
reference code, the derivative of ReLU is smoothed (``sigmoid(smoothing z)`` in place of the step; the values are
exact) so that candidates sitting on a unit's kink still receive a gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from wslviz.core import ArchitectureLike, Task, require_forward
from wslviz.core.arch import GlobalAvgPool
from wslviz.understand.inversion import frame_marks

RECOVERY_DISTANCE = 0.5
"""A training example counts as recovered when a candidate's direction lies within this distance of its direction
(both scaled to unit norm, :func:`directions`: a cosine of at least 0.875), where unrelated high-dimensional inputs
lie about 1.4 apart. Directions, because a homogeneous network pins a training example down only up to a positive
factor: the conditions hold as well for ``c x`` with multipliers ``lambda / c``."""

_CHUNK = 25
_HOMOGENEOUS = (nn.Linear, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Identity, nn.Dropout,
                GlobalAvgPool)


@dataclass(frozen=True)
class Reconstruction:
    """Candidates found by :func:`reconstruct_training_data`. ``inputs`` ``[m, *input_shape]``; ``labels`` ``[m]``
    the class each was given; ``multipliers`` ``[m, k]`` their lambdas (``k`` = classes - 1, or 1 for one output);
    ``residual`` the final ``|theta - sum lambda grad|^2 / |theta|^2`` (0 at an exact solution); ``frames``
    ``[k, m, *input_shape]`` the candidates as they were after the iterations ``frame_steps`` (none unless asked
    for; the last frame is ``inputs``)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    multipliers: torch.Tensor
    residual: float
    frames: torch.Tensor | None = None
    frame_steps: tuple[int, ...] = ()


def homogeneity_problem(arch: ArchitectureLike, weights: torch.Tensor) -> str | None:
    """Why the margin conditions do not apply to this network, or None when they do: it must be a plain stack of
    bias-free linear or convolution layers, ReLUs, pooling and reshapes, so that scaling the parameters scales the
    outputs by a fixed power (a bias, a normalisation, a smooth activation or a skip connection breaks that)."""
    if not arch.has_forward:
        return f"{arch.describe()} has no forward to differentiate"
    net = arch.build(weights)
    if not isinstance(net, nn.Sequential):
        return (f"{arch.describe()} is not a plain stack of layers; the conditions are derived for bias-free "
                "linear and convolution layers with ReLUs between them")
    for i, module in enumerate(net):
        if not isinstance(module, _HOMOGENEOUS):
            return (f"layer {i} is {type(module).__name__}: it makes the network's output not scale with its "
                    "parameters (homogeneity), on which the margin conditions rest; they hold for bias-free linear "
                    "and convolution layers, ReLUs and pooling")
        if getattr(module, "bias", None) is not None:
            return (f"layer {i} ({type(module).__name__}) has a bias: a network with biases is not homogeneous in "
                    "its parameters, so its training examples are not pinned down by the margin conditions")
    return None


class _SmoothStepReLU(nn.Module):
    """ReLU whose values are exact and whose derivative is ``sigmoid(smoothing z)``."""

    def __init__(self, smoothing: float):
        super().__init__()
        self.smoothing = smoothing

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        soft = nn.functional.softplus(z, beta=self.smoothing)
        return torch.relu(z).detach() + soft - soft.detach()


def reconstruct_training_data(arch: ArchitectureLike, weights: torch.Tensor, task: Task | None = None,
                              n: int | None = None, steps: int = 1000, init_scale: float = 0.1,
                              smoothing: float = 300.0, random_state: int = 0,
                              progress: Callable[[int, int], None] | None = None, frames: int = 0) -> Reconstruction:
    """Candidate training examples of one homogeneous classifier (``weights`` ``[P]``) that satisfy the KKT
    conditions of its margin problem (see the module docstring): ``n`` candidates (default twice the ``task``'s
    training examples, else 100), classes taken in turn, start as Gaussian noise whose norm is ``init_scale`` times
    the typical norm of the task's inputs (1 without a task; seeded by ``random_state``) with multipliers uniform in
    [0, 1], and are optimised with L-BFGS for up to ``steps`` iterations (in float64) to minimise the residual;
    ``frames`` snapshots are kept along the way, at the ends of the chunks of 25 iterations nearest to
    :func:`~wslviz.understand.inversion.frame_marks`.
    Refuses, with the reason, a network the conditions do not hold for (:func:`homogeneity_problem`)."""
    require_forward(arch, "Reconstructing training data")
    if weights.dim() != 1 or weights.numel() != arch.n_params:
        raise ValueError(f"expected one weight vector of {arch.n_params} values, got shape {list(weights.shape)}")
    problem = homogeneity_problem(arch, weights)
    if problem:
        raise ValueError(f"The KKT reconstruction does not apply: {problem}.")
    if task is not None and not task.is_classification:
        raise ValueError("The KKT reconstruction needs a classifier: the margin conditions are about classes")
    if n is None:
        n = 2 * len(task.x_train) if task is not None else 100
    if n < 1 or steps < 1:
        raise ValueError(f"need at least 1 candidate and 1 step, got n={n}, steps={steps}")
    net = arch.build(weights).double()
    for i, module in enumerate(net):
        if isinstance(module, nn.ReLU):
            net[i] = _SmoothStepReLU(smoothing)
    theta = {name: p.detach() for name, p in net.named_parameters()}
    theta_sq = sum(float(p.square().sum()) for p in theta.values())
    if theta_sq == 0:
        raise ValueError("all weights are zero: there is no margin to read examples from")
    outputs = arch.output_dim
    n_classes = max(outputs, 2)
    labels = torch.arange(n) % n_classes
    gen = torch.Generator().manual_seed(random_state)
    scale = float(task.x_train.flatten(1).norm(dim=1).median()) if task is not None else 1.0
    dim = int(np.prod(arch.input_shape))
    x = (torch.randn(n, *arch.input_shape, generator=gen, dtype=torch.float64)
         * (init_scale * scale / dim ** 0.5)).requires_grad_(True)
    lam = torch.rand(n, n_classes - 1, generator=gen, dtype=torch.float64).requires_grad_(True)
    if outputs > 1:  # candidate i's margins against every other class j
        others = torch.stack([torch.cat([torch.arange(c), torch.arange(c + 1, n_classes)]) for c in labels.tolist()])
    sign = 2.0 * labels.double() - 1.0  # one output: class 1 above zero, class 0 below

    def residual() -> torch.Tensor:
        params = {name: p.clone().requires_grad_(True) for name, p in theta.items()}
        out = functional_call(net, params, (x,))
        weight = lam.relu()
        if outputs > 1:
            margins = out.gather(1, labels[:, None]) - out.gather(1, others)
        else:
            margins = sign[:, None] * out
        grads = torch.autograd.grad((weight * margins).sum(), list(params.values()), create_graph=True)
        return sum((theta[name] - g).square().sum() for name, g in zip(params, grads, strict=True)) / theta_sq

    optimiser = torch.optim.LBFGS([x, lam], max_iter=_CHUNK, history_size=50, line_search_fn="strong_wolfe",
                                  tolerance_grad=0.0, tolerance_change=0.0)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = residual()
        loss.backward()
        return loss

    ends = [min(done + _CHUNK, steps) for done in range(0, steps, _CHUNK)]
    marks = sorted({min(ends, key=lambda e: abs(e - m)) for m in frame_marks(steps, frames)})
    snapshots = []
    for done, end in zip([0, *ends[:-1]], ends, strict=True):  # L-BFGS keeps its history from chunk to chunk
        optimiser.param_groups[0]["max_iter"] = end - done
        optimiser.step(closure)
        if end in marks:
            snapshots.append(x.detach().float())
        if progress:
            progress(end, steps)
    final = float(residual().detach())
    return Reconstruction(x.detach().float(), labels, lam.detach().relu().float(), final,
                          torch.stack(snapshots) if snapshots else None, tuple(marks))


def directions(x: torch.Tensor) -> torch.Tensor:
    """Inputs ``[n, ...]`` flattened and scaled to unit norm, float64 ``[n, D]`` (a zero input stays zero)."""
    flat = x.reshape(len(x), -1).double()
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def recovery(inputs: torch.Tensor, examples: torch.Tensor, threshold: float = RECOVERY_DISTANCE) -> pd.DataFrame:
    """For each training example ``[N, ...]``, the candidate of ``inputs`` ``[m, ...]`` whose direction is nearest
    to its own (:func:`directions`; distances in [0, 2]) and whether it lies within ``threshold``. Columns
    ``example``, ``candidate``, ``distance``, ``recovered``."""
    if len(inputs) == 0:
        raise ValueError("no candidates to compare with the training examples")
    best = torch.cdist(directions(examples), directions(inputs)).min(1)
    distance = best.values.numpy()
    return pd.DataFrame({"example": np.arange(len(examples)), "candidate": best.indices.numpy(),
                         "distance": distance, "recovered": distance < threshold})
