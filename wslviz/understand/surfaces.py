"""Loss surfaces: loss and accuracy on planes through weight space, and on random filter-normalised directions.

Every surface is a grid of models ``origin + x d0 + y d1`` evaluated in one batch through
:func:`wslviz.core.evaluation.evaluate_affine` (the first layer of every grid point from three precomputed
products), so a 51x51 plane is 2,601 models evaluated together.

* :func:`plane` through three models (Garipov et al., "Loss Surfaces, Mode Connectivity, and Fast Ensembling
  of DNNs", NeurIPS 2018), with :func:`plane_basis`;
* :func:`random_plane` / :func:`random_line` along random filter-normalised directions
  (:func:`filter_normalized_directions`; Li et al., "Visualizing the Loss Landscape of Neural Nets",
  NeurIPS 2018);
* :func:`trajectory`: a model's checkpoints (:func:`trajectory_rows`) on the PCA plane of its own trajectory
  (:func:`trajectory_pca`; Li et al. Sec. 7).

Paths between two models are in :mod:`wslviz.understand.landscape`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import evaluate_affine
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.tasks import Task
from wslviz.understand.landscape import align_pair, evaluate_points, model_vector, require_task

Progress = Callable[[int, int], None] | None


@dataclass
class Surface:
    """Loss and accuracy on a grid in a 2D affine slice of weight space.

    The point at plane coordinates (x, y) is ``origin + x * directions[0] + y * directions[1]``.
    ``x`` [nx], ``y`` [ny]; ``loss`` and ``accuracy`` [ny, nx] (row = y). ``points``: named models and
    their plane coordinates (for marking); ``path``: a trajectory's coordinates [T, 2] (or None);
    ``info``: what the axes mean (for labels) and method-specific numbers; ``undefined`` (grid points that are not
    networks, with ``undefined_reason``) and ``diverged`` (points whose loss is not finite) when there are any: their
    loss and accuracy are NaN.
    """

    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    origin: torch.Tensor
    directions: torch.Tensor
    points: dict[str, tuple[float, float]] = field(default_factory=dict)
    path: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def weights_at(self, xy: np.ndarray | Sequence[float]) -> torch.Tensor:
        """Weights at plane coordinates ``xy`` [2] or [n, 2] -> [P] or [n, P]."""
        xy = torch.as_tensor(np.asarray(xy, dtype=np.float64))
        single = xy.dim() == 1
        xy = xy.reshape(-1, 2)
        w = self.origin.double().unsqueeze(0) + xy @ self.directions.double()
        w = w.float()
        return w[0] if single else w


def surface(arch: ArchitectureLike, task: Task, origin: torch.Tensor, directions: torch.Tensor, x: np.ndarray,
            y: np.ndarray, split: str = "test", progress: Progress = None, **fields: Any) -> Surface:
    """Evaluate the grid ``x`` [nx] x ``y`` [ny] of the plane ``origin + x d0 + y d1`` (``origin`` [P],
    ``directions`` [2, P]) in one batch of ``nx * ny`` models; extra keyword arguments fill the
    :class:`Surface`'s ``points`` / ``path`` / ``info``."""
    origin = model_vector(arch, origin, "origin")
    if directions.shape != (2, arch.n_params):
        raise ValueError(f"directions must be [2, {arch.n_params}], got {list(directions.shape)}")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    s = Surface(x=x, y=y, loss=np.empty(0), accuracy=np.empty(0), origin=origin, directions=directions.float(),
                **fields)
    # the grid points are affine in (x, y): evaluate_affine computes the first layer from three products
    coords = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], 1))
    r = evaluate_affine(arch, require_task(task), origin, s.directions, coords, split=split, progress=progress)
    loss, acc = r["loss"].numpy().astype(np.float64), r["accuracy"].numpy().astype(np.float64)
    # far enough from the models, a plane through BatchNorm networks reaches negative running variances: those
    # points are not networks (their loss is NaN); they are marked and said, not drawn as if they were
    variances = [p.slice for p in arch.layout if p.role == "running_var"]
    if variances:
        idx = torch.cat([torch.arange(p.start, p.stop) for p in variances])
        var = origin.double()[idx] + coords @ s.directions.double()[:, idx]
        invalid = (var < 0).any(1).numpy()
        loss[invalid], acc[invalid] = np.nan, np.nan
        s.info["undefined"] = int(invalid.sum())
        s.info["undefined_reason"] = "a BatchNorm running variance is negative there: not a network"
    diverged = int((~np.isfinite(loss)).sum()) - int(s.info.get("undefined", 0))
    if diverged:
        s.info["diverged"] = diverged
    s.loss, s.accuracy = loss.reshape(len(y), len(x)), acc.reshape(len(y), len(x))
    return s


