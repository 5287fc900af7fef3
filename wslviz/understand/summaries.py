"""What symmetries and alignment do to concrete models, summarised for display (the Symmetry page).

* :func:`symmetry_effects`: one random group element per kind of symmetry (and all kinds together)
  applied to one model: how far the weights move, how little the outputs change.
* :func:`alignment_report`: one model re-expressed in another's basis: the matching per layer, the
  distances per layer before and after, the output change (rounding) and the loss barrier before and
  after (on the same grid as the Landscape page, :data:`wslviz.understand.landscape.BARRIER_STEPS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import model_outputs
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.report import Report
from wslviz.core.tasks import Task
from wslviz.understand.align import MatchingMatrix, activation_matching, matching_matrices, weight_matching
from wslviz.understand.landscape import interpolate, loss_barrier
from wslviz.understand.repair import default_method
from wslviz.understand.symmetry import (
    KINDS,
    apply_symmetry,
    equivalence_gap,
    layer_distances,
    probe_inputs,
    random_symmetry,
)


def symmetry_effects(arch: ArchitectureLike, weights: torch.Tensor, kinds: Sequence[str], seed: int = 0,
                     x: torch.Tensor | None = None) -> pd.DataFrame:
    """For each kind in ``kinds`` alone, and for all of them together (when more than one), a random
    group element (``seed``) applied to one model ``weights`` [P]: columns ``kinds`` (tuple),
    ``weight_distance`` (``||θ - g·θ||``) and ``output_difference`` (largest output change on ``x``,
    default random probes; float rounding, since the function is the same)."""
    theta = weights.float()
    subsets = [(k,) for k in kinds] + ([tuple(kinds)] if len(kinds) > 1 else [])
    own = None
    if arch.has_forward:  # the model's own outputs once, each moved copy's compared with them
        x = probe_inputs(arch) if x is None else x
        own = model_outputs(arch, theta[None], x)
    rows = []
    for subset in subsets:
        moved = apply_symmetry(arch, theta, random_symmetry(arch, seed=seed, kinds=subset))
        rows.append({"kinds": subset, "weight_distance": float((moved - theta).norm()),
                     "output_difference": equivalence_gap(arch, theta, moved, x, own)})
    return pd.DataFrame(rows)


@dataclass(frozen=True, eq=False)
class AlignmentReport(Report):
    """One model re-expressed in another's basis (:func:`alignment_report`)."""

    OPTIONAL = ("barrier_before", "barrier_after")

    aligned: torch.Tensor
    """``[P]``: model B in A's basis (the same function)."""
    matrices: list[MatchingMatrix]
    before: dict[str, np.ndarray]
    """Distance to A per weight layer (``"layer i (type)"``) and ``"total"``, before alignment (arrays of one)."""
    after: dict[str, np.ndarray]
    gap: float
    """Largest output change of B by the alignment: float rounding, since the function is the same."""
    barrier_before: float | None = None
    """Loss barrier of the straight path A-B (None without a task)."""
    barrier_after: float | None = None
    correction: str = "none"
    """The statistics correction of the points between the endpoints (:data:`wslviz.understand.repair.METHODS`)
    that the barriers were measured with: the same as the Landscape page's paths by default."""

    @property
    def layers(self) -> list[str]:
        """The weight layers ``before`` and ``after`` hold, in order."""
        return [k for k in self.before if k != "total"]

    @property
    def closer_layers(self) -> list[str]:
        """The weight layers that alignment brought closer to A (the matching minimises the total, so a layer may
        move away)."""
        return [k for k in self.layers if float(self.after[k][0]) < float(self.before[k][0])]

    @property
    def distance_before(self) -> float:
        return float(self.before["total"][0])

    @property
    def distance_after(self) -> float:
        return float(self.after["total"][0])


def alignment_report(arch: ArchitectureLike, task: Task | None, a: torch.Tensor, b: torch.Tensor,
                     method: str = "weight", kinds: Iterable[str] = KINDS, progress=None,
                     correction: str | None = None) -> AlignmentReport:
    """Model ``b`` [P] re-expressed in ``a``'s basis by ``method`` (``weight`` or ``activation``, which
    needs ``task``) undoing ``kinds``: an :class:`AlignmentReport` with the matchings (see
    :func:`~wslviz.understand.align.matching_matrices`), per-layer distances to ``a`` before and after (see
    :func:`~wslviz.understand.symmetry.layer_distances`), the output change (rounding) and, with a task, the loss
    barriers of the straight paths (:func:`~wslviz.understand.landscape.loss_barrier` at the default
    resolution) with ``correction`` of the points between (None: BatchNorm reset for networks with BatchNorm, else
    none; the Landscape page's default too, so both pages show one number)."""
    a, b = a.float(), b.float()
    kinds = tuple(kinds)
    if method == "weight":
        aligned, g = weight_matching(arch, a, b, return_perm=True, kinds=kinds)
    elif method == "activation":
        aligned, g = activation_matching(arch, task, a, b, return_perm=True, kinds=kinds)
    else:
        raise ValueError(f"unknown alignment method {method!r}; known: weight, activation")
    correction = default_method(arch) if correction is None else correction
    barriers = (None, None)
    if task is not None:
        barriers = (loss_barrier(interpolate(arch, task, a, b, repair=correction)),
                    loss_barrier(interpolate(arch, task, a, aligned, repair=correction)))
    if progress:
        progress(1, 1)
    return AlignmentReport(aligned, matching_matrices(arch, a, b, g), layer_distances(arch, a, b),
                           layer_distances(arch, a, aligned),
                           equivalence_gap(arch, b, aligned, task.x_test if task is not None else None), *barriers,
                           correction)
