"""Model merging: one model from several, by the methods practitioners use, behind :func:`merge`.

=====================  ===================================================================================
``method``             what it does (paper)
=====================  ===================================================================================
``aligned`` (default)  weight (or activation) matching to a common basis, then the average, with BatchNorm
                       reset or REPAIR (Ainsworth et al., "Git Re-Basin", ICLR 2023; Jordan et al., "REPAIR:
                       REnormalizing Permuted Activations for Interpolation Repair", ICLR 2023)
``average``            the uniform average of the weights (a "uniform soup", Wortsman et al. 2022)
``weighted``           a weighted average with the given ``coefficients``
``slerp``              spherical linear interpolation of two models, tensor by tensor (Shoemake 1985; the
                       ``slerp`` method of mergekit, Goddard et al. 2024)
``task_arithmetic``    ``base + lam * sum_i (w_i - base)`` (Ilharco et al., "Editing models with task
                       arithmetic", ICLR 2023)
``ties``               trim each task vector to its largest ``density`` share, elect a sign per parameter,
                       average the agreeing entries (Yadav et al., "TIES-Merging", NeurIPS 2023)
``dare``               drop each task-vector entry with probability ``drop``, rescale the rest by
                       ``1 / (1 - drop)``, then task arithmetic or TIES (Yu et al., "Language models are Super
                       Mario", ICML 2024)
``soup``               greedy model soup: add models in order of held-out accuracy while the held-out
                       accuracy of the average does not drop (Wortsman et al., "Model soups", ICML 2022)
``fisher``             the average weighted per parameter by each model's diagonal Fisher information on its
                       task's data (Matena & Raffel, "Merging models with Fisher-weighted averaging",
                       NeurIPS 2022)
``fedavg``             FedAvg's server step: the average weighted by the clients' numbers of examples
                       (McMahan et al., AISTATS 2017)
``aligned_fedavg``     FedAvg after aligning the clients to their running average by weight matching (the
                       idea of matched averaging, Wang et al., "Federated learning with matched averaging",
                       ICLR 2020, with Git Re-Basin's matching)
=====================  ===================================================================================

Weights travel as ``[K, P]`` tensors with the architecture's layout, as everywhere in wslviz. Arithmetic
is done in float64 and rounded to float32 once, so the exact properties hold exactly where IEEE arithmetic
allows: merging copies of one model by an average returns it bit for bit, task arithmetic with ``lam = 0``
returns the base, DARE with ``drop = 0`` *is* task arithmetic, SLERP at ``t = 0`` and ``t = 1`` returns the
endpoints. The layout-only methods (averages, SLERP, task vectors, TIES, DARE) work for any architecture
with a layout, weights-only layouts included; alignment needs the architecture's permutation spec and
soups, Fisher and activation matching need a forward, so on a weights-only layout they refuse with one
sentence naming what is missing. Every method runs on module architectures (ResNets with BatchNorm,
transformers; tests/test_merging.py), where REPAIR is :func:`wslviz.understand.repair.repair_to`, as for every
other kind of network.

What the Merge page computes around these methods (accuracy per task, sweeps, zoo-level rows and reports) is
in :mod:`wslviz.generation.merge_lab`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from wslviz.core.evaluation import evaluate, forward
from wslviz.core.kind import require_forward
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.tasks import Task, validation_split
from wslviz.understand import repair as statistics
from wslviz.understand.align import align_to_average, align_zoo
from wslviz.understand.symmetry import KINDS, as_batch

Progress = Callable[[int, int], None] | None

METHODS: dict[str, str] = {
    "aligned": "Aligned average (weight matching, BatchNorm reset or REPAIR)",
    "average": "Uniform average",
    "weighted": "Weighted average",
    "slerp": "SLERP between two models",
    "task_arithmetic": "Task arithmetic",
    "ties": "TIES merging",
    "dare": "DARE (drop and rescale)",
    "soup": "Greedy model soup",
    "fisher": "Fisher-weighted average",
    "fedavg": "FedAvg",
    "aligned_fedavg": "Aligned FedAvg",
}
"""Method name -> label, in the order the Merge page offers them."""
NEEDS_BASE = ("task_arithmetic", "ties", "dare")
NEEDS_TASK = ("soup", "fisher")


# ---------------------------------------------------------------------------------------------- helpers
def _batch(arch: ArchitectureLike, weights: torch.Tensor, least: int = 1) -> torch.Tensor:
    w, _ = as_batch(weights, arch)
    if len(w) < least:
        raise ValueError(f"merging needs at least {least} model(s), got {len(w)}")
    return w


def _coefficients(coefficients: Sequence[float] | torch.Tensor | None, k: int) -> torch.Tensor:
    """Non-negative coefficients ``[K]`` (float64) normalised to sum 1; uniform when None."""
    if coefficients is None:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    c = torch.as_tensor(np.asarray(coefficients, dtype=np.float64))
    if c.shape != (k,):
        raise ValueError(f"{k} models but {c.numel()} coefficients")
    if (c < 0).any() or not (c.sum() > 0):
        raise ValueError("coefficients must be non-negative with a positive sum")
    return c / c.sum()


def _finish(arch: ArchitectureLike, merged: torch.Tensor, task: Task | None) -> torch.Tensor:
    """float32, with BatchNorm statistics recomputed on ``task`` (averaged statistics describe no model)."""
    merged = merged.float()
    return statistics.reset_batchnorm(arch, merged, task)


def _mean(weights: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """``sum_k c_k w_k`` in float64; exactly ``w`` when every row is ``w`` and the coefficients are uniform."""
    w = weights.double()
    if bool((coefficients == coefficients[0]).all()):
        return w.mean(0)
    return coefficients @ w


def task_vectors(base: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Task vectors ``w_i - base`` ``[K, P]`` in float64 (Ilharco et al. 2023): what fine-tuning added."""
    if base.dim() != 1 or weights.shape[-1] != base.shape[0]:
        raise ValueError(f"base must be one model [P] matching the weights, got {list(base.shape)}")
    return weights.double() - base.double()