def _grid_around(coords: np.ndarray, resolution: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid axes covering ``coords`` [n, 2] plus ``margin`` times the larger extent on every side."""
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    lo, hi = coords.min(0), coords.max(0)
    pad = margin * max(float((hi - lo).max()), 1e-12)
    return np.linspace(lo[0] - pad, hi[0] + pad, resolution), np.linspace(lo[1] - pad, hi[1] + pad, resolution)


def plane_basis(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """Orthonormal basis of the plane through ``a``, ``b``, ``c`` (each [P]) and their coordinates.

    ``u = b - a``, ``v`` = Gram-Schmidt of ``c - a`` against ``u`` (Garipov et al. 2018), both
    normalised (computed in float64). Returns ``(directions [2, P], coords [3, 2])``: ``a`` at (0, 0),
    ``b`` at (|b - a|, 0), ``c`` at its projections. Raises ``ValueError`` for collinear models."""
    a, b, c = a.double(), b.double(), c.double()
    u = b - a
    nu = u.norm()
    if nu == 0:
        raise ValueError("the first two models are identical: they do not span a line")
    u = u / nu
    v = (c - a) - ((c - a) @ u) * u
    nv = v.norm()
    if nv <= 1e-5 * float((c - a).norm()):  # float32 inputs: below this the angle is rounding noise
        raise ValueError("the three models are collinear: they do not span a plane")
    v = v / nv
    coords = np.array([[0.0, 0.0], [float(nu), 0.0], [float((c - a) @ u), float(nv)]])
    return torch.stack([u, v]).float(), coords


def plane(arch: ArchitectureLike, task: Task, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, resolution: int = 21,
          margin: float = 0.2, method: str = "naive", split: str = "test", seed: int = 0, progress: Progress = None
          ) -> Surface:
    """Loss surface on the plane through three models ``a``, ``b``, ``c`` ([P] each; Garipov et al. 2018).

    With ``method`` ``weight``/``activation``, ``b`` and ``c`` are first aligned to ``a``. The grid is
    ``resolution`` x ``resolution`` over the three points' bounding box plus ``margin`` times its larger
    side; coordinates are Euclidean distances in weight space. ``points`` holds ``a``, ``b``, ``c``.
    """
    a, b, c = model_vector(arch, a, "a"), model_vector(arch, b, "b"), model_vector(arch, c, "c")
    b, c = (align_pair(arch, task, a, m, method, seed=seed) for m in (b, c))
    directions, coords = plane_basis(a, b, c)
    x, y = _grid_around(coords, resolution, margin)
    return surface(arch, task, a, directions, x, y, split, progress,
                   points=dict(zip("abc", map(tuple, coords), strict=True)),
                   info={"kind": "plane", "method": method, "x_label": "along b - a (weight-space distance)",
                         "y_label": "towards c, orthogonal (weight-space distance)"})


def filter_normalized_directions(arch: ArchitectureLike, weights: torch.Tensor, n: int = 2,
                                 seed: int = 0) -> torch.Tensor:
    """``n`` random filter-normalised directions around one model ``weights`` [P] -> ``[n, P]``.

    Li et al. 2018: each direction is Gaussian; every filter (a conv output channel, or a linear
    layer's output neuron: one row of the weight along dim 0) is rescaled to the Frobenius norm of the
    model's corresponding filter; biases and normalisation parameters/statistics get 0 (the direction
    does not move them). Reproducible: the same ``seed`` gives the same directions.
    """
    w = model_vector(arch, weights, "weights")
    gen = torch.Generator().manual_seed(int(seed))
    d = torch.randn(n, arch.n_params, generator=gen)
    out = torch.zeros_like(d)
    for p in arch.layout:
        if p.role != "weight" or arch.layers[p.layer]["type"] not in ("linear", "conv2d"):
            continue
        rows = d[:, p.slice].reshape(n, p.shape[0], -1)
        target = w[p.slice].reshape(1, p.shape[0], -1).norm(dim=-1, keepdim=True)
        norm = rows.norm(dim=-1, keepdim=True)
        out[:, p.slice] = (rows * target / torch.where(norm > 0, norm, 1.0)).reshape(n, -1)
    return out


def random_plane(arch: ArchitectureLike, task: Task, weights: torch.Tensor, resolution: int = 21, span: float = 1.0,
                 seed: int = 0, split: str = "test", progress: Progress = None) -> Surface:
    """Loss surface around one model on two random filter-normalised directions (Li et al. 2018).

    Grid: ``resolution`` x ``resolution`` over ``[-span, span]^2`` in units of the directions (1 = every
    filter moved by its own norm). The model is at (0, 0) (``points["model"]``)."""
    w = model_vector(arch, weights, "weights")
    d = filter_normalized_directions(arch, w, 2, seed)
    axis = np.linspace(-span, span, resolution)
    return surface(arch, task, w, d, axis, axis, split, progress, points={"model": (0.0, 0.0)},
                   info={"kind": "random", "seed": seed, "x_label": "direction 1 (filter-normalised)",
                         "y_label": "direction 2 (filter-normalised)"})


def random_line(arch: ArchitectureLike, task: Task, weights: torch.Tensor, steps: int = 51, span: float = 1.0,
                seed: int = 0, split: str = "test", progress: Progress = None) -> pd.DataFrame:
    """Loss and accuracy along one random filter-normalised direction, ``alpha`` in ``[-span, span]``
    (Li et al. 2018). The direction is the first of :func:`filter_normalized_directions` with ``seed``,
    so the line is the x axis of :func:`random_plane` with the same seed. Columns ``alpha``, ``loss``,
    ``accuracy``; alpha = 0 (the model itself) is always on the grid."""
    w = model_vector(arch, weights, "weights")
    d = filter_normalized_directions(arch, w, 2, seed)[0]
    alpha = np.union1d(np.linspace(-span, span, steps), [0.0])
    points = w.unsqueeze(0) + torch.as_tensor(alpha, dtype=torch.float32).unsqueeze(1) * d.unsqueeze(0)
    loss, acc = evaluate_points(arch, task, points, split, progress)
    return pd.DataFrame({"alpha": alpha, "loss": loss, "accuracy": acc})


def trajectory_pca(checkpoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """PCA plane of a training trajectory ``checkpoints`` [T, P] (ordered, the last is the final model).

    Li et al. 2018, Sec. 7: the offsets ``checkpoint_i - final`` are decomposed by SVD (uncentred, so
    that the plane passes through the final model, where the surface is drawn). Returns
    ``(origin [P], directions [2, P], coords [T, 2], explained [2])``: coordinates of every checkpoint
    on the plane and the share of the offsets' squared norm each direction explains. A trajectory
    lying in a plane through the final model is reproduced exactly by ``origin + coords @ directions``.
    """
    if checkpoints.dim() != 2 or checkpoints.shape[0] < 3:
        raise ValueError(f"a trajectory needs at least 3 checkpoints [T, P], got {list(checkpoints.shape)}")
    w = checkpoints.double()
    origin = w[-1]
    offsets = w - origin
    _, s, vh = torch.linalg.svd(offsets, full_matrices=False)
    directions = vh[:2]
    total = float((s ** 2).sum())
    explained = (s[:2] ** 2 / total).numpy() if total > 0 else np.zeros(2)
    coords = (offsets @ directions.T).numpy()
    return origin.float(), directions.float(), coords, explained


def trajectory(arch: ArchitectureLike, task: Task, checkpoints: torch.Tensor, resolution: int = 21, margin: float = 0.2,
               split: str = "test", progress: Progress = None) -> Surface:
    """One model's checkpoints [T, P] (in training order) drawn on the loss surface of the PCA plane of
    its own trajectory (Li et al. 2018). ``path`` holds the checkpoints' coordinates [T, 2];
    ``points["final"]`` the final model; ``info["explained"]`` the variance share per axis."""
    origin, directions, coords, explained = trajectory_pca(checkpoints)
    x, y = _grid_around(coords, resolution, margin)
    return surface(arch, task, origin, directions, x, y, split, progress, path=coords,
                   points={"start": tuple(coords[0]), "final": tuple(coords[-1])},
                   info={"kind": "trajectory", "explained": explained.tolist(),
                         "x_label": f"PC 1 ({100 * explained[0]:.1f}% of the path)",
                         "y_label": f"PC 2 ({100 * explained[1]:.1f}% of the path)"})


def trajectory_rows(metadata: pd.DataFrame, model_id: Any, at_most: int | None = None) -> np.ndarray:
    """Row indices of one model's checkpoints (same ``model_id``), ordered by ``epoch``; with ``at_most``, that
    many of them evenly spread over the run (the first and the last always among them)."""
    for col in ("model_id", "epoch"):
        if col not in metadata:
            raise ValueError(f"trajectories need a {col!r} column in the metadata")
    rows = np.flatnonzero(metadata["model_id"].to_numpy() == model_id)
    if len(rows) == 0:
        raise ValueError(f"no checkpoint has model_id {model_id!r}")
    rows = rows[np.argsort(metadata["epoch"].to_numpy()[rows], kind="stable")]
    if at_most is not None and len(rows) > at_most:
        rows = rows[np.unique(np.linspace(0, len(rows) - 1, at_most).round().astype(int))]
    return rows
