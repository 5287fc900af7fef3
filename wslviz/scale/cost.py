"""What a computation will cost, known before it starts: unit costs measured on the zoo itself.

Every long computation of the app is, to first order, a count of two operations: evaluating one model on a
task split (a point on a path, a cell of a plane, one step of inverting or training on a batch) and weight
matching one pair of models (each aligned path, each pair of a barrier matrix or of a lineage).
:func:`measure_unit_costs` times each once on the open zoo, the way the computations run them (a batch of
models evaluated together; the default weight matching of two trained checkpoints), and :func:`estimate`
multiplies. The figures are estimates: the same counts on a machine under load take longer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from wslviz.core.protocol import ArchitectureLike
from wslviz.core.tasks import Task
from wslviz.understand.align import weight_matching
from wslviz.understand.repair import N_SAMPLES, default_method

BATCH = 8
"""Models evaluated together when measuring: landscapes evaluate their points in batches too."""
MAX_MATCHED_PARAMS = 2_000_000
"""Larger networks are not matched just to measure (a GPT-2-small pair takes minutes): no matching estimate."""


SMALL_BATCH = 16
"""The second batch size evaluated: small batches cost mostly the fixed overhead of a call, which this measures."""
FORWARD_BACKWARD = 3
"""Evaluations one training step costs: a forward and a backward pass take about three forward passes."""
HESSIAN_VECTOR = 4
"""Evaluations one Hessian-vector product (a double backward) costs, about."""


@dataclass(frozen=True)
class UnitCosts:
    """Seconds per operation on one zoo. One model's evaluation on ``n`` inputs costs ``per_call + per_example *
    n`` when models are evaluated together (both None without a task or a forward), fitted to two measured batch
    sizes, and ``alone + per_example * n`` for a model evaluated on its own (inverting, distilling);
    ``train_examples`` / ``test_examples``: the split sizes; ``matching``: one weight matching of two models
    (None without known symmetries or above :data:`MAX_MATCHED_PARAMS` parameters)."""

    per_call: float | None
    per_example: float | None
    alone: float | None
    test_examples: int
    train_examples: int
    matching: float | None

    def evaluation_seconds(self, on: str | int = "test", batched: bool = True) -> float | None:
        """Seconds for one model evaluated ``on`` a split (``"test"``, ``"train"``) or a batch of that many inputs,
        among a batch of models or (``batched=False``) on its own."""
        if self.per_call is None or self.per_example is None or self.alone is None:
            return None
        size = on if isinstance(on, int) else self.train_examples if on == "train" else self.test_examples
        return (self.per_call if batched else self.alone) + self.per_example * size


def _best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_unit_costs(arch: ArchitectureLike, task: Task | None, weights: torch.Tensor,
                       progress=None) -> UnitCosts:
    """Time the forward pass of up to :data:`BATCH` models of ``weights [N, P]`` together on ``task``'s test split
    and on its first :data:`SMALL_BATCH` inputs (best of two each, per model; the line through both gives the
    per-call and per-example costs), and one default weight matching of the first row against the last (best of
    two), each only where the zoo allows it. ``progress(done, 2)`` after each."""
    per_call = per_example = alone = None
    n_test = n_train = 0
    if task is not None and arch.has_forward:
        (x, _), n_train = task.split("test"), len(task.split("train")[1])
        n_test, small = len(x), min(SMALL_BATCH, len(x) - 1)
        batch = weights[:BATCH].float()
        with torch.no_grad():
            full, part = (_best_of(2, lambda n=n: arch.forward(batch, x[:n])) / len(batch) for n in (n_test, small))
        per_example = max(full - part, 0.0) / max(n_test - small, 1)
        per_call = max(part - per_example * small, 0.0)
        with torch.no_grad():
            alone = max(_best_of(2, lambda: arch.forward(batch[:1], x[:small])) - per_example * small, 0.0)
    if progress:
        progress(1, 2)
    matching = None
    if arch.knows_symmetries and len(weights) >= 2 and arch.n_params <= MAX_MATCHED_PARAMS:
        matching = _best_of(2, lambda: weight_matching(arch, weights[0], weights[-1]))
    if progress:
        progress(2, 2)
    return UnitCosts(per_call, per_example, alone, n_test, n_train, matching)


Work = Sequence[tuple]
"""Counts of model evaluations and what each runs on: ``[(n, "test"), (n, "train"), (n, batch size), ...]``; a
third element ``False`` marks evaluations of one model on its own (see :meth:`UnitCosts.evaluation_seconds`)."""


def path_work(arch: ArchitectureLike, task: Task | None, points: int, splits: Sequence[str] = ("test",),
              correction: str = "none") -> Work:
    """The evaluations of ``points`` points between models on each of ``splits``, plus, where ``correction``
    recomputes BatchNorm statistics (``"reset"``, ``"repair"`` on a network with BatchNorm), each point run once more
    on the correction's training inputs (:data:`wslviz.understand.repair.N_SAMPLES` of them at most)."""
    work: list[tuple] = [(points, split) for split in splits]
    if task is not None and correction != "none" and default_method(arch) != "none":
        work.append((points * len(splits), min(N_SAMPLES, len(task.x_train))))
    return work


def estimate(costs: UnitCosts, evaluations: Work = (), matchings: float = 0) -> float | None:
    """Seconds for the model ``evaluations`` (see :data:`Work`) plus ``matchings`` weight matchings; None when an
    operation the count needs was not measured on this zoo."""
    total = 0.0
    for n, on, *batched in evaluations:
        if n:
            seconds = costs.evaluation_seconds(on, *batched)
            if seconds is None:
                return None
            total += n * seconds
    if matchings:
        if costs.matching is None:
            return None
        total += matchings * costs.matching
    return total


def describe_seconds(seconds: float) -> str:
    """``"about 40 s"``, ``"about 3 min"``, ``"under a second"``."""
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
