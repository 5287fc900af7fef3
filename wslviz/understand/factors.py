"""Unit scales and signs matched by weight distance: the part of weight matching that undoes ReLU rescalings
and tanh sign flips (:func:`wslviz.understand.align.weight_matching`, and the scale step of activation
matching).

For one permutation group with every other group fixed, the squared distance ``||reference - g·other||^2``
splits over the group's units: putting unit k of ``other`` at position j with factor s costs
``s^2 |b_in|^2 - 2 s <a_in, b_in> + |b_out|^2 / s^2 - 2 <a_out, b_out> / s`` plus terms no choice changes
(``in``: the axes a unit scale multiplies, ``out``: those it divides). :func:`pair_gains` gives, per pair
(j, k), the best factor (±1 for signs, a 1-D search for positive scales, on a shortlist of partners per unit in
large groups) and its gain; one assignment problem then picks the partners, and :func:`refine_factors` repeats
this group by group until no step gains :data:`PROGRESS`: a coordinate descent that never increases the distance.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from wslviz.core.protocol import ArchitectureLike
from wslviz.understand.symmetry import SymmetryElement, apply_group, unit_view

SCALE_GRID = np.exp(np.linspace(-math.log(64.0), math.log(64.0), 33))
"""Unit scales tried first when a ReLU unit's scale is matched (then refined by Newton steps from the best)."""
SCALE_GRID[16] = 1.0  # the centre is exactly 1, so "leave the scale" is always a candidate
_GRID_STEP = float(np.log(SCALE_GRID[1] / SCALE_GRID[0]))
_NEWTON_STEPS = 8
_GRID_ELEMENTS = 2**23  # entries of [B, n, n, grid] evaluated at once
_REFINE_TOLERANCE = 1e-4
PROGRESS = 1e-3
"""A step of :func:`refine_factors`' descent counts as progress only if it removes at least this fraction of the
squared distance it is measured against."""
SHORTLIST = 16
"""Partners per unit whose best scale is searched, in groups of more than twice as many units; every other pair
keeps its gain at scale 1. Chosen by an upper bound of the gain (incoming and outgoing weights scaled apart):
on the 64-512-512-512-10 pair of ``benchmarks/bench_align.py`` the search over all 262,144 pairs of a group
was 74% of weight matching's time."""


