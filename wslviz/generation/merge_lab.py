"""The Merge page's computations around :func:`wslviz.generation.merging.merge`: accuracy per task of merged
models and of the ensemble (:func:`task_accuracies`, :func:`ensemble_accuracies`), how task vectors relate
(:func:`task_vector_similarity`, :func:`sign_conflicts`, TIES's sign election), curves over one parameter
(:func:`merge_sweep`), and the zoo level: which rows to merge by default, their tasks, the merge of chosen rows
and its report (:func:`default_merge_rows`, :func:`model_tasks`, :func:`merge_rows`, :func:`merge_report`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import evaluate, model_outputs
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.report import Report
from wslviz.core.tasks import Task, make_task
from wslviz.core.zoo import Zoo
from wslviz.generation.lora_merge import LABELS as ADAPTER_METHODS
from wslviz.generation.lora_merge import factor_average, merge_adapters
from wslviz.generation.merging import METHODS, NEEDS_BASE, merge, slerp, task_vectors, trim
from wslviz.understand.align import align_zoo
from wslviz.understand.repair import reset_batchnorm
from wslviz.understand.symmetry import as_batch

Progress = Callable[[int, int], None] | None


def zoo_tasks(zoo: Zoo) -> dict[str, Task]:
    """The tasks a zoo's models are about, by name: one per digits variant when the zoo's task lists several
    (``digits-finetunes``), else the zoo's task alone."""
    if zoo.task is None:
        return {}
    variants = zoo.task.spec.get("variant")
    if isinstance(variants, list | tuple) and len(variants) > 1:
        return {v: make_task({**zoo.task.spec, "variant": v}) for v in variants}
    return {zoo.task.name: zoo.task}


def task_accuracies(arch: ArchitectureLike, tasks: Mapping[str, Task], weights: torch.Tensor,
                    split: str = "test") -> pd.DataFrame:
    """Accuracy of every model (``weights`` [B, P]) on every task: one row per model, one column per task,
    and ``average`` (the mean over the tasks)."""
    w = weights.unsqueeze(0) if weights.dim() == 1 else weights
    df = pd.DataFrame({name: evaluate(arch, t, w, split=split)["accuracy"].numpy().astype(float)
                       for name, t in tasks.items()})
    df["average"] = df.mean(axis=1)
    return df


def ensemble_accuracies(arch: ArchitectureLike, tasks: Mapping[str, Task], weights: torch.Tensor,
                        split: str = "test") -> pd.Series:
    """Accuracy per task (and ``average``) of the ensemble of ``weights`` [K, P]: the class with the highest
    mean softmax probability over the K models. The usual upper reference for a merge, at K times the cost."""
    out = {}
    for name, t in tasks.items():
        x, y = t.split(split)
        prob = torch.softmax(model_outputs(arch, weights, x), -1).mean(0)
        out[name] = float((prob.argmax(-1) == y).double().mean())
    s = pd.Series(out)
    s["average"] = s.mean()
    return s