def _base(base: torch.Tensor | None, method: str) -> torch.Tensor:
    if base is None:
        raise ValueError(f"{method} needs the base model the others were fine-tuned from (base=...)")
    return base


# ---------------------------------------------------------------------------------------------- averages
def average(arch: ArchitectureLike, weights: torch.Tensor, task: Task | None = None) -> torch.Tensor:
    """The uniform average of ``weights`` [K, P] -> ``[P]`` (a uniform soup, Wortsman et al. 2022)."""
    w = _batch(arch, weights)
    return _finish(arch, w.double().mean(0), task)


def weighted_average(arch: ArchitectureLike, weights: torch.Tensor,
                     coefficients: Sequence[float] | torch.Tensor | None = None,
                     task: Task | None = None) -> torch.Tensor:
    """``sum_k c_k w_k`` with ``coefficients`` normalised to sum 1 (uniform when None) -> ``[P]``."""
    w = _batch(arch, weights)
    return _finish(arch, _mean(w, _coefficients(coefficients, len(w))), task)


def slerp(arch: ArchitectureLike, weights: torch.Tensor, t: float = 0.5, eps: float = 1e-8,
          task: Task | None = None) -> torch.Tensor:
    """Spherical linear interpolation between two models ``weights`` [2, P], tensor by tensor.

    For each tensor of the layout, with ``a``, ``b`` its two versions and ``theta`` the angle between them:
    ``sin((1 - t) theta) / sin(theta) a + sin(t theta) / sin(theta) b`` (Shoemake 1985), as mergekit's
    ``slerp`` merges language models; nearly parallel tensors (``sin(theta) < eps``) are interpolated
    linearly. ``t = 0`` returns the first model, ``t = 1`` the second, exactly.
    """
    w = _batch(arch, weights, 2)
    if len(w) != 2:
        raise ValueError(f"SLERP merges exactly two models, got {len(w)}")
    a, b = w[0].double(), w[1].double()
    out = torch.empty_like(a)
    for p in arch.layout:
        x, y = a[p.slice], b[p.slice]
        nx, ny = x.norm(), y.norm()
        cos = (x @ y / (nx * ny)).clamp(-1.0, 1.0) if nx > 0 and ny > 0 else torch.tensor(1.0, dtype=torch.float64)
        theta = torch.arccos(cos)
        s = torch.sin(theta)
        if s < eps:
            out[p.slice] = (1 - t) * x + t * y
        else:
            out[p.slice] = torch.sin((1 - t) * theta) / s * x + torch.sin(t * theta) / s * y
    return _finish(arch, out, task)


