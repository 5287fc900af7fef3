"""The zoo rows a generator or a novelty check starts from: the best final checkpoints, aligned to one reference."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from wslviz.core.protocol import knows_symmetries
from wslviz.core.zoo import Zoo, checkpoint_accuracies
from wslviz.understand.align import align_zoo

Progress = Callable[[int, int], None] | None


def best_final_rows(zoo: Zoo, top_fraction: float) -> np.ndarray:
    """Final checkpoints, restricted to the best ``top_fraction`` by test accuracy (at least two)."""
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    final = zoo.final_index()
    if top_fraction < 1:
        acc = checkpoint_accuracies(zoo, final)
        keep = max(2, int(math.ceil(top_fraction * len(final))))
        final = final[np.argsort(-acc, kind="stable")[:keep]]
    return np.sort(final)


def align_rows(zoo: Zoo, rows: Sequence[int] | np.ndarray, reference: int, aligned: bool = True,
               progress: Progress = None) -> torch.Tensor:
    """Weights ``[len(rows), P]`` of the given checkpoints, re-expressed in ``reference``'s basis (as they are
    when ``aligned`` is False or the architecture has no derivable symmetries, as a weights-only layout)."""
    weights = zoo.weights[torch.as_tensor(np.asarray(rows, dtype=np.int64))].float()
    if not aligned or not knows_symmetries(zoo.arch):
        return weights.clone()
    return align_zoo(zoo.arch, weights, zoo.weights[int(reference)].float(), method="weight", progress=progress)


def check_rows(zoo: Zoo, rows: Sequence[int], what: str, minimum: int = 1) -> np.ndarray:
    """``rows`` as int64 positions, checked to be at least ``minimum`` rows inside the zoo (``what`` names
    the caller in the error)."""
    rows = np.asarray(list(rows), dtype=np.int64)
    if len(rows) < minimum:
        raise ValueError(f"{what} needs at least {minimum} checkpoints, got {len(rows)}")
    bad = rows[(rows < 0) | (rows >= zoo.n_checkpoints)]
    if len(bad):
        raise ValueError(f"{what}: rows {bad.tolist()} are outside the zoo (0..{zoo.n_checkpoints - 1})")
    return rows
