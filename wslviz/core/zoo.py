"""``Zoo``: a population of checkpoints (metadata table + weight matrix + architecture + task)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import evaluate
from wslviz.core.protocol import ArchitectureLike, has_forward, require_forward
from wslviz.core.tasks import Task, make_task

MODEL_ID = "model_id"
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "ggap")
"""The per-checkpoint metrics on the zoo's task (what :meth:`Zoo.with_task` computes when they are missing)."""
FILE_COLUMNS = ("file", "run", "file_size", "modified", "sha256", "md5", "checksum", "path", "filename", "mtime")
"""Metadata columns that describe files rather than training (readers write the first four; published folders
often carry checksums): never hyper-parameters."""
EPOCH = "epoch"
FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK = 64, 1024
"""The weights a fingerprint reads: all of them up to 65,536, else 64 evenly spaced runs of 1,024 (single values
spread over a memory-mapped matrix made the read-ahead bring in all of it: gigabytes for GPT-2 zoos)."""


class ResultCache(Protocol):
    """Precomputed per-checkpoint results that a zoo carries (implemented by :mod:`wslviz.scale.cache`).

    Defined here so that the feature code can consult a cache without importing the layer that makes it."""

    path: Path

    def feature_set(self, zoo: Zoo, kind: str, **options: Any) -> Any | None:
        """The cached ``FeatureSet`` of ``kind`` for exactly this zoo and these options, else None."""


