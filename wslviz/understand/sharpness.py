"""Sharpness of the loss at a model: the top Hessian eigenvalue and the Hessian trace, from Hessian-vector products.

The Hessian of the loss with respect to the weights is never formed: every quantity comes from products ``H v``
computed by double backward (Pearlmutter, "Fast Exact Multiplication by the Hessian", Neural Computation 1994),
which cost about two gradients each.

* :func:`top_eigenvalue`: power iteration on ``v <- H v / |H v|`` with the Rayleigh quotient ``v . H v`` as the
  estimate (as in PyHessian: Yao et al., "PyHessian: Neural Networks Through the Lens of the Hessian",
  IEEE Big Data 2020). It converges to the eigenvalue of largest magnitude; at a trained model that is the
  largest positive one, the usual "sharpness" (Keskar et al., ICLR 2017).
* :func:`hutchinson_trace`: ``tr(H) = E[v . H v]`` for Rademacher probes ``v`` (entries +-1; Hutchinson, "A
  stochastic estimator of the trace of the influence matrix for Laplacian smoothing splines", Communications in
  Statistics 1989), the mean of ``n_probes`` draws with its standard error.
* :func:`sharpness`: both for many checkpoints of a zoo at once, on a fixed batch of the task's data.

Both estimators take ``hvp``, a function ``[B, P] -> [B, P]`` applying B independent Hessians (one per row), so
B checkpoints are iterated together: the loss summed over models has a block-diagonal Hessian, so one double
backward through the batched forward pass (:func:`wslviz.core.batched.forward`; module architectures run
``vmap(functional_call)`` there) gives every model's own product. Only learned parameters are probed (BatchNorm
running statistics are data, not weights: :attr:`~wslviz.core.layout.ParamInfo.trainable`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import forward
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.tasks import Task
from wslviz.understand.landscape import require_task

HVP = Callable[[torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None] | None
N_EXAMPLES = 512
"""Examples in the fixed batch the loss is measured on (the first ones of the split)."""


def trainable_mask(arch: ArchitectureLike) -> torch.Tensor:
    """``[P]`` float mask: 1 on learned parameters, 0 on running statistics (which the Hessian leaves out)."""
    mask = torch.zeros(arch.n_params)
    for p in arch.layout:
        if p.trainable:
            mask[p.offset:p.offset + p.numel] = 1.0
    return mask


def loss_hvp(arch: ArchitectureLike, task: Task, weights: torch.Tensor, split: str = "train",
             n_examples: int = N_EXAMPLES) -> tuple[HVP, torch.Tensor]:
    """Hessian-vector products of the loss of B models ``weights`` [B, P] on the first ``n_examples`` examples of
    ``split``: returns ``(hvp, loss [B])`` where ``hvp(v)`` maps ``v`` [B, P] to ``H_b v_b`` per row.

    The gradient is computed once with its graph kept (``create_graph``); each product is one more backward pass
    through it (double backward)."""
    x, y = require_task(task).split(split)
    x, y = x[:n_examples], y[:n_examples]
    w = weights.detach().float().clone().requires_grad_(True)
    mask = trainable_mask(arch)
    with torch.enable_grad():
        out, _ = forward(arch, w, x)
        loss = task.loss(out, y)
        (grad,) = torch.autograd.grad(loss.sum(), w, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            (hv,) = torch.autograd.grad(grad, w, grad_outputs=v * mask, retain_graph=True)
        return hv.detach() * mask

    return hvp, loss.detach()


def _unit_rows(v: torch.Tensor) -> torch.Tensor:
    norm = v.norm(dim=1, keepdim=True)
    return v / torch.where(norm > 0, norm, 1.0)


def top_eigenvalue(hvp: HVP, shape: tuple[int, int], n_iter: int = 50, tol: float = 1e-4, seed: int = 0,
                   mask: torch.Tensor | None = None, progress: Progress = None) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalue of largest magnitude of each of B Hessians by power iteration (Yao et al. 2020, PyHessian).

    ``hvp`` maps ``[B, P]`` to ``[B, P]`` (``shape = (B, P)``); the start vectors are Gaussian with ``seed``
    (zero where ``mask`` [P] is 0). Each step sets ``v <- H v / |H v|`` and the estimate to the Rayleigh quotient
    ``v . H v``; it stops after ``n_iter`` steps or once every estimate changed by less than ``tol`` relative to
    its size. Returns ``(eigenvalues [B], iterations [B])`` (steps until each row converged)."""
    gen = torch.Generator().manual_seed(int(seed))
    v = torch.randn(shape, generator=gen)
    if mask is not None:
        v = v * mask
    v = _unit_rows(v)
    estimate = torch.full((shape[0],), float("nan"))
    steps = torch.full((shape[0],), n_iter)
    done = torch.zeros(shape[0], dtype=torch.bool)
    for it in range(n_iter):
        hv = hvp(v)
        new = (v * hv).sum(1)
        converged = (new - estimate).abs() <= tol * new.abs().clamp_min(1e-12)
        steps = torch.where(converged & ~done, torch.full_like(steps, it + 1), steps)
        done |= converged
        estimate = new
        v = _unit_rows(hv)
        if progress:
            progress(it + 1, n_iter)
        if bool(done.all()):
            break
    return estimate.numpy().astype(np.float64), steps.numpy()


