"""Loss landscapes and mode connectivity: what lies on lines, planes and curves through weight space.

Every function here builds all the weight vectors it needs as one ``[G, P]`` matrix and evaluates them
in one call of the batched evaluator :func:`wslviz.core.evaluation.evaluate` (no per-point Python loop), so
a 51x51 plane is 2,601 models evaluated together.

* Paths: :func:`interpolate` (loss and accuracy along the straight line ``(1 - t) a + t b``; the t grid
  holds 0 and 1 exactly, also when it extrapolates), :func:`loss_barrier` / :func:`accuracy_barrier`
  (Frankle et al. 2020; Entezari et al. 2022), :func:`paths` (naive, weight-matched and
  activation-matched paths in one table: Ainsworth et al., "Git Re-Basin", ICLR 2023),
  :func:`pair_barriers` and :func:`barrier_matrix`.
* Planes: :func:`plane` through three models (Garipov et al., "Loss Surfaces, Mode Connectivity, and
  Fast Ensembling of DNNs", NeurIPS 2018), :func:`random_plane` / :func:`random_line` along random
  filter-normalised directions (Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS
  2018), :func:`trajectory` (a model's checkpoints on the PCA plane of its own trajectory, Li et al.
  Sec. 7).
* Curves: :func:`bezier_curve`, a quadratic Bezier curve whose control point is trained for low loss
  (Garipov et al. 2018).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.arch import Architecture
from wslviz.core.batched import forward
from wslviz.core.evaluation import evaluate, evaluate_affine
from wslviz.core.tasks import Task
from wslviz.understand.align import activation_matching, weight_matching

Progress = Callable[[int, int], None] | None
METHODS = ("naive", "weight", "activation")
"""Path methods: ``naive`` (the models as they are), ``weight`` / ``activation`` (the second model
re-expressed in the first one's basis by weight / activation matching, :mod:`wslviz.understand.align`)."""

BARRIER_STEPS = 25
"""The one default resolution of a path (points on t in [0, 1]) wherever a barrier is measured, so the same
pair of models gets the same barrier on every page (the barrier is a maximum over the grid's points, so it
depends on the grid: 0.1216 on 11 points against 0.1265 on 25 for one moons pair)."""

_EXACT = 1e-9  # grid points this close to t = 0 or 1 are replaced by the exact endpoint


# ------------------------------------------------------------------ helpers
def _vector(arch: Architecture, w: torch.Tensor, name: str) -> torch.Tensor:
    w = torch.as_tensor(w)
    if w.dim() != 1 or w.shape[0] != arch.n_params:
        raise ValueError(f"{name} must be one model's weights [P] with P = {arch.n_params}, got {list(w.shape)}")
    return w.detach().float()


def _check_task(task: Task | None) -> Task:
    if task is None:
        raise ValueError("landscapes need evaluation data: this zoo has no task (attach a .npz with x and y)")
    return task


def _evaluate(arch: Architecture, task: Task, weights: torch.Tensor, split: str,
              progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    r = evaluate(arch, _check_task(task), weights, split=split, progress=progress)
    return r["loss"].numpy().astype(np.float64), r["accuracy"].numpy().astype(np.float64)


def _offset(progress: Progress, start: int, total: int) -> Progress:
    """A callback reporting a later stage's ``(done, n)`` as ``(start + done, total)`` of the whole job."""
    if progress is None:
        return None
    return lambda done, n: progress(start + done, total)


def t_grid(steps: int = 25, t_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """``steps`` evenly spaced values over ``t_range`` plus 0 and 1 exactly (when inside the range).

    A grid point within 1e-9 of 0 or 1 is replaced by the exact value, so ``linspace(-0.5, 1.5, 25)``
    keeps 25 points; otherwise the endpoints are added (up to ``steps + 2`` points)."""
    lo, hi = float(t_range[0]), float(t_range[1])
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if not lo < hi:
        raise ValueError(f"t_range must be increasing, got {t_range}")
    if lo > 0.0 or hi < 1.0:
        raise ValueError(f"t_range must contain [0, 1] (both endpoints), got {t_range}")
    t = np.linspace(lo, hi, steps)
    t = t[(np.abs(t) > _EXACT) & (np.abs(t - 1.0) > _EXACT)]
    return np.union1d(t, [0.0, 1.0])


def _line(a: torch.Tensor, b: torch.Tensor, t: np.ndarray) -> torch.Tensor:
    """``(1 - t) a + t b`` for every t -> ``[len(t), P]``.

    Written as ``a + t (b - a)`` up to t = 1/2 and ``b + (1 - t) (a - b)`` beyond, so that the point is
    exactly ``a`` at t = 0, exactly ``b`` at t = 1, and exactly ``a`` everywhere when ``a == b``."""
    tt = torch.as_tensor(t, dtype=torch.float32).unsqueeze(1)
    a, b = a.unsqueeze(0), b.unsqueeze(0)
    return torch.where(tt <= 0.5, a + tt * (b - a), b + (1 - tt) * (a - b))


def align_pair(arch: Architecture, task: Task | None, a: torch.Tensor, b: torch.Tensor, method: str = "weight",
               seed: int = 0) -> torch.Tensor:
    """``b`` [P] (or [B, P]) as seen from ``a`` [P]: unchanged for ``naive``, else re-expressed in ``a``'s
    basis by weight or activation matching (same function as ``b``)."""
    if method not in METHODS:
        raise ValueError(f"unknown path method {method!r}; known: {', '.join(METHODS)}")
    if method == "naive":
        return b.float()
    if method == "weight":
        return weight_matching(arch, a, b, seed=seed)
    return activation_matching(arch, _check_task(task), a, b, seed=seed)


# ------------------------------------------------------------------ paths
def interpolate(
    arch: Architecture,
    task: Task,
    a: torch.Tensor,
    b: torch.Tensor,
    steps: int = BARRIER_STEPS,
    t_range: tuple[float, float] = (0.0, 1.0),
    split: str = "test",
    progress: Progress = None,
) -> pd.DataFrame:
    """Loss and accuracy along the straight line from ``a`` (t = 0) to ``b`` (t = 1), both [P].

    The grid is :func:`t_grid` (``steps`` points over ``t_range``, holding 0 and 1 exactly; e.g.
    ``t_range=(-0.5, 1.5)`` extrapolates past both models). All points are evaluated in one batch.
    Returns a DataFrame with columns ``t``, ``loss``, ``accuracy``.
    """
    a, b = _vector(arch, a, "a"), _vector(arch, b, "b")
    t = t_grid(steps, t_range)
    loss, acc = _evaluate(arch, task, _line(a, b, t), split, progress)
    return pd.DataFrame({"t": t, "loss": loss, "accuracy": acc})


def _endpoint_rows(curve: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    for col in ("t", "loss"):
        if col not in curve:
            raise ValueError(f"a curve needs a column {col!r} (see interpolate), got {list(curve.columns)}")
    t = curve["t"].to_numpy(dtype=float)
    at0, at1 = np.flatnonzero(t == 0.0), np.flatnonzero(t == 1.0)
    if len(at0) == 0 or len(at1) == 0:
        raise ValueError("a curve must hold t = 0 and t = 1 exactly to measure a barrier")
    inside = curve[(t >= 0.0) & (t <= 1.0)]
    return curve.iloc[at0[0]], curve.iloc[at1[0]], inside


def loss_barrier(curve: pd.DataFrame) -> float:
    """Max over t in [0, 1] of ``loss(t) - ((1 - t) loss(0) + t loss(1))`` (Frankle et al. 2020;
    Entezari et al. 2022). 0 for a path along which the loss never rises above the chord."""
    first, last, inside = _endpoint_rows(curve)
    t = inside["t"].to_numpy(dtype=float)
    chord = (1 - t) * float(first["loss"]) + t * float(last["loss"])
    return float(np.max(inside["loss"].to_numpy(dtype=float) - chord))


def accuracy_barrier(curve: pd.DataFrame) -> float:
    """Max over t in [0, 1] of ``((1 - t) acc(0) + t acc(1)) - acc(t)``: the worst accuracy drop below
    the chord between the endpoints' accuracies."""
    first, last, inside = _endpoint_rows(curve)
    t = inside["t"].to_numpy(dtype=float)
    chord = (1 - t) * float(first["accuracy"]) + t * float(last["accuracy"])
    return float(np.max(chord - inside["accuracy"].to_numpy(dtype=float)))


def paths(
    arch: Architecture,
    task: Task,
    a: torch.Tensor,
    b: torch.Tensor,
    methods: Sequence[str] = METHODS,
    steps: int = BARRIER_STEPS,
    t_range: tuple[float, float] = (0.0, 1.0),
    split: str = "test",
    seed: int = 0,
    progress: Progress = None,
) -> pd.DataFrame:
    """Straight paths from ``a`` to ``b`` for each method (``naive``: ``b`` as it is; ``weight`` /
    ``activation``: ``b`` aligned to ``a`` first), evaluated together in one batch.

    Returns one long DataFrame with columns ``method``, ``t``, ``loss``, ``accuracy`` (one figure's data).
    """
    a, b = _vector(arch, a, "a"), _vector(arch, b, "b")
    t = t_grid(steps, t_range)
    ends = [align_pair(arch, task, a, b, m, seed=seed) for m in methods]
    weights = torch.cat([_line(a, e, t) for e in ends])
    loss, acc = _evaluate(arch, task, weights, split, progress)
    return pd.DataFrame({"method": np.repeat(list(methods), len(t)), "t": np.tile(t, len(ends)),
                         "loss": loss, "accuracy": acc})


def barriers(curves: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Per group of a long curve table (e.g. :func:`paths`'s methods): loss and accuracy barrier."""
    rows = [{by: key, "loss_barrier": loss_barrier(g), "accuracy_barrier": accuracy_barrier(g)}
            for key, g in curves.groupby(by, sort=False)]
    return pd.DataFrame(rows)


def _barriers_of(t: np.ndarray, values: np.ndarray, sign: float) -> np.ndarray:
    """Barrier of each row of ``values`` [n, len(t)] over t in [0, 1] (``sign`` -1 for accuracy)."""
    i0, i1 = int(np.flatnonzero(t == 0.0)[0]), int(np.flatnonzero(t == 1.0)[0])
    inside = (t >= 0.0) & (t <= 1.0)
    chord = (1 - t[None]) * values[:, i0:i0 + 1] + t[None] * values[:, i1:i1 + 1]
    return np.max(sign * (values - chord)[:, inside], axis=1)


def pair_barriers(
    arch: Architecture,
    task: Task,
    first: torch.Tensor,
    second: torch.Tensor,
    method: str = "naive",
    steps: int = BARRIER_STEPS,
    split: str = "test",
    seed: int = 0,
    progress: Progress = None,
) -> pd.DataFrame:
    """Barriers of many pairs: the straight path from ``first[i]`` to ``second[i]`` (both [N, P]; with
    ``method`` ``weight``/``activation`` ``second[i]`` is aligned to ``first[i]`` first). All N paths are
    evaluated in one batch. Returns a DataFrame with ``loss_barrier``, ``accuracy_barrier`` per pair."""
    if first.dim() != 2 or first.shape != second.shape or first.shape[1] != arch.n_params:
        raise ValueError(f"first and second must both be [N, {arch.n_params}], got {list(first.shape)} and "
                         f"{list(second.shape)}")
    first, second = first.float(), second.float()
    t = t_grid(steps)
    n_align = len(first) if method != "naive" else 0
    total = n_align + len(first) * len(t)
    if n_align:
        aligned = []
        for k, (f, s) in enumerate(zip(first, second, strict=True)):
            aligned.append(align_pair(arch, task, f, s, method, seed=seed))
            if progress:
                progress(k + 1, total)
        second = torch.stack(aligned)
    weights = torch.cat([_line(f, s, t) for f, s in zip(first, second, strict=True)])
    loss, acc = _evaluate(arch, task, weights, split, _offset(progress, n_align, total))
    loss, acc = loss.reshape(len(first), len(t)), acc.reshape(len(first), len(t))
    return pd.DataFrame({"loss_barrier": _barriers_of(t, loss, 1.0), "accuracy_barrier": _barriers_of(t, acc, -1.0)})


def barrier_matrix(
    arch: Architecture,
    task: Task,
    weights: torch.Tensor,
    method: str = "naive",
    steps: int = BARRIER_STEPS,
    split: str = "test",
    seed: int = 0,
    progress: Progress = None,
) -> dict[str, np.ndarray]:
    """Pairwise barriers of K models ``weights`` [K, P] -> ``{"loss": [K, K], "accuracy": [K, K]}``.

    Entry (i, j), i < j, is the barrier of the path from model i to model j (aligned to model i unless
    ``method`` is ``naive``); the matrix is filled symmetrically with a zero diagonal. All
    ``K (K - 1) / 2`` paths are evaluated in one batch."""
    if weights.dim() != 2 or weights.shape[1] != arch.n_params:
        raise ValueError(f"weights must be [K, {arch.n_params}], got {list(weights.shape)}")
    k = weights.shape[0]
    out = {"loss": np.zeros((k, k)), "accuracy": np.zeros((k, k))}
    if k < 2:
        return out
    i, j = np.triu_indices(k, 1)
    w = weights.float()
    second = w[torch.as_tensor(j)]
    n_align = k - 1 if method != "naive" else 0
    total = n_align + len(i) * len(t_grid(steps))
    if n_align:
        parts = []
        for r in range(k - 1):  # one batched alignment per reference model
            parts.append(align_pair(arch, task, w[r], w[r + 1:], method, seed=seed))
            if progress:
                progress(r + 1, total)
        second = torch.cat(parts)
    bars = pair_barriers(arch, task, w[torch.as_tensor(i)], second, "naive", steps, split, seed,
                         _offset(progress, n_align, total))
    for key, col in (("loss", "loss_barrier"), ("accuracy", "accuracy_barrier")):
        out[key][i, j] = out[key][j, i] = bars[col].to_numpy()
    return out


# ------------------------------------------------------------------ surfaces
@dataclass
class Surface:
    """Loss and accuracy on a grid in a 2D affine slice of weight space.

    The point at plane coordinates (x, y) is ``origin + x * directions[0] + y * directions[1]``.
    ``x`` [nx], ``y`` [ny]; ``loss`` and ``accuracy`` [ny, nx] (row = y). ``points``: named models and
    their plane coordinates (for marking); ``path``: a trajectory's coordinates [T, 2] (or None);
    ``info``: what the axes mean (for labels) and method-specific numbers.
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


def surface(
    arch: Architecture,
    task: Task,
    origin: torch.Tensor,
    directions: torch.Tensor,
    x: np.ndarray,
    y: np.ndarray,
    split: str = "test",
    progress: Progress = None,
    **fields: Any,
) -> Surface:
    """Evaluate the grid ``x`` [nx] x ``y`` [ny] of the plane ``origin + x d0 + y d1`` (``origin`` [P],
    ``directions`` [2, P]) in one batch of ``nx * ny`` models; extra keyword arguments fill the
    :class:`Surface`'s ``points`` / ``path`` / ``info``."""
    origin = _vector(arch, origin, "origin")
    if directions.shape != (2, arch.n_params):
        raise ValueError(f"directions must be [2, {arch.n_params}], got {list(directions.shape)}")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    s = Surface(x=x, y=y, loss=np.empty(0), accuracy=np.empty(0), origin=origin, directions=directions.float(),
                **fields)
    # the grid points are affine in (x, y): evaluate_affine computes the first layer from three products
    coords = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], 1))
    r = evaluate_affine(arch, _check_task(task), origin, s.directions, coords, split=split, progress=progress)
    loss, acc = r["loss"].numpy().astype(np.float64), r["accuracy"].numpy().astype(np.float64)
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


def plane(
    arch: Architecture,
    task: Task,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    resolution: int = 21,
    margin: float = 0.2,
    method: str = "naive",
    split: str = "test",
    seed: int = 0,
    progress: Progress = None,
) -> Surface:
    """Loss surface on the plane through three models ``a``, ``b``, ``c`` ([P] each; Garipov et al. 2018).

    With ``method`` ``weight``/``activation``, ``b`` and ``c`` are first aligned to ``a``. The grid is
    ``resolution`` x ``resolution`` over the three points' bounding box plus ``margin`` times its larger
    side; coordinates are Euclidean distances in weight space. ``points`` holds ``a``, ``b``, ``c``.
    """
    a, b, c = _vector(arch, a, "a"), _vector(arch, b, "b"), _vector(arch, c, "c")
    b, c = (align_pair(arch, task, a, m, method, seed=seed) for m in (b, c))
    directions, coords = plane_basis(a, b, c)
    x, y = _grid_around(coords, resolution, margin)
    return surface(arch, task, a, directions, x, y, split, progress,
                   points=dict(zip("abc", map(tuple, coords), strict=True)),
                   info={"kind": "plane", "method": method, "x_label": "along b - a (weight-space distance)",
                         "y_label": "towards c, orthogonal (weight-space distance)"})


def filter_normalized_directions(arch: Architecture, weights: torch.Tensor, n: int = 2, seed: int = 0) -> torch.Tensor:
    """``n`` random filter-normalised directions around one model ``weights`` [P] -> ``[n, P]``.

    Li et al. 2018: each direction is Gaussian; every filter (a conv output channel, or a linear
    layer's output neuron: one row of the weight along dim 0) is rescaled to the Frobenius norm of the
    model's corresponding filter; biases and normalisation parameters/statistics get 0 (the direction
    does not move them). Reproducible: the same ``seed`` gives the same directions.
    """
    w = _vector(arch, weights, "weights")
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


def random_plane(
    arch: Architecture,
    task: Task,
    weights: torch.Tensor,
    resolution: int = 21,
    span: float = 1.0,
    seed: int = 0,
    split: str = "test",
    progress: Progress = None,
) -> Surface:
    """Loss surface around one model on two random filter-normalised directions (Li et al. 2018).

    Grid: ``resolution`` x ``resolution`` over ``[-span, span]^2`` in units of the directions (1 = every
    filter moved by its own norm). The model is at (0, 0) (``points["model"]``)."""
    w = _vector(arch, weights, "weights")
    d = filter_normalized_directions(arch, w, 2, seed)
    axis = np.linspace(-span, span, resolution)
    return surface(arch, task, w, d, axis, axis, split, progress, points={"model": (0.0, 0.0)},
                   info={"kind": "random", "seed": seed, "x_label": "direction 1 (filter-normalised)",
                         "y_label": "direction 2 (filter-normalised)"})


def random_line(
    arch: Architecture,
    task: Task,
    weights: torch.Tensor,
    steps: int = 51,
    span: float = 1.0,
    seed: int = 0,
    split: str = "test",
    progress: Progress = None,
) -> pd.DataFrame:
    """Loss and accuracy along one random filter-normalised direction, ``alpha`` in ``[-span, span]``
    (Li et al. 2018). The direction is the first of :func:`filter_normalized_directions` with ``seed``,
    so the line is the x axis of :func:`random_plane` with the same seed. Columns ``alpha``, ``loss``,
    ``accuracy``; alpha = 0 (the model itself) is always on the grid."""
    w = _vector(arch, weights, "weights")
    d = filter_normalized_directions(arch, w, 2, seed)[0]
    alpha = np.union1d(np.linspace(-span, span, steps), [0.0])
    points = w.unsqueeze(0) + torch.as_tensor(alpha, dtype=torch.float32).unsqueeze(1) * d.unsqueeze(0)
    loss, acc = _evaluate(arch, task, points, split, progress)
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


def trajectory(
    arch: Architecture,
    task: Task,
    checkpoints: torch.Tensor,
    resolution: int = 21,
    margin: float = 0.2,
    split: str = "test",
    progress: Progress = None,
) -> Surface:
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


# ------------------------------------------------------------------ curves
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


def bezier_curve(
    arch: Architecture,
    task: Task,
    a: torch.Tensor,
    b: torch.Tensor,
    steps: int = BARRIER_STEPS,
    n_iter: int = 200,
    n_t: int = 8,
    batch_size: int = 128,
    lr: float = 0.02,
    seed: int = 0,
    split: str = "test",
    progress: Progress = None,
) -> BezierFit:
    """Train the control point of a quadratic Bezier curve from ``a`` to ``b`` (both [P]) for low
    training loss along the curve (Garipov et al. 2018), and evaluate the curve and the straight line.

    The control point starts at the midpoint (so the curve starts as the straight line). Each of
    ``n_iter`` Adam steps draws ``n_t`` stratified t in (0, 1) and one minibatch of ``batch_size``
    training examples, and descends the mean loss of the ``n_t`` curve points, evaluated together as one
    batch of models. ``progress`` is called every 10 iterations and once for the final evaluation.
    """
    task = _check_task(task)
    a, b = _vector(arch, a, "a"), _vector(arch, b, "b")
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
    pts = torch.cat([bezier_points(a, control, b, torch.as_tensor(tg, dtype=torch.float32)), _line(a, b, tg)])
    loss, acc = _evaluate(arch, task, pts, split, None)
    if progress:
        progress(total, total)
    n = len(tg)
    curve = pd.DataFrame({"t": tg, "loss": loss[:n], "accuracy": acc[:n]})
    line = pd.DataFrame({"t": tg, "loss": loss[n:], "accuracy": acc[n:]})
    return BezierFit(curve=curve, line=line, control=control, history=history)


# ------------------------------------------------------------------ zoo helpers
def trajectory_rows(metadata: pd.DataFrame, model_id: Any) -> np.ndarray:
    """Row indices of one model's checkpoints (same ``model_id``), ordered by ``epoch``."""
    for col in ("model_id", "epoch"):
        if col not in metadata:
            raise ValueError(f"trajectories need a {col!r} column in the metadata")
    rows = np.flatnonzero(metadata["model_id"].to_numpy() == model_id)
    if len(rows) == 0:
        raise ValueError(f"no checkpoint has model_id {model_id!r}")
    order = np.argsort(metadata["epoch"].to_numpy()[rows], kind="stable")
    return rows[order]


def independent_pairs(metadata: pd.DataFrame, final_rows: np.ndarray, n_pairs: int, seed: int = 0,
                      match: Sequence[str] = ()) -> list[tuple[int, int]]:
    """Up to ``n_pairs`` disjoint pairs of final-checkpoint rows of independently trained models
    (different ``model_id`` and different ``seed``), optionally with equal values in the ``match``
    columns (same hyper-parameters), chosen at random with ``seed``."""
    meta = metadata.iloc[final_rows]
    rng = np.random.default_rng(seed)
    groups = meta.groupby(list(match), sort=True).indices if match else {None: np.arange(len(meta))}
    pairs: list[tuple[int, int]] = []
    for key in sorted(groups, key=str):
        members = list(rng.permutation(groups[key]))
        while len(members) >= 2 and len(pairs) < n_pairs:
            i = members.pop()
            partner = next((j for j in members
                            if meta["model_id"].iloc[j] != meta["model_id"].iloc[i]
                            and ("seed" not in meta or meta["seed"].iloc[j] != meta["seed"].iloc[i])), None)
            if partner is None:
                continue
            members.remove(partner)
            pairs.append((int(final_rows[i]), int(final_rows[partner])))
    return pairs