def scale_gain(c1: np.ndarray, n1: np.ndarray, cm: np.ndarray, nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pair (j, k) the best unit scale ``s > 0`` and its gain ``max_s 2 s c1 - s^2 n1 + 2 cm / s
    - nm / s^2`` (``c1``, ``cm`` [b, n, n]: inner products of the reference's unit j with unit k on the axes
    a scale multiplies / divides; ``n1``, ``nm`` [b, 1, n]: unit k's squared norms there). The gain is
    the drop of the squared distance against leaving unit k out; a grid search over :data:`SCALE_GRID`
    picks the basin, then safeguarded Newton steps in ``u = log s`` (at most one grid step each, halved once
    when it does not gain, kept only when it gains) climb to its top: the gain is smooth in ``u`` and Newton
    converges in a few steps where golden-section search took twenty from a grid twice as fine (2.6x faster,
    and no lower gain beyond rounding on 262,144 random pairs). (NumPy: these small element-wise loops ran 100x
    slower in torch's thread pool on a busy machine.)"""
    def gain(s: np.ndarray) -> np.ndarray:
        return 2 * s * c1 - s * s * n1 + 2 * cm / s - nm / (s * s)

    # the grid only picks each pair's basin: single precision halves its cost; the value is then taken in double
    grid, f1, g1, fm, gm = (a.astype(np.float32) for a in (SCALE_GRID[:, None, None, None], c1, n1, cm, nm))
    best = (2 * grid * f1 - grid * grid * g1 + 2 * fm / grid - gm / (grid * grid)).argmax(0)
    u = np.log(SCALE_GRID[best])
    value = gain(np.exp(u))
    lo, hi = math.log(SCALE_GRID[0]), math.log(SCALE_GRID[-1])
    for _ in range(_NEWTON_STEPS):
        up, down = np.exp(u), np.exp(-u)
        a1, a2, b1, b2 = 2 * c1 * up, n1 * up * up, 2 * cm * down, nm * down * down
        slope, curvature = a1 - 2 * a2 - b1 + 2 * b2, a1 - 4 * a2 + b1 - 4 * b2
        concave = curvature < 0  # a Newton step where the gain curves down, else a grid step uphill
        step = np.where(concave, -slope / np.where(concave, curvature, -1.0), np.sign(slope) * _GRID_STEP)
        step = np.clip(step, -_GRID_STEP, _GRID_STEP)
        for _half in range(2):
            tried = np.clip(u + step, lo, hi)
            tried_value = gain(np.exp(tried))
            better = tried_value > value
            u, value = np.where(better, tried, u), np.where(better, tried_value, value)
            step = np.where(better, 0.0, step / 2)
    return value, np.exp(u)


def _shortlisted_scale_gain(c1: np.ndarray, n1: np.ndarray, cm: np.ndarray,
                            nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`scale_gain` for each unit's :data:`SHORTLIST` most promising partners, the gain at scale 1 for the
    rest (a gain the descent can always take, so the coordinate descent still never increases the distance). The
    promise of a pair is ``max(c1, 0)^2 / n1 + max(cm, 0)^2 / nm``, its gain were the two sides scaled apart: an
    upper bound of its gain at any one scale."""
    size = c1.shape[-1]
    if size <= 2 * SHORTLIST:
        return scale_gain(c1, n1, cm, nm)
    n1, nm = np.broadcast_to(n1, c1.shape), np.broadcast_to(nm, c1.shape)
    bound = (np.divide(np.maximum(c1, 0) ** 2, n1, out=np.zeros_like(c1), where=n1 > 0)
             + np.divide(np.maximum(cm, 0) ** 2, nm, out=np.zeros_like(cm), where=nm > 0))
    top = np.argpartition(-bound, SHORTLIST, axis=-1)[..., :SHORTLIST]
    picked = [np.take_along_axis(a, top, -1) for a in (c1, n1, cm, nm)]
    best, best_scale = scale_gain(*picked)
    gain, scale = 2 * c1 - n1 + 2 * cm - nm, np.ones_like(c1)
    np.put_along_axis(gain, top, best, -1)
    np.put_along_axis(scale, top, best_scale, -1)
    return gain, scale


def pair_gains(c: dict[int, np.ndarray], n: dict[int, np.ndarray], kinds: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (j, k) of one group the gain (drop of ``||reference - g·other||^2`` up to terms the
    permutation cannot change) of putting unit k at position j with its best factor, and that factor
    ``[b, n, n]``: 1 for permutations only, ±1 with ``"sign"``, any ``s > 0`` with ``"scale"`` (any
    ``s != 0`` with both). ``c[p]`` / ``n[p]``: inner products and squared norms on the axes a unit
    scale acts on with power ``p``."""
    c1, cm, c0 = c[1], c[-1], c[0]
    n1, nm = n[1], n[-1]
    if "scale" not in kinds:
        lin = c1 + cm
        sign = np.where(lin < 0, -1.0, 1.0) if "sign" in kinds else np.ones_like(lin)
        return 2 * sign * lin - n1 - nm + 2 * c0, sign
    gain, scale = _shortlisted_scale_gain(c1, n1, cm, nm)
    if "sign" in kinds:
        neg_gain, neg_scale = _shortlisted_scale_gain(-c1, n1, -cm, nm)
        flip = neg_gain > gain
        gain, scale = np.where(flip, neg_gain, gain), np.where(flip, -neg_scale, scale)
    return gain + 2 * c0, scale


def refine_factors(arch: ArchitectureLike, reference: torch.Tensor, start: torch.Tensor, kinds: tuple[str, ...],
                    seed: int, max_iter: int, permute: bool = True,
                    progress_scale: torch.Tensor | None = None) -> SymmetryElement:
    """Coordinate descent on ``||reference - g·start||`` over each group's permutation *and* unit factors
    (scales for ReLU units, signs for odd units, as ``kinds`` and the group allow); returns ``g``
    (batched over ``start`` [B, P]). Each step solves one group exactly given the others (every unit's
    best factor per candidate partner, then one assignment problem), so the distance never grows; a
    step counts as progress only if it gains more than :data:`_REFINE_TOLERANCE` of the current
    objective and more than :data:`PROGRESS` of ``progress_scale`` ``[B]`` (default: the squared distance the
    descent starts from), so the descent on continuous scales stops instead of creeping (on
    ``benchmarks/bench_align.py``'s pair, steps past that point took 70% of the descent's time for 0.3% of its
    gain). Without ``permute`` the
    units stay where they are and only their factors are chosen."""
    spec = arch.perm_spec
    b = start.shape[0]
    ref = reference.double().unsqueeze(0)
    cur = start.double()
    scale = (cur - ref).square().sum(1) if progress_scale is None else progress_scale.double()
    floor = (PROGRESS * scale).numpy()
    perms = [torch.arange(g.size).expand(b, -1).clone() for g in spec.groups]
    factors = [torch.ones(b, g.size, dtype=torch.float64) for g in spec.groups]
    allowed = [set(kinds) & set(g.kinds) - {"permutation"} for g in spec.groups]
    neighbours = [{h for h, other in enumerate(spec.groups) if h != gi
                   and {r.name for r in group.refs} & {r.name for r in other.refs}}
                  for gi, group in enumerate(spec.groups)]

    def step(gi: int, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        group = spec.groups[gi]
        c = {p: np.zeros((len(rows), group.size, group.size)) for p in (1, -1, 0)}
        n = {p: np.zeros((len(rows), 1, group.size)) for p in (1, -1, 0)}
        for r in group.refs:
            view = unit_view(arch, cur[rows], r)
            c[r.power] += (unit_view(arch, ref, r) @ view.transpose(1, 2)).numpy()
            n[r.power] += (view * view).sum(-1).unsqueeze(1).numpy()
        gain, factor = pair_gains(c, n, allowed[gi])
        # the current state is "identity, factor 1": its gain under the same objective
        current = (2 * (c[1] + c[-1] + c[0]) - n[1] - n[-1]).diagonal(axis1=1, axis2=2).sum(-1)
        cols = np.tile(np.arange(group.size), (len(rows), 1))
        better = np.zeros(len(rows), dtype=bool)
        for i in range(len(rows)):  # one assignment problem per model: the solver has no batched form
            col = linear_sum_assignment(gain[i], maximize=True)[1] if permute else cols[i]
            new = gain[i][np.arange(group.size), col].sum()
            if new > current[i] + max(_REFINE_TOLERANCE * max(1.0, abs(current[i])), floor[rows[i]]):
                better[i] = True
                cols[i] = col
        chosen = np.where(better[:, None], np.take_along_axis(factor, cols[..., None], 2)[..., 0], 1.0)
        return torch.from_numpy(cols), torch.from_numpy(chosen), torch.from_numpy(better)

    rng = np.random.default_rng(seed)
    dirty = set(range(len(spec.groups)))
    for _ in range(max_iter):
        improved = False
        for gi in map(int, rng.permutation(len(spec.groups))):
            # groups without scales or signs to choose keep the permutation matching gave them
            if gi not in dirty or not allowed[gi]:
                continue
            dirty.discard(gi)
            chunk = max(1, _GRID_ELEMENTS // (spec.groups[gi].size ** 2 * len(SCALE_GRID)))
            for start_row in range(0, b, chunk):
                rows = torch.arange(start_row, min(b, start_row + chunk))
                cols, chosen, better = step(gi, rows)
                if not better.any():
                    continue
                cur[rows] = apply_group(arch, cur[rows], spec.groups[gi], cols, chosen)
                perms[gi][rows] = torch.gather(perms[gi][rows], 1, cols)
                factors[gi][rows] = torch.gather(factors[gi][rows], 1, cols) * chosen
                dirty |= neighbours[gi]
                improved = True
        if not improved:
            break
    return SymmetryElement(perms, [f.float() for f in factors])