def _flat_block(weights: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """``weights.reshape(-1)[start:start + length]`` of a ``[n, P]`` matrix, read row by row: no copy of the whole
    matrix when its rows are not contiguous with each other (rows served from several files)."""
    parts, p = [], weights.shape[-1]
    while length > 0:
        row, column = divmod(start, p)
        take = min(length, p - column)
        parts.append(weights[row, column:column + take])
        start, length = start + take, length - take
    return torch.cat(parts)


@dataclass
class Zoo:
    """A model zoo.

    ``metadata``: one row per checkpoint (``model_id``, ``epoch``, ``seed``, hyper-parameters,
    ``train_loss``/``train_acc``/``test_loss``/``test_acc`` where known), in weight-row order.
    ``weights``: float32 ``[n_checkpoints, n_params]`` (memory-mapped when opened from disk).
    ``arch``: any kind of the architecture protocol (:mod:`wslviz.core.protocol`).
    ``task``: evaluation data, or None for weights-only zoos.
    """

    name: str
    metadata: pd.DataFrame
    weights: torch.Tensor
    arch: ArchitectureLike
    task: Task | None = None
    description: str = ""
    path: Path | None = None
    format: str = "native"
    extra: dict[str, Any] = field(default_factory=dict)
    cache: ResultCache | None = None
    """Precomputed results attached by the layer that found them (:func:`wslviz.scale.cache.load_zoo`);
    feature functions ask it first and compute only what it does not hold for this very zoo."""

    @property
    def n_checkpoints(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_params(self) -> int:
        return int(self.weights.shape[1])

    @property
    def model_ids(self) -> np.ndarray:
        """Model id per checkpoint (the row index when the metadata has no ``model_id``)."""
        if MODEL_ID in self.metadata:
            return self.metadata[MODEL_ID].to_numpy()
        return np.arange(self.n_checkpoints)

    @property
    def n_models(self) -> int:
        return len(pd.unique(self.model_ids))

    def final_index(self) -> np.ndarray:
        """Row indices of each model's last checkpoint (highest ``epoch``), in model order."""
        if EPOCH not in self.metadata:
            return np.arange(self.n_checkpoints)
        df = pd.DataFrame({"m": self.model_ids, "e": self.metadata[EPOCH].to_numpy(),
                           "i": np.arange(self.n_checkpoints)})
        return df.sort_values(["m", "e", "i"]).groupby("m", sort=True)["i"].last().to_numpy().copy()

    def subset(self, index) -> Zoo:
        """A zoo of the given rows (positions, or a boolean mask), metadata re-indexed from 0."""
        index = np.array(index)  # a copy: pandas hands out read-only arrays, which torch warns about
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return replace(self, metadata=self.metadata.iloc[index].reset_index(drop=True),
                       weights=self.weights[torch.as_tensor(index, dtype=torch.long)])

    def with_task(self, task: Task | dict | str, metrics: bool = True, progress: Any = None) -> Zoo:
        """The same zoo with evaluation data attached (a Task, a task spec, or a path to a ``.npz``); raises
        :class:`~wslviz.core.layout.NoForwardError` for an architecture that cannot run (weights only). With
        ``metrics``, the metadata gains what it lacks of ``train_loss``, ``train_acc``, ``test_loss``,
        ``test_acc`` and ``ggap``, every checkpoint evaluated on the task (``progress`` counts checkpoints over the
        two splits), so that every page has accuracies once a task is stated."""
        require_forward(self.arch, "Attaching a task")
        if isinstance(task, str | Path) and str(task).endswith(".npz"):
            task = make_task({"name": "npz", "path": str(task)})
        elif not isinstance(task, Task):
            task = make_task(task)
        if task.input_shape != self.arch.input_shape:
            raise ValueError(f"the data has inputs of shape {list(task.input_shape)}, the zoo's architecture "
                             f"expects {list(self.arch.input_shape)}")
        if task.is_classification and task.n_classes > self.arch.output_dim:
            raise ValueError(f"the data has {task.n_classes} classes, the zoo's networks give "
                             f"{self.arch.output_dim} outputs")
        meta = self.metadata
        if metrics and not set(METRICS) <= set(meta.columns):
            meta = meta.copy()
            for i, split in enumerate(("train", "test")):
                offset = (lambda d, t, i=i: progress(i * self.n_checkpoints + d, 2 * self.n_checkpoints)) \
                    if progress else None
                r = evaluate(self.arch, task, self.weights, split, progress=offset)
                for name, key in ((f"{split}_loss", "loss"), (f"{split}_acc", "accuracy")):
                    if name not in meta:
                        meta[name] = r[key].numpy().astype(np.float64)
            if "ggap" not in meta:
                meta["ggap"] = meta["train_acc"] - meta["test_acc"]
        return replace(self, task=task, metadata=meta)

    @property
    def fingerprint(self) -> str:
        """A short hash identifying this zoo's content (architecture, shape, metadata, sampled weights)."""
        h = hashlib.sha1(self.arch.to_json().encode())
        h.update(str(tuple(self.weights.shape)).encode())
        h.update(pd.util.hash_pandas_object(self.metadata, index=False).to_numpy().tobytes())
        total = self.weights.numel()
        if total > FINGERPRINT_BLOCKS * FINGERPRINT_BLOCK:  # blocks: a memory-mapped matrix stays on disk
            starts = np.linspace(0, total - FINGERPRINT_BLOCK, FINGERPRINT_BLOCKS).astype(np.int64)
            flat = torch.cat([_flat_block(self.weights, int(a), FINGERPRINT_BLOCK) for a in starts])
        else:
            flat = self.weights.reshape(-1)
        h.update(flat.contiguous().numpy().tobytes())
        h.update(str(self.task.spec if self.task else None).encode())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """Counts and ranges for a summary card."""
        out: dict[str, Any] = {
            "name": self.name, "models": self.n_models, "checkpoints": self.n_checkpoints,
            "parameters": self.n_params, "architecture": self.arch.describe(),
            "task": self.task.name if self.task else ("none (attach a .npz to evaluate)" if has_forward(self.arch)
                                                      else "none (weights only: no forward)"),
        }
        if "test_acc" in self.metadata:
            final = self.metadata["test_acc"].iloc[self.final_index()]
            out["final test accuracy"] = f"{final.min():.3f} - {final.max():.3f} (median {final.median():.3f})"
        return out

    def __repr__(self) -> str:
        return (f"Zoo({self.name!r}: {self.n_models} models, {self.n_checkpoints} checkpoints, "
                f"{self.arch.describe()}, task={self.task.name if self.task else None})")



def checkpoint_accuracies(zoo: Zoo, rows: np.ndarray) -> np.ndarray:
    """Test accuracy of the given checkpoint rows: the metadata's ``test_acc`` where known, else evaluated.

    Raises ``ValueError`` when the zoo has neither a complete ``test_acc`` column nor a task."""
    if "test_acc" in zoo.metadata and zoo.metadata["test_acc"].iloc[rows].notna().all():
        return zoo.metadata["test_acc"].to_numpy(dtype=float)[rows]
    if zoo.task is None:
        raise ValueError("this zoo has neither a 'test_acc' column nor a task to compute accuracies with")
    return evaluate(zoo.arch, zoo.task, zoo.weights[torch.as_tensor(rows)])["accuracy"].numpy().astype(float)


def reference_row(zoo: Zoo) -> int:
    """The alignment reference: the final checkpoint with the best test accuracy (the first final
    checkpoint when accuracies are unknown)."""
    final = zoo.final_index()
    try:
        acc = checkpoint_accuracies(zoo, final)
    except ValueError:
        return int(final[0])
    return int(final[int(np.nanargmax(acc))])
