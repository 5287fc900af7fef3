"""A zoo with a known family tree, for model lineage (``wslviz make-zoo --only digits-lineage``).

Several roots are pre-trained independently (their own seeds); each is fine-tuned into children, one per task
variant; every child is fine-tuned again, on its own variant, into grandchildren that each specialise on a subset
of the classes: three levels, a forest whose edges are known.
The metadata's ``parent`` column holds each model's parent ``model_id`` (empty for roots), ``family`` its root's,
``depth`` its level and ``task`` the variant it was last trained on. One checkpoint per model (its final one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.arch import Architecture
from wslviz.core.tasks import make_task
from wslviz.core.trainloop import evaluate_columns, thread_cap
from wslviz.core.zoo import Zoo

Progress = Callable[[int, int], None] | None
Trainer = Callable[..., tuple[torch.Tensor, pd.DataFrame]]


@dataclass(frozen=True)
class TreeRecipe:
    """Roots pre-trained on ``task``, children fine-tuned on each of ``child_variants``, and grandchildren: every
    child is fine-tuned again on its variant's training examples of each class set in ``grandchild_classes``.

    ``trainer`` is the batched trainer, :func:`wslviz.core.training.train` (passed in by the recipe table there,
    which imports this module)."""

    name: str
    description: str
    arch: dict[str, Any]
    task: dict[str, Any]
    roots: int
    root: dict[str, Any]
    root_epochs: int
    child_variants: tuple[str, ...]
    grandchild_classes: tuple[tuple[int, ...], ...]
    finetune: dict[str, Any]
    finetune_epochs: int
    threads: int | None = 1
    trainer: Trainer | None = field(default=None, compare=False)

    def plan(self, seed: int = 0) -> pd.DataFrame:
        """One row per model in training order: ``model_id``, ``parent`` (None for roots), ``family``, ``depth``,
        ``task`` (the variant), ``classes`` (the classes it was last trained on, ``"all"`` or e.g. ``"0-4"``),
        ``seed``."""
        rows: list[dict[str, Any]] = []

        def add(parent: int | None, family: int, depth: int, task: str, classes: str) -> int:
            rows.append({"model_id": len(rows), "parent": parent, "family": family, "depth": depth, "task": task,
                         "classes": classes, "seed": seed * 100_000 + len(rows)})
            return len(rows) - 1

        for r in [add(None, r, 0, "original", "all") for r in range(self.roots)]:
            for c, v in [(add(r, r, 1, v, "all"), v) for v in self.child_variants]:
                for classes in self.grandchild_classes:
                    add(c, r, 2, v, _name(classes))
        return pd.DataFrame(rows)

    def train_zoo(self, seed: int = 0, progress: Progress = None) -> Zoo:
        """Train the roots, then each level from its parents' final weights (one batched run per variant)."""
        arch = Architecture(self.arch)
        plan = self.plan(seed)
        final = torch.zeros(len(plan), arch.n_params)
        metas = []
        steps = list(plan.groupby(["depth", "task"], sort=True).groups.items())
        with thread_cap(self.threads):
            for done, ((depth, variant), index) in enumerate(steps, 1):
                todo = plan.loc[index]
                task = make_task({**self.task, "variant": variant})
                hp = pd.DataFrame([{"seed": s, **(self.root if depth == 0 else self.finetune)} for s in todo.seed])
                start = None if depth == 0 else final[torch.as_tensor(todo.parent.astype(int).to_numpy().copy())]
                epochs = self.root_epochs if depth == 0 else self.finetune_epochs
                subsets = [torch.as_tensor(np.flatnonzero(np.isin(task.y_train.numpy(), _classes(c, task.n_classes))))
                           for c in todo.classes]
                w, meta = self.trainer(arch, task, hp, epochs, (epochs,), seed=seed, initial=start, subsets=subsets)
                final[torch.as_tensor(todo.model_id.to_numpy().copy())] = w
                meta["model_id"] = todo.model_id.to_numpy()
                meta["task_acc"] = meta["test_acc"]  # accuracy on the variant it was trained on
                metas.append(meta.drop(columns=[c for c in meta if c.startswith(("train_", "test_")) or c == "ggap"]))
                if progress:
                    progress(done, len(steps))
        meta = pd.concat(metas).set_index("model_id").loc[plan.model_id].reset_index()
        meta = plan.merge(meta.drop(columns="seed"), on="model_id")
        meta["parent"] = meta["parent"].astype("Int64")
        meta = evaluate_columns(arch, make_task(self.task), final, meta)
        return Zoo(name=self.name, metadata=meta, weights=final, arch=arch, task=make_task(self.task),
                   description=self.description)


def _name(classes: tuple[int, ...]) -> str:
    return f"{min(classes)}-{max(classes)}" if list(classes) == list(range(min(classes), max(classes) + 1)) else \
        ",".join(map(str, classes))


def _classes(name: str, n_classes: int) -> list[int]:
    if name == "all":
        return list(range(n_classes))
    if "-" in name:
        lo, hi = name.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(c) for c in name.split(",")]