def hutchinson_trace(hvp: HVP, shape: tuple[int, int], n_probes: int = 64, seed: int = 0,
                     mask: torch.Tensor | None = None, progress: Progress = None) -> tuple[np.ndarray, np.ndarray]:
    """Hutchinson's (1989) estimate of the trace of each of B Hessians: the mean of ``v . H v`` over ``n_probes``
    Rademacher probes ``v`` (entries +-1 with ``seed``; zero where ``mask`` [P] is 0, so the trace is over the
    masked coordinates). Unbiased, with variance ``2 (|H|_F^2 - sum_i H_ii^2)`` per probe.
    Returns ``(trace [B], standard error [B])``."""
    gen = torch.Generator().manual_seed(int(seed))
    samples = torch.empty(n_probes, shape[0], dtype=torch.float64)
    for k in range(n_probes):
        v = torch.randint(0, 2, shape, generator=gen).float().mul_(2).sub_(1)
        if mask is not None:
            v = v * mask
        samples[k] = (v * hvp(v)).sum(1).double()
        if progress:
            progress(k + 1, n_probes)
    se = samples.std(0) / np.sqrt(n_probes) if n_probes > 1 else torch.full((shape[0],), float("nan"))
    return samples.mean(0).numpy(), se.numpy()


def sharpness(arch: ArchitectureLike, task: Task, weights: torch.Tensor, split: str = "train",
              n_examples: int = N_EXAMPLES, n_iter: int = 50, tol: float = 1e-4, n_probes: int = 64,
              seed: int = 0, progress: Progress = None) -> pd.DataFrame:
    """Top Hessian eigenvalue (power iteration) and Hutchinson trace of the loss of B checkpoints ``weights``
    [B, P], on the fixed batch of the first ``n_examples`` examples of ``split`` (all B models iterate together;
    ``n_iter`` and ``tol`` as in :func:`top_eigenvalue`, ``n_probes`` as in :func:`hutchinson_trace`).

    Returns a DataFrame with one row per checkpoint: ``loss`` (on that batch), ``top_eigenvalue``,
    ``iterations``, ``trace``, ``trace_se`` (standard error of the trace estimate). ``progress`` counts the
    power iterations and then the probes."""
    if weights.dim() != 2 or weights.shape[1] != arch.n_params:
        raise ValueError(f"weights must be [B, {arch.n_params}], got {list(weights.shape)}")
    hvp, loss = loss_hvp(arch, task, weights, split, n_examples)
    shape, mask = tuple(weights.shape), trainable_mask(arch)
    total = n_iter + n_probes
    eig, steps = top_eigenvalue(hvp, shape, n_iter, tol, seed, mask,
                                progress=(lambda d, n: progress(d, total)) if progress else None)
    trace, se = hutchinson_trace(hvp, shape, n_probes, seed=seed, mask=mask,
                                 progress=(lambda d, n: progress(n_iter + d, total)) if progress else None)
    if progress:
        progress(total, total)
    return pd.DataFrame({"loss": loss.numpy().astype(np.float64), "top_eigenvalue": eig, "iterations": steps,
                         "trace": trace, "trace_se": se})
