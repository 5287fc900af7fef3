"""The continuous symmetry of low-rank adapters, measured: what a GL(r) element moves and what it keeps, and how far
distances between raw factors disagree with distances between the updates they compute.

For a LoRA zoo (:mod:`wslviz.core.lora`) ``(B G, G^-1 A)`` is the same adapter as ``(B, A)`` for every invertible
``G``; Putterman et al., "Learning on LoRAs: GL-equivariant processing of low-rank weight spaces" (2024). Any
architecture with ``has_invariants`` and ``apply_gl`` / ``random_gl`` / ``canonical`` / ``flat_deltas`` works here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from wslviz.core.protocol import ArchitectureLike
from wslviz.understand.symmetry import equivalence_gap


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = float(b.double().norm())
    return float((a.double() - b.double()).norm()) / scale if scale > 0 else float((a.double()).norm())


def gl_effects(arch: ArchitectureLike, weights: torch.Tensor, kinds: tuple[str, ...], seed: int = 0,
               x: torch.Tensor | None = None) -> pd.DataFrame:
    """One random element of each GL(r) kind in ``kinds`` (``general``, ``permutation``, ``scaling``,
    ``orthogonal``) applied to one adapter ``weights`` [P]: columns ``kind``, ``factor_change``
    (``||theta - g theta|| / ||theta||``: how far A and B moved), ``delta_change`` (the same for ``delta_W``),
    ``invariant_change`` (largest change of an invariant feature relative to the largest feature) and
    ``output_difference`` (largest output change on ``x``, or NaN without a forward)."""
    theta = weights.detach().float()[None]
    base = arch.flat_deltas(theta)
    feats = arch.invariant_features(theta)
    rows = []
    for kind in kinds:
        moved = arch.apply_gl(theta, arch.random_gl(kind, seed))
        change = np.abs(arch.invariant_features(moved) - feats).max() / max(np.abs(feats).max(), 1e-300)
        rows.append({"kind": kind, "factor_change": _relative(moved, theta),
                     "delta_change": _relative(arch.flat_deltas(moved), base), "invariant_change": float(change),
                     "output_difference": equivalence_gap(arch, theta[0], moved[0], x) if arch.has_forward
                     else float("nan")})
    return pd.DataFrame(rows)


def random_coordinates(arch: ArchitectureLike, weights: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Every adapter of ``weights`` [N, P] re-expressed by its own random invertible ``G`` per module (``general``
    elements of :meth:`random_gl`, seeds ``seed * 100_000 + row``): the same updates in unrelated coordinates, as
    adapters trained from other initialisations or saved by other tools hold them."""
    elements = [arch.random_gl("general", seed * 100_000 + i) for i in range(len(weights))]
    stacked = {name: torch.stack([e[name] for e in elements]) for name in elements[0]} if elements else {}
    return arch.apply_gl(weights, stacked) if elements else weights.detach().float().clone()


def pair_distances(arch: ArchitectureLike, weights: torch.Tensor, max_pairs: int = 300,
                   random_state: int = 0) -> pd.DataFrame:
    """Distances between pairs of adapters (``weights`` [N, P]; all pairs, or ``max_pairs`` drawn at random): columns
    ``i``, ``j``, ``raw`` (between the factors as stored), ``canonical`` (between their canonical forms: aligned
    by canonicalisation) and ``delta`` (between the updates ``delta_W``, the distance that means something)."""
    n = len(weights)
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)], dtype=int).reshape(-1, 2)
    if len(pairs) > max_pairs:
        pairs = pairs[np.sort(np.random.default_rng(random_state).choice(len(pairs), max_pairs, replace=False))]
    w = weights.detach().double()
    canon, delta = arch.canonical(w).double(), arch.flat_deltas(w)
    ii, jj = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])

    def dist(m: torch.Tensor) -> np.ndarray:
        return (m[ii] - m[jj]).norm(dim=1).numpy() if len(pairs) else np.zeros(0)

    return pd.DataFrame({"i": pairs[:, 0], "j": pairs[:, 1], "raw": dist(w), "canonical": dist(canon),
                         "delta": dist(delta)})


def rank_agreement(distances: pd.DataFrame) -> dict[str, float]:
    """Spearman correlation of the ``raw`` and the ``canonical`` distances with the ``delta`` distances (1: the
    same order of pairs; NaN with fewer than three pairs)."""
    if len(distances) < 3:
        return {"raw": float("nan"), "canonical": float("nan")}
    ranks = distances[["raw", "canonical", "delta"]].rank()
    return {k: float(np.corrcoef(ranks[k], ranks["delta"])[0, 1]) for k in ("raw", "canonical")}
