"""Loss landscapes and mode connectivity along paths: what lies on the line between two models.

Every function builds all the weight vectors it needs as one ``[G, P]`` matrix and evaluates them in one call
of the batched evaluator :func:`wslviz.core.evaluation.evaluate` (no per-point Python loop).

* :func:`interpolate`: loss and accuracy along the straight line ``(1 - t) a + t b``; the t grid
  (:func:`t_grid`) holds 0 and 1 exactly, also when it extrapolates.
* :func:`loss_barrier` / :func:`accuracy_barrier` (Frankle et al. 2020; Entezari et al. 2022), :func:`barriers`
  per group of a curve table.
* :func:`paths`: naive, weight-matched and activation-matched paths in one table (Ainsworth et al.,
  "Git Re-Basin", ICLR 2023); :func:`pair_barriers` and :func:`barrier_matrix` for many pairs at once;
  :func:`independent_pairs` picks pairs of independently trained models from a zoo's metadata.

Planes, random directions and trajectories are in :mod:`wslviz.understand.surfaces`, trained curves in
:mod:`wslviz.understand.curves`; both build on the helpers here (:func:`model_vector`, :func:`require_task`,
:func:`evaluate_points`, :func:`line_points`, :func:`align_pair`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import evaluate
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.tasks import Task
from wslviz.understand.align import activation_matching, weight_matching
from wslviz.understand.repair import correct as correct_statistics

Progress = Callable[[int, int], None] | None
METHODS = ("naive", "weight", "activation")
"""Path methods: ``naive`` (the models as they are), ``weight`` / ``activation`` (the second model
re-expressed in the first one's basis by weight / activation matching, :mod:`wslviz.understand.align`)."""

BARRIER_STEPS = 25
"""The one default resolution of a path (points on t in [0, 1]) wherever a barrier is measured, so the same
pair of models gets the same barrier on every page (the barrier is a maximum over the grid's points, so it
depends on the grid: 0.1216 on 11 points against 0.1265 on 25 for one moons pair)."""

_EXACT = 1e-9  # grid points this close to t = 0 or 1 are replaced by the exact endpoint


# ------------------------------------------------------------------ helpers (shared with surfaces and curves)
def model_vector(arch: ArchitectureLike, w: torch.Tensor, name: str) -> torch.Tensor:
    """One model's weights ``w`` as a detached float32 ``[P]``; a ``ValueError`` naming the argument ``name`` if
    ``w`` is not one vector of ``arch``'s ``P`` parameters."""
    w = torch.as_tensor(w)
    if w.dim() != 1 or w.shape[0] != arch.n_params:
        raise ValueError(f"{name} must be one model's weights [P] with P = {arch.n_params}, got {list(w.shape)}")
    return w.detach().float()


def require_task(task: Task | None) -> Task:
    """``task``, or a ``ValueError`` saying that landscapes need evaluation data when the zoo has none."""
    if task is None:
        raise ValueError("landscapes need evaluation data: this zoo has no task (attach a .npz with x and y)")
    return task


def evaluate_points(arch: ArchitectureLike, task: Task, weights: torch.Tensor, split: str,
                    progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy (float64 numpy ``[G]`` each) of the G models ``weights`` [G, P], in one batched call of
    :func:`wslviz.core.evaluation.evaluate`."""
    r = evaluate(arch, require_task(task), weights, split=split, progress=progress)
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


def line_points(a: torch.Tensor, b: torch.Tensor, t: np.ndarray) -> torch.Tensor:
    """``(1 - t) a + t b`` for every t -> ``[len(t), P]``.

    Written as ``a + t (b - a)`` up to t = 1/2 and ``b + (1 - t) (a - b)`` beyond, so that the point is
    exactly ``a`` at t = 0, exactly ``b`` at t = 1, and exactly ``a`` everywhere when ``a == b``."""
    tt = torch.as_tensor(t, dtype=torch.float32).unsqueeze(1)
    a, b = a.unsqueeze(0), b.unsqueeze(0)
    return torch.where(tt <= 0.5, a + tt * (b - a), b + (1 - tt) * (a - b))


def align_pair(arch: ArchitectureLike, task: Task | None, a: torch.Tensor, b: torch.Tensor, method: str = "weight",
               seed: int = 0) -> torch.Tensor:
    """``b`` [P] (or [B, P]) as seen from ``a`` [P]: unchanged for ``naive``, else re-expressed in ``a``'s
    basis by weight or activation matching (same function as ``b``)."""
    if method not in METHODS:
        raise ValueError(f"unknown path method {method!r}; known: {', '.join(METHODS)}")
    if method == "naive":
        return b.float()
    if method == "weight":
        return weight_matching(arch, a, b, seed=seed)
    return activation_matching(arch, require_task(task), a, b, seed=seed)


# ------------------------------------------------------------------ paths
def interpolate(arch: ArchitectureLike, task: Task, a: torch.Tensor, b: torch.Tensor, steps: int = BARRIER_STEPS,
                t_range: tuple[float, float] = (0.0, 1.0), split: str = "test", progress: Progress = None,
                repair: str | None = None) -> pd.DataFrame:
    """Loss and accuracy along the straight line from ``a`` (t = 0) to ``b`` (t = 1), both [P].

    The grid is :func:`t_grid` (``steps`` points over ``t_range``, holding 0 and 1 exactly; e.g.
    ``t_range=(-0.5, 1.5)`` extrapolates past both models). All points are evaluated in one batch.
    ``repair``: statistics correction of the points between the endpoints (:mod:`wslviz.understand.repair`):
    ``"none"``, ``"reset"`` (BatchNorm statistics recomputed), ``"repair"`` (REPAIR, Jordan et al. 2023);
    None: ``"reset"`` for networks with BatchNorm, else ``"none"``. The endpoints stay as they are.
    Returns a DataFrame with columns ``t``, ``loss``, ``accuracy``.
    """
    a, b = model_vector(arch, a, "a"), model_vector(arch, b, "b")
    t = t_grid(steps, t_range)
    points = correct_statistics(arch, task, a, b, line_points(a, b, t), torch.as_tensor(t), repair)
    loss, acc = evaluate_points(arch, task, points, split, progress)
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


def paths(arch: ArchitectureLike, task: Task, a: torch.Tensor, b: torch.Tensor, methods: Sequence[str] = METHODS,
          steps: int = BARRIER_STEPS, t_range: tuple[float, float] = (0.0, 1.0), split: str = "test", seed: int = 0,
          progress: Progress = None, repair: str | None = None) -> pd.DataFrame:
    """Straight paths from ``a`` to ``b`` for each method (``naive``: ``b`` as it is; ``weight`` /
    ``activation``: ``b`` aligned to ``a`` first), evaluated together in one batch; ``repair`` corrects the
    points between the endpoints as :func:`interpolate` does (None: BatchNorm reset for networks with BatchNorm,
    else none), so each path equals ``interpolate`` of its endpoints.

    Returns one long DataFrame with columns ``method``, ``t``, ``loss``, ``accuracy`` (one figure's data).
    """
    a, b = model_vector(arch, a, "a"), model_vector(arch, b, "b")
    t = t_grid(steps, t_range)
    ends = [align_pair(arch, task, a, b, m, seed=seed) for m in methods]
    weights = torch.cat([correct_statistics(arch, task, a, e, line_points(a, e, t), torch.as_tensor(t), repair)
                         for e in ends])
    loss, acc = evaluate_points(arch, task, weights, split, progress)
    return pd.DataFrame({"method": np.repeat(list(methods), len(t)), "t": np.tile(t, len(ends)),
                         "loss": loss, "accuracy": acc})


def paths_by_split(arch: ArchitectureLike, task: Task, a: torch.Tensor, b: torch.Tensor,
                   methods: Sequence[str] = METHODS, steps: int = BARRIER_STEPS,
                   t_range: tuple[float, float] = (0.0, 1.0), splits: Sequence[str] = ("test",),
                   progress: Progress = None, repair: str | None = None) -> pd.DataFrame:
    """:func:`paths` on each of ``splits`` (e.g. ``("test", "train")``: train and test curves on one plot), in one
    table with a ``split`` column."""
    return pd.concat([paths(arch, task, a, b, methods, steps, t_range, s, progress=progress, repair=repair)
                      .assign(split=s) for s in splits], ignore_index=True)


def barriers(curves: pd.DataFrame, by: str = "method") -> pd.DataFrame:
    """Per group of a long curve table (e.g. :func:`paths`'s methods): loss and accuracy barrier."""
    rows = [{by: key, "loss_barrier": loss_barrier(g), "accuracy_barrier": accuracy_barrier(g)}
            for key, g in curves.groupby(by, sort=False)]
    return pd.DataFrame(rows)


def barrier_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Loss and accuracy barrier per split and path of a :func:`paths_by_split` table: columns ``method``,
    ``loss_barrier``, ``accuracy_barrier``, ``split``, in the table's order of splits and methods."""
    return pd.concat([barriers(g).assign(split=s) for s, g in curves.groupby("split", sort=False)],
                     ignore_index=True)


def _barriers_of(t: np.ndarray, values: np.ndarray, sign: float) -> np.ndarray:
    """Barrier of each row of ``values`` [n, len(t)] over t in [0, 1] (``sign`` -1 for accuracy)."""
    i0, i1 = int(np.flatnonzero(t == 0.0)[0]), int(np.flatnonzero(t == 1.0)[0])
    inside = (t >= 0.0) & (t <= 1.0)
    chord = (1 - t[None]) * values[:, i0:i0 + 1] + t[None] * values[:, i1:i1 + 1]
    return np.max(sign * (values - chord)[:, inside], axis=1)


def pair_barriers(arch: ArchitectureLike, task: Task, first: torch.Tensor, second: torch.Tensor, method: str = "naive",
                  steps: int = BARRIER_STEPS, split: str = "test", seed: int = 0, progress: Progress = None,
                  repair: str | None = None) -> pd.DataFrame:
    """Barriers of many pairs: the straight path from ``first[i]`` to ``second[i]`` (both [N, P]; with
    ``method`` ``weight``/``activation`` ``second[i]`` is aligned to ``first[i]`` first). All N paths are
    evaluated in one batch; ``repair`` corrects the points between the endpoints as in :func:`interpolate`.
    Returns a DataFrame with ``loss_barrier``, ``accuracy_barrier`` per pair."""
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
    weights = torch.cat([correct_statistics(arch, task, f, s, line_points(f, s, t), torch.as_tensor(t), repair)
                         for f, s in zip(first, second, strict=True)])
    loss, acc = evaluate_points(arch, task, weights, split, _offset(progress, n_align, total))
    loss, acc = loss.reshape(len(first), len(t)), acc.reshape(len(first), len(t))
    return pd.DataFrame({"loss_barrier": _barriers_of(t, loss, 1.0), "accuracy_barrier": _barriers_of(t, acc, -1.0)})


def barrier_matrix(arch: ArchitectureLike, task: Task, weights: torch.Tensor, method: str = "naive",
                   steps: int = BARRIER_STEPS, split: str = "test", seed: int = 0, progress: Progress = None,
                   repair: str | None = None) -> dict[str, np.ndarray]:
    """Pairwise barriers of K models ``weights`` [K, P] -> ``{"loss": [K, K], "accuracy": [K, K]}``.

    Entry (i, j), i < j, is the barrier of the path from model i to model j (aligned to model i unless
    ``method`` is ``naive``); the matrix is filled symmetrically with a zero diagonal. All
    ``K (K - 1) / 2`` paths are evaluated in one batch; ``repair`` corrects the points between as in
    :func:`interpolate`."""
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
                         _offset(progress, n_align, total), repair)
    for key, col in (("loss", "loss_barrier"), ("accuracy", "accuracy_barrier")):
        out[key][i, j] = out[key][j, i] = bars[col].to_numpy()
    return out


def barrier_matrices(arch: ArchitectureLike, task: Task, weights: torch.Tensor,
                     methods: Sequence[str] = ("naive", "weight"), steps: int = BARRIER_STEPS, split: str = "test",
                     seed: int = 0, progress: Progress = None, repair: str | None = None
                     ) -> dict[str, dict[str, np.ndarray]]:
    """:func:`barrier_matrix` of the K models ``weights`` [K, P] for each of ``methods`` -> ``{method: {"loss":
    [K, K], "accuracy": [K, K]}}`` (one figure's data: the matrices side by side); ``progress`` counts methods."""
    out = {}
    for k, method in enumerate(methods):
        out[method] = barrier_matrix(arch, task, weights, method, steps, split, seed, repair=repair)
        if progress:
            progress(k + 1, len(methods))
    return out


# ------------------------------------------------------------------ zoo helpers
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