def task_vector_similarity(base: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """Cosine similarities ``[K, K]`` between the task vectors ``w_i - base`` (Ilharco et al. 2023, Fig. 4):
    near 0 means the fine-tunes changed different things; a zero vector has similarity 0 with every vector."""
    v = task_vectors(base, weights)
    n = v.norm(dim=1)
    v = v / torch.where(n > 0, n, 1.0)[:, None]
    return (v @ v.T).numpy()


def sign_conflicts(arch: ArchitectureLike, base: torch.Tensor, weights: torch.Tensor,
                   density: float = 0.2) -> pd.DataFrame:
    """Per tensor of the layout, the share of parameters where the trimmed task vectors (TIES step 1) that
    are not zero disagree in sign (Yadav et al. 2023, Sec. 3: the interference TIES resolves by electing a
    sign). Columns ``tensor``, ``n_params``, ``conflict_share``, ``active_share`` (at least one non-zero)."""
    trimmed = trim(task_vectors(base, weights), density)
    pos, neg = (trimmed > 0).any(0), (trimmed < 0).any(0)
    rows = []
    for p in arch.layout:
        if not p.trainable:
            continue
        s = p.slice
        rows.append({"tensor": p.name, "n_params": p.numel, "conflict_share": float((pos[s] & neg[s]).double().mean()),
                     "active_share": float((pos[s] | neg[s]).double().mean())})
    return pd.DataFrame(rows)


SWEEPS = {"task_arithmetic": "lam", "ties": "lam", "dare": "lam", "weighted": "t", "slerp": "t", "aligned": "t"}
"""Methods with a one-parameter curve, and that parameter: ``lam`` scales task vectors; ``t`` moves from the
first model (0) to the second (1) of two."""


def merge_sweep(arch: ArchitectureLike, tasks: Mapping[str, Task], weights: torch.Tensor, method: str,
                values: Sequence[float], base: torch.Tensor | None = None, progress: Progress = None,
                **options: Any) -> pd.DataFrame:
    """Accuracy per task along a one-parameter family of merges: ``lam`` for task arithmetic / TIES / DARE,
    ``t`` for two-model interpolation (``weighted`` = linear, ``slerp``, ``aligned`` = linear after weight
    matching the second model to the first). One row per value: the parameter, each task, ``average``."""
    if method not in SWEEPS:
        raise ValueError(f"no sweep for {method!r}; sweeps exist for {', '.join(SWEEPS)}")
    w, _ = as_batch(weights, arch)
    if SWEEPS[method] == "t" and len(w) != 2:
        raise ValueError("a sweep over t interpolates exactly two models")
    single = next(iter(tasks.values()), None)
    if method == "aligned":
        w = torch.stack([w[0], align_zoo(arch, w[1:], w[0])[0]])
    merged = []
    for i, v in enumerate(values):
        if method == "slerp":
            merged.append(slerp(arch, w, float(v), task=single))
        elif SWEEPS[method] == "t":  # linear; t outside [0, 1] extrapolates
            merged.append(reset_batchnorm(arch, ((1 - float(v)) * w[0].double() + float(v) * w[1].double()).float(),
                                          single))
        else:
            merged.append(merge(arch, w, method=method, base=base, task=single, lam=float(v), **options))
        if progress:
            progress(i + 1, len(values))
    df = task_accuracies(arch, tasks, torch.stack(merged))
    df.insert(0, SWEEPS[method], np.asarray(values, dtype=float))
    return df


# ---------------------------------------------------------------------------------------------- zoo level
def default_merge_rows(zoo: Zoo) -> tuple[list[int], int | None]:
    """Rows to merge and the base row when the user has not picked any: a fine-tuning zoo's final fine-tunes
    and its base (``role`` column); a federated zoo's clients after the last round (``round`` column), with
    their common start as base; a zoo with a ``task`` column (adapters or fine-tunes per task), each task's most
    accurate final checkpoint on its own task (``task_acc``, else ``test_acc``); else the four most accurate final
    checkpoints, no base."""
    meta, final = zoo.metadata, zoo.final_index()
    if "role" in meta:
        roles = meta["role"].to_numpy()[final]
        base = final[roles == "base"]
        return [int(r) for r in final[roles != "base"]], int(base[0]) if len(base) else None
    if "round" in meta:
        start = np.flatnonzero(meta["round"].to_numpy() == 0)
        return [int(r) for r in final], int(start[0]) if len(start) else None
    column = "task_acc" if "task_acc" in meta else "test_acc"
    acc = meta[column].to_numpy(float)[final] if column in meta else np.zeros(len(final))
    ranked = final[np.argsort(-acc, kind="stable")]
    if "task" in meta:
        tasks = meta["task"].to_numpy()[ranked]
        return [int(ranked[np.flatnonzero(tasks == t)[0]]) for t in dict.fromkeys(tasks)][:8], None
    return [int(r) for r in ranked[:4]], None


def model_tasks(zoo: Zoo, rows: Sequence[int]) -> list[Task]:
    """Each row's own task: the digits variant it was fine-tuned on (``task`` column of a fine-tuning zoo),
    else the zoo's task (what Fisher merging computes each model's Fisher on)."""
    tasks = zoo_tasks(zoo)
    if "task" in zoo.metadata:
        names = zoo.metadata["task"].to_numpy()[np.asarray(rows, dtype=int)]
        return [tasks.get(str(n), zoo.task) for n in names]
    return [zoo.task] * len(rows)


def methods_for(zoo: Zoo) -> dict[str, str]:
    """The merge methods that make sense for the zoo (name -> label): on the updates ``delta_W`` for a kind with a
    continuous symmetry (LoRA adapters: :data:`wslviz.generation.lora_merge.LABELS`, the factor average as a
    labelled baseline), else :data:`wslviz.generation.merging.METHODS`."""
    return dict(ADAPTER_METHODS) if zoo.arch.has_invariants else dict(METHODS)


def needs_base(zoo: Zoo, method: str) -> bool:
    """Whether ``method`` needs a base row of the zoo (task vectors of full networks; adapters are their own
    task vectors, their base is in the architecture)."""
    return method in NEEDS_BASE and not zoo.arch.has_invariants


def merge_rows(zoo: Zoo, rows: Sequence[int], method: str = "aligned", base_row: int | None = None,
               progress: Progress = None, details: dict[str, Any] | None = None, **options: Any) -> torch.Tensor:
    """:func:`merge` of the zoo's ``rows`` by ``method`` -> ``[P]``, filling in what the method needs from the
    zoo: ``base`` from ``base_row``, each model's own task for ``fisher`` (:func:`model_tasks`), the
    clients' ``n_examples`` column for the FedAvg methods, the zoo's task for everything else. Adapter zoos
    merge on ``delta_W`` (:func:`wslviz.generation.lora_merge.merge_adapters`; ``details`` then receives
    ``truncation_error``, per module the relative error of the rank-r re-factorisation)."""
    w = zoo.weights[torch.as_tensor(np.asarray(rows, dtype=int))].float()
    if zoo.arch.has_invariants:
        if method == "factor_average":
            return factor_average(zoo.arch, w)
        if method not in ADAPTER_METHODS:
            raise ValueError(f"adapters merge on delta_W: pick one of {', '.join(ADAPTER_METHODS)}")
        done = merge_adapters(zoo.arch, w, method, **options)
        if details is not None:
            details["truncation_error"] = done.errors
        return done.weights
    if method in NEEDS_BASE:
        if base_row is None:
            raise ValueError(f"{METHODS[method]} needs a base model: pick the row the others were fine-tuned from")
        options["base"] = zoo.weights[int(base_row)].float()
    if method in ("fedavg", "aligned_fedavg") and "n_examples" in zoo.metadata:
        options.setdefault("n_examples", zoo.metadata["n_examples"].to_numpy(float)[np.asarray(rows, dtype=int)])
    if method in ("aligned", "aligned_fedavg"):
        options["progress"] = progress
    task = model_tasks(zoo, rows) if method == "fisher" else zoo.task
    return merge(zoo.arch, w, task=task, method=method, **options)


@dataclass(frozen=True, eq=False)
class MergeReport(Report):
    """One merge of a zoo's rows, as the Merge page shows it (:func:`merge_report`)."""

    accuracy: pd.DataFrame
    best_input: float
    similarity: np.ndarray | None
    conflicts: pd.DataFrame | None


def merge_report(zoo: Zoo, rows: Sequence[int], merged: torch.Tensor, base_row: int | None = None) -> MergeReport:
    """Everything the Merge page shows about one merge of the zoo's ``rows``, a :class:`MergeReport`:

    ``accuracy``: a DataFrame, one row per model (``merged``, the ``ensemble`` of the inputs, the ``base``
    if any, each input as ``#<r>`` as the app labels checkpoint rows) with a column per task of
    :func:`zoo_tasks` and ``average``;
    ``best_input``: the inputs' best average; ``similarity`` (task-vector cosines, with a base) and
    ``conflicts`` (:func:`sign_conflicts` at TIES' default density, with a base), else None.
    """
    tasks = zoo_tasks(zoo)
    idx = torch.as_tensor(np.asarray(rows, dtype=int))
    w = zoo.weights[idx].float()
    labels = ["merged"] + ([f"base (#{base_row})"] if base_row is not None else []) + [f"#{r}" for r in rows]
    stack = [merged.unsqueeze(0)] + ([zoo.weights[int(base_row)].float().unsqueeze(0)] if base_row is not None
                                     else []) + [w]
    acc = task_accuracies(zoo.arch, tasks, torch.cat(stack))
    ens = ensemble_accuracies(zoo.arch, tasks, w)
    acc = pd.concat([acc.iloc[:1], ens.to_frame().T, acc.iloc[1:]], ignore_index=True)
    acc.insert(0, "model", [labels[0], "ensemble of the inputs", *labels[1:]])
    best = float(acc["average"].iloc[-len(rows):].max())
    if base_row is None:
        return MergeReport(acc, best, None, None)
    base = zoo.weights[int(base_row)].float()
    return MergeReport(acc, best, task_vector_similarity(base, w), sign_conflicts(zoo.arch, base, w))
