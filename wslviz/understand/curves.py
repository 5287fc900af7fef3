"""Curves between two models: a quadratic Bezier curve whose control point is trained for low loss (Garipov et al.,
"Loss Surfaces, Mode Connectivity, and Fast Ensembling of DNNs", NeurIPS 2018).

:func:`bezier_curve` trains the control point with the batched forward pass (the curve's points at several t as
one batch of models) and evaluates the curve and the straight line in one batch; :func:`bezier_points` gives the
curve's weights. Straight paths are in :mod:`wslviz.understand.landscape`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import forward
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.tasks import Task
from wslviz.understand.landscape import (
    BARRIER_STEPS,
    align_pair,
    evaluate_points,
    line_points,
    model_vector,
    require_task,
    t_grid,
)

Progress = Callable[[int, int], None] | None


@dataclass
class BezierFit:
    """A trained quadratic Bezier curve ``(1-t)^2 a + 2 t (1-t) control + t^2 b``.

    ``curve``: loss/accuracy along it (columns ``t``, ``loss``, ``accuracy``); ``line``: the same for
    the straight segment; ``control`` [P]; ``history``: mean training loss per iteration."""

    curve: pd.DataFrame
    line: pd.DataFrame
    control: torch.Tensor
    history: np.ndarray


def bezier_points(a: torch.Tensor, control: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points of the quadratic Bezier curve at ``t`` [n] -> ``[n, P]`` (exactly ``a`` at 0, ``b`` at 1)."""
    t = t.to(a.dtype).unsqueeze(1)
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * control + t ** 2 * b


def bezier_curve(arch: ArchitectureLike, task: Task, a: torch.Tensor, b: torch.Tensor, steps: int = BARRIER_STEPS,
                 n_iter: int = 200, n_t: int = 8, batch_size: int = 128, lr: float = 0.02, seed: int = 0,
                 split: str = "test", progress: Progress = None) -> BezierFit:
    """Train the control point of a quadratic Bezier curve from ``a`` to ``b`` (both [P]) for low
    training loss along the curve (Garipov et al. 2018), and evaluate the curve and the straight line.

    The control point starts at the midpoint (so the curve starts as the straight line). Each of
    ``n_iter`` Adam steps draws ``n_t`` stratified t in (0, 1) and one minibatch of ``batch_size``
    training examples, and descends the mean loss of the ``n_t`` curve points, evaluated together as one
    batch of models. ``progress`` is called every 10 iterations and once for the final evaluation.
    """
    task = require_task(task)
    a, b = model_vector(arch, a, "a"), model_vector(arch, b, "b")
    gen = torch.Generator().manual_seed(int(seed))
    control = ((a + b) / 2).clone().requires_grad_(True)
    opt = torch.optim.Adam([control], lr=lr)
    x, y = task.x_train, task.y_train
    history = np.empty(n_iter)
    total = n_iter + 1
    threads = torch.get_num_threads()
    try:
        # steps this small run faster on one thread: synchronising threads costs more than the work
        torch.set_num_threads(1)
        for it in range(n_iter):
            t = (torch.arange(n_t) + torch.rand(n_t, generator=gen)) / n_t
            idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
            out, _ = forward(arch, bezier_points(a, control, b, t), x[idx])
            loss = task.loss(out, y[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            history[it] = loss.item()
            if progress and (it + 1) % 10 == 0:
                progress(it + 1, total)
    finally:
        torch.set_num_threads(threads)
    control = control.detach()
    tg = t_grid(steps)
    pts = torch.cat([bezier_points(a, control, b, torch.as_tensor(tg, dtype=torch.float32)), line_points(a, b, tg)])
    loss, acc = evaluate_points(arch, task, pts, split, None)
    if progress:
        progress(total, total)
    n = len(tg)
    curve = pd.DataFrame({"t": tg, "loss": loss[:n], "accuracy": acc[:n]})
    line = pd.DataFrame({"t": tg, "loss": loss[n:], "accuracy": acc[n:]})
    return BezierFit(curve=curve, line=line, control=control, history=history)


def bezier_between(arch: ArchitectureLike, task: Task, a: torch.Tensor, b: torch.Tensor, align: bool = False,
                   n_iter: int = 200, seed: int = 0, split: str = "test", progress: Progress = None) -> BezierFit:
    """:func:`bezier_curve` from ``a`` to ``b`` ([P] each), with ``b`` first weight-matched to ``a`` when ``align``
    (the curve then connects ``a`` to a copy of ``b`` in ``a``'s basis: the same function as ``b``)."""
    end = align_pair(arch, task, a, b, "weight") if align else b
    return bezier_curve(arch, task, a, end, n_iter=n_iter, seed=seed, split=split, progress=progress)