# ---------------------------------------------------------------------------------------------- task vectors
def task_arithmetic(arch: ArchitectureLike, weights: torch.Tensor, base: torch.Tensor, lam: float = 1.0,
                    task: Task | None = None) -> torch.Tensor:
    """``base + lam * sum_i (w_i - base)`` (Ilharco et al., ICLR 2023) -> ``[P]``.

    ``lam`` scales the summed task vectors (the paper chooses it on held-out data; ``1 / K`` is the plain
    average of the fine-tunes). ``lam = 0`` returns ``base`` exactly.
    """
    w = _batch(arch, weights)
    return _apply(arch, base, lam, task_vectors(base, w).sum(0), task)


def _apply(arch: ArchitectureLike, base: torch.Tensor, lam: float, vector: torch.Tensor,
           task: Task | None) -> torch.Tensor:
    """``base + lam * vector`` (exactly ``base`` for ``lam = 0`` and a finite vector)."""
    return _finish(arch, base.double() + lam * vector, task)


def trim(vectors: torch.Tensor, density: float) -> torch.Tensor:
    """Each task vector (row of ``vectors`` [K, P]) with all but its ``density`` share of largest-magnitude
    entries set to 0 (TIES step 1; ties at the threshold are broken by position, so exactly
    ``round(density * P)`` entries survive, at least one)."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    k = max(1, int(round(density * vectors.shape[1])))
    if k >= vectors.shape[1]:
        return vectors.clone()
    keep = torch.zeros_like(vectors, dtype=torch.bool)
    keep.scatter_(1, vectors.abs().topk(k, dim=1, sorted=False).indices, True)
    return torch.where(keep, vectors, torch.zeros((), dtype=vectors.dtype))


def ties_vector(vectors: torch.Tensor, density: float = 0.2) -> torch.Tensor:
    """The TIES-merged task vector ``[P]`` (Yadav et al., NeurIPS 2023, Algorithm 1): trim each vector to
    its top ``density`` entries, elect per parameter the sign of the summed trimmed vectors (the sign with
    the larger total mass), and average only the entries that agree with it (a disjoint mean; 0 where
    none does)."""
    trimmed = trim(vectors, density)
    sign = torch.sign(trimmed.sum(0))
    agree = (torch.sign(trimmed) == sign) & (trimmed != 0)
    count = agree.sum(0)
    total = torch.where(agree, trimmed, torch.zeros((), dtype=trimmed.dtype)).sum(0)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros((), dtype=trimmed.dtype))


def ties(arch: ArchitectureLike, weights: torch.Tensor, base: torch.Tensor, density: float = 0.2, lam: float = 1.0,
         task: Task | None = None) -> torch.Tensor:
    """TIES merging (Yadav et al., NeurIPS 2023): ``base + lam * ties_vector(task vectors, density)`` -> ``[P]``.

    Defaults are the paper's (keep the top 20% of each task vector, ``lam = 1``). One model with
    ``density = 1`` and ``lam = 1`` is returned unchanged.
    """
    w = _batch(arch, weights)
    return _apply(arch, base, lam, ties_vector(task_vectors(base, w), density), task)


def dare_vectors(vectors: torch.Tensor, drop: float, seed: int = 0) -> torch.Tensor:
    """DARE (Yu et al., ICML 2024): every entry of every task vector dropped with probability ``drop`` and
    the survivors rescaled by ``1 / (1 - drop)``, so each vector keeps its expectation. ``drop = 0``
    returns the vectors unchanged."""
    if not 0 <= drop < 1:
        raise ValueError(f"drop must be in [0, 1), got {drop}")
    if drop == 0:
        return vectors
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.rand(vectors.shape, generator=gen, dtype=torch.float64) >= drop
    return torch.where(keep, vectors / (1 - drop), torch.zeros((), dtype=vectors.dtype))


def dare(arch: ArchitectureLike, weights: torch.Tensor, base: torch.Tensor, drop: float = 0.5, lam: float = 1.0,
         combine: str = "task_arithmetic", density: float = 1.0, seed: int = 0,
         task: Task | None = None) -> torch.Tensor:
    """DARE merging (Yu et al., ICML 2024): :func:`dare_vectors`, then combined by task arithmetic
    (``combine="task_arithmetic"``: ``base + lam * sum``) or by TIES (``combine="ties"``, with ``density``)
    -> ``[P]``. With ``drop = 0`` this is exactly :func:`task_arithmetic` (or :func:`ties`)."""
    w = _batch(arch, weights)
    vectors = dare_vectors(task_vectors(base, w), drop, seed)
    if combine == "task_arithmetic":
        return _apply(arch, base, lam, vectors.sum(0), task)
    if combine == "ties":
        return _apply(arch, base, lam, ties_vector(vectors, density), task)
    raise ValueError(f"combine must be 'task_arithmetic' or 'ties', got {combine!r}")


# ---------------------------------------------------------------------------------------------- data-driven
def greedy_soup(arch: ArchitectureLike, weights: torch.Tensor, task: Task, holdout: float = 0.2,
                validation: Task | None = None) -> tuple[torch.Tensor, list[int]]:
    """Greedy model soup (Wortsman et al., ICML 2022, Recipe 1) -> ``(merged [P], ingredients)``.

    Models are sorted by accuracy on a held-out split (``validation``'s test split; default the last
    ``holdout`` share of ``task``'s *training* split, :func:`wslviz.core.tasks.validation_split`, never the
    test split); starting from the best, each next model is added when the uniform average of the soup
    with it is at least as accurate on the held-out split. ``ingredients``: the chosen rows, best first.
    """
    w = _batch(arch, weights)
    val = validation if validation is not None else validation_split(task, holdout)
    acc = evaluate(arch, val, w)["accuracy"].numpy()
    order = [int(i) for i in np.argsort(-acc, kind="stable")]
    soup, best = [order[0]], float(acc[order[0]])
    for i in order[1:]:
        trial = w[torch.as_tensor(soup + [i])].double().mean(0).float()
        score = float(evaluate(arch, val, _finish(arch, trial, task))["accuracy"])
        if score >= best:
            soup, best = soup + [i], score
    return _finish(arch, w[torch.as_tensor(soup)].double().mean(0), task), soup


def diagonal_fisher(arch: ArchitectureLike, weights: torch.Tensor, tasks: Task | Sequence[Task], n_samples: int = 128,
                    seed: int = 0, chunk_examples: int = 2048) -> torch.Tensor:
    """Diagonal Fisher information ``[K, P]`` of each model (``weights`` [K, P] or [P]) on ``n_samples``
    training inputs of its task (``tasks``: one per model, or one for all):
    ``mean_x sum_c p(c | x) (d log p(c | x) / d w)^2``, the expectation over the model's own predictive
    distribution taken exactly (Matena & Raffel 2022, Eq. 4).

    Per-example gradients in batched passes: every model is replicated once per example and each copy
    sees its own example (at most ``chunk_examples`` copies at once), one backward pass per class.
    """
    w = weights.unsqueeze(0) if weights.dim() == 1 else weights
    tasks = [tasks] * len(w) if isinstance(tasks, Task) else list(tasks)
    if len(tasks) != len(w):
        raise ValueError(f"{len(w)} models but {len(tasks)} tasks")
    if not all(t.is_classification for t in tasks):
        raise ValueError("the Fisher of a classifier needs classification tasks")
    xs = []
    for t in tasks:
        gen = torch.Generator().manual_seed(seed)
        xs.append(t.x_train[torch.randperm(len(t.x_train), generator=gen)[:n_samples]])
    n = min(len(x) for x in xs)
    x_all = torch.stack([x[:n] for x in xs])  # [K, n, ...]
    fisher = torch.zeros(len(w), arch.n_params, dtype=torch.float64)
    per_chunk = max(1, chunk_examples // n)
    for start in range(0, len(w), per_chunk):
        stop = min(len(w), start + per_chunk)
        rep = w[start:stop].float().detach().repeat_interleave(n, 0).requires_grad_(True)  # [k*n, P]
        x = x_all[start:stop].reshape(-1, 1, *x_all.shape[2:])  # one example per copy
        with torch.enable_grad():
            logp = torch.log_softmax(forward(arch, rep, x)[0][:, 0], -1)  # [k*n, C]
            prob = logp.detach().double().exp()
            for c in range(logp.shape[1]):
                (grad,) = torch.autograd.grad(logp[:, c].sum(), rep, retain_graph=c + 1 < logp.shape[1])
                contrib = prob[:, c:c + 1] * grad.double() ** 2
                fisher[start:stop] += contrib.view(stop - start, n, -1).sum(1)
    return fisher / n


def fisher_merge(arch: ArchitectureLike, weights: torch.Tensor, tasks: Task | Sequence[Task],
                 coefficients: Sequence[float] | None = None, n_samples: int = 128, floor: float = 1e-6,
                 seed: int = 0) -> torch.Tensor:
    """Fisher-weighted averaging (Matena & Raffel, NeurIPS 2022): per parameter
    ``sum_i c_i F_i w_i / sum_i c_i F_i`` with ``F_i`` each model's :func:`diagonal_fisher` on its own task
    (``tasks``: one per model, or one for all) plus ``floor`` (the paper's Fisher floor, so parameters no
    model is sensitive to get the plain average) -> ``[P]``."""
    w = _batch(arch, weights)
    tasks = [tasks] * len(w) if isinstance(tasks, Task) else list(tasks)
    c = _coefficients(coefficients, len(w))
    fishers = diagonal_fisher(arch, w, tasks, n_samples, seed) + floor
    merged = (c[:, None] * fishers * w.double()).sum(0) / (c[:, None] * fishers).sum(0)
    return _finish(arch, merged, tasks[0])


# ---------------------------------------------------------------------------------------------- alignment
def repair(arch: ArchitectureLike, merged: torch.Tensor, aligned: torch.Tensor, task: Task,
           coefficients: Sequence[float] | torch.Tensor | None = None, n_samples: int = 512,
           seed: int = 0) -> torch.Tensor:
    """REPAIR (Jordan et al., ICLR 2023) of ``merged`` [P], the ``coefficients`` average of the ``aligned``
    inputs [K, P]: every corrected layer's output channels get the mean and standard deviation (over
    ``n_samples`` training inputs drawn with ``seed``, and positions) that the inputs have there, averaged with
    the same coefficients -> ``[P]``. The layers are the architecture's (``arch.repair_layers()``: without
    BatchNorm the hidden linear/conv layers, with BatchNorm the statistics reset and then every BatchNorm's
    output); :func:`wslviz.understand.repair.repair_to` does the work for every kind of network.
    """
    c = _coefficients(coefficients, len(aligned))
    gen = torch.Generator().manual_seed(seed)
    x = task.x_train[torch.randperm(len(task.x_train), generator=gen)[:n_samples]]
    return statistics.repair_to(arch, aligned.float(), merged.float().unsqueeze(0), c.unsqueeze(0), x)[0]


def aligned_average(arch: ArchitectureLike, weights: torch.Tensor, reference: torch.Tensor | None = None,
                    task: Task | None = None, kinds: Iterable[str] = KINDS, matching: str = "weight",
                    correction: str = "reset", coefficients: Sequence[float] | torch.Tensor | None = None,
                    seed: int = 0, progress: Progress = None) -> torch.Tensor:
    """The average after alignment -> ``[P]`` (Ainsworth et al., ICLR 2023; what ``wv.merge`` did before
    it had methods, and still its default).

    Every model is re-expressed in one basis: ``reference`` [P]'s when given, else their running average
    (:func:`wslviz.understand.align.align_to_average`); ``matching="activation"`` pairs units by activation
    correlation on ``task`` instead (to ``reference``, default the first model). Then the (``coefficients``)
    average, and ``correction``: ``"reset"`` recomputes BatchNorm statistics on ``task`` (mean 0, variance 1
    without a task; nothing to do without BatchNorm), ``"repair"`` applies :func:`repair` (needs ``task``),
    ``"none"`` leaves the average as it is.
    """
    w = _batch(arch, weights).float()
    if matching == "weight":
        aligned = align_zoo(arch, w, reference, kinds=kinds, seed=seed, progress=progress) if reference is not None \
            else align_to_average(arch, w, kinds=kinds, seed=seed, progress=progress)
    elif matching == "activation":
        ref = w[0] if reference is None else reference
        aligned = align_zoo(arch, w, ref, method="activation", task=task, kinds=kinds, seed=seed, progress=progress)
    else:
        raise ValueError(f"matching must be 'weight' or 'activation', got {matching!r}")
    c = _coefficients(coefficients, len(w))
    merged = _mean(aligned, c)
    if correction == "repair":
        if task is None:
            raise ValueError("REPAIR needs data: pass task=")
        return repair(arch, merged, aligned, task, c, seed=seed)
    if correction == "reset":
        return _finish(arch, merged, task)
    if correction == "none":
        return merged.float()
    raise ValueError(f"correction must be 'reset', 'repair' or 'none', got {correction!r}")


def fedavg(arch: ArchitectureLike, weights: torch.Tensor, n_examples: Sequence[int] | None = None,
           task: Task | None = None) -> torch.Tensor:
    """FedAvg's aggregation (McMahan et al., AISTATS 2017): client models ``[K, P]`` averaged with weights
    proportional to ``n_examples`` (uniform when None) -> ``[P]``."""
    w = _batch(arch, weights)
    return _finish(arch, _mean(w, _coefficients(n_examples, len(w))), task)


def aligned_fedavg(arch: ArchitectureLike, weights: torch.Tensor, n_examples: Sequence[int] | None = None,
                   task: Task | None = None, kinds: Iterable[str] = KINDS, seed: int = 0,
                   progress: Progress = None) -> torch.Tensor:
    """FedAvg after alignment: clients re-expressed in the basis of their running average by weight
    matching, then averaged with weights ``n_examples`` -> ``[P]`` (matched averaging in the spirit of
    Wang et al., ICLR 2020, with Git Re-Basin's weight matching in place of their Bayesian matching)."""
    return aligned_average(arch, weights, task=task, kinds=kinds, coefficients=n_examples, seed=seed,
                           progress=progress)


# ---------------------------------------------------------------------------------------------- dispatch
def merge(
    arch: ArchitectureLike,
    weights: torch.Tensor,
    reference: torch.Tensor | None = None,
    task: Task | Sequence[Task] | None = None,
    kinds: Iterable[str] = KINDS,
    method: str = "aligned",
    **options: Any,
) -> torch.Tensor:
    """One model ``[P]`` from ``weights`` [K, P] by ``method`` (see the module docstring and :data:`METHODS`).

    The default, ``"aligned"``, is the average after alignment to ``reference`` (or to the running average)
    with BatchNorm statistics reset on ``task``, as ``wv.merge`` always did. ``options`` go to the method's
    function: ``coefficients`` (``weighted``, ``aligned``), ``t`` (``slerp``), ``base`` and ``lam``
    (``task_arithmetic``, ``ties``, ``dare``), ``density`` (``ties``), ``drop``, ``combine``, ``seed``
    (``dare``), ``holdout`` (``soup``), ``n_samples``, ``floor`` (``fisher``; ``task`` may list one task per
    model), ``n_examples`` (``fedavg``, ``aligned_fedavg``), ``matching``, ``correction`` (``aligned``).
    """
    single = task if isinstance(task, Task) or task is None else task[0]
    base = options.pop("base", None)
    if method in NEEDS_TASK or options.get("matching") == "activation" or options.get("correction") == "repair":
        require_forward(arch, METHODS[method] + (" with activation matching or REPAIR" if method == "aligned" else ""))
    if method == "aligned":
        return aligned_average(arch, weights, reference, single, kinds, **options)
    if method == "average":
        return average(arch, weights, single, **options)
    if method == "weighted":
        return weighted_average(arch, weights, task=single, **options)
    if method == "slerp":
        return slerp(arch, weights, task=single, **options)
    if method == "task_arithmetic":
        return task_arithmetic(arch, weights, _base(base, method), task=single, **options)
    if method == "ties":
        return ties(arch, weights, _base(base, method), task=single, **options)
    if method == "dare":
        return dare(arch, weights, _base(base, method), task=single, **options)
    if method == "soup":
        if single is None:
            raise ValueError("a greedy soup needs held-out data: pass task=")
        return greedy_soup(arch, weights, single, **options)[0]
    if method == "fisher":
        if task is None:
            raise ValueError("Fisher merging needs each model's task data: pass task=")
        return fisher_merge(arch, weights, task, **options)
    if method == "fedavg":
        return fedavg(arch, weights, task=single, **options)
    if method == "aligned_fedavg":
        return aligned_fedavg(arch, weights, task=single, kinds=kinds, **options)
    raise ValueError(f"unknown merge method {method!r}; known: {', '.join(METHODS)}")
