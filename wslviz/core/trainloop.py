"""What every batched trainer shares: the sequential one (:mod:`wslviz.core.training`), the module-architecture
one (:mod:`wslviz.core.module_train`) and the INR fitter (:mod:`wslviz.core.inr`).

Balanced hyper-parameter draws, a model's own data stream (its training subset and per-epoch order, drawn from a
generator seeded by its seed and :data:`DATA_STREAM`), the divergence check at a checkpoint, progress over epochs,
the checkpoint metadata table with its evaluation columns, and a cap on torch's intra-op threads. Kept in one place
so that a sequential and a module zoo trained from the same seeds draw the same subsets and orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import evaluate
from wslviz.core.tasks import Task
from wslviz.core.zoo import METRICS

Progress = Callable[[int, int], None] | None

DATA_STREAM = 2**32
"""Offset added to a model's seed for its data generator (training subset, minibatch order), so that the data
stream and the initialisation drawn from the seed itself are independent."""


@dataclass(frozen=True)
class GridRecipe:
    """What a zoo recipe of one architecture states (:class:`wslviz.core.training.Recipe` for sequential networks,
    :class:`wslviz.core.module_train.ModuleRecipe` for module architectures): architecture and task specs,
    ``n_models``, a hyper-parameter ``grid`` drawn by :func:`draw_grid` (``seeds_per_config`` models, with
    different seeds, per drawn setting), ``fixed`` values, ``epochs``, the ``checkpoints`` epochs and a cap on
    torch's ``threads`` while training (None: as they are)."""

    defaults: ClassVar[Mapping[str, Any]] = {}
    """The hyper-parameters the trainer understands, with their defaults (set by each kind of recipe)."""

    name: str
    description: str
    arch: dict[str, Any]
    task: dict[str, Any]
    n_models: int
    grid: dict[str, tuple[Any, ...]]
    epochs: int
    checkpoints: tuple[int, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    threads: int | None = 1
    seeds_per_config: int = 1
    """Models trained per drawn hyper-parameter setting, with different seeds (``n_models`` a multiple of it):
    replicates are the independently trained pairs of Git Re-Basin (same recipe, other initialisation and data
    order)."""

    def hyperparameters(self, seed: int = 0) -> pd.DataFrame:
        """One row per model: ``seed`` (``seed * 100000 + model_id``) and the drawn hyper-parameters (each setting
        drawn once for ``seeds_per_config`` consecutive models), absent ones at their defaults."""
        return fill_hyperparameters(draw_grid(self.grid, self.fixed, self.n_models, seed, self.seeds_per_config),
                                    self.defaults)


def draw_grid(grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any], n_models: int, seed: int = 0,
              seeds_per_config: int = 1) -> pd.DataFrame:
    """One row per model: ``seed`` (``seed * 100000 + model_id``) and its hyper-parameters.

    Each value of each ``grid`` list goes to an equal share of the ``n_models / seeds_per_config`` settings
    (balanced, then shuffled by the run ``seed``: every value is represented); each setting is trained by
    ``seeds_per_config`` consecutive models (replicates that differ only in their seed); ``fixed`` values are
    the same for all."""
    if n_models % seeds_per_config:
        raise ValueError(f"n_models {n_models} is not a multiple of seeds_per_config {seeds_per_config}")
    rng = np.random.default_rng(seed)
    n_configs = n_models // seeds_per_config
    cols: dict[str, Any] = {"seed": seed * 100_000 + np.arange(n_models)}
    for name, values in grid.items():
        balanced = np.resize(np.arange(len(values)), n_configs)
        cols[name] = [values[i] for i in np.repeat(rng.permutation(balanced), seeds_per_config)]
    for name, value in fixed.items():
        cols[name] = value
    return pd.DataFrame(cols)


def fill_hyperparameters(df: pd.DataFrame, defaults: Mapping[str, Any]) -> pd.DataFrame:
    """``df`` (a ``seed`` column and any of ``defaults``' names) with every hyper-parameter of ``defaults`` (absent
    ones take the default), columns ``seed`` then ``defaults``' order; raises ``ValueError`` for a missing seed, an
    unknown name, a ``train_fraction`` outside (0, 1] or a ``dropout`` outside [0, 1)."""
    df = df.reset_index(drop=True)
    if "seed" not in df:
        raise ValueError("hyper-parameters need a 'seed' column (one seed per model)")
    unknown = set(df.columns) - set(defaults) - {"seed"}
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)}; known: seed, {', '.join(defaults)}")
    for name, default in defaults.items():
        if name not in df:
            df[name] = default
    if "train_fraction" in df and not ((df["train_fraction"] > 0) & (df["train_fraction"] <= 1)).all():
        raise ValueError("train_fraction must be in (0, 1]")
    if "dropout" in df and not ((df["dropout"] >= 0) & (df["dropout"] < 1)).all():
        raise ValueError("dropout must be in [0, 1)")
    return df[["seed", *defaults]]


def train_by_batch_size(hp: pd.DataFrame, checkpoints: Sequence[int], n_params: int, seed: int,
                        train_group: Callable[[np.ndarray, pd.DataFrame], dict[int, torch.Tensor]]) -> torch.Tensor:
    """Weights ``[n_models * n_checkpoints, P]`` (model-major) of the models of ``hp``, trained one batch-size group
    at a time by ``train_group(rows, hp.iloc[rows])`` (``{epoch: weights [len(rows), P]}``). Each group runs under
    ``torch.manual_seed(seed * 100_003 + batch_size)``, restored after: dropout masks come from the global generator,
    so a group's masks depend on the run seed and its batch size only."""
    weights = torch.empty(len(hp), len(checkpoints), n_params)
    for bs in sorted(hp["batch_size"].unique()):
        rows = np.flatnonzero(hp["batch_size"].to_numpy() == bs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 100_003 + int(bs))
            saved = train_group(rows, hp.iloc[rows])
        weights[torch.as_tensor(rows)] = torch.stack([saved[e] for e in checkpoints], 1)
    return weights.reshape(-1, n_params)


def data_streams(seeds: Sequence[int], batch_size: int, n_train: int, fractions: Sequence[float] | None = None,
                 subsets: Sequence[torch.Tensor] | None = None,
                 ) -> tuple[list[torch.Generator], list[torch.Tensor], np.ndarray]:
    """Per model: its data generator (seeded ``seed + DATA_STREAM``), its training subset and the subset sizes.

    The subset is the first ``round(fraction * n_train)`` examples (at least one batch) of a permutation drawn
    from the generator, fixed across epochs; or ``subsets`` as given (e.g. a federated client's examples)."""
    gens = [torch.Generator().manual_seed(int(s) + DATA_STREAM) for s in seeds]
    if subsets is None:
        sizes = np.maximum(batch_size, np.round(np.asarray(fractions, dtype=np.float64) * n_train).astype(int))
        if (sizes > n_train).any():
            raise ValueError(f"batch size {batch_size} is larger than the {n_train} training examples")
        subsets = [torch.randperm(n_train, generator=g)[:k] for g, k in zip(gens, sizes, strict=True)]
    else:
        sizes = np.array([len(sub) for sub in subsets])
        if (sizes < batch_size).any():
            raise ValueError(f"a training subset has fewer than batch size {batch_size} examples")
    return gens, list(subsets), sizes


def epoch_order(gens: Sequence[torch.Generator], subsets: Sequence[torch.Tensor], sizes: np.ndarray) -> torch.Tensor:
    """``[B, max size]``: row b is model b's subset in this epoch's order (a fresh permutation from its generator),
    padded with zeros past its size (a model with a smaller subset sits out the last steps)."""
    order = torch.zeros(len(subsets), int(sizes.max()), dtype=torch.long)
    for i, (g, sub) in enumerate(zip(gens, subsets, strict=True)):
        order[i, :len(sub)] = sub[torch.randperm(len(sub), generator=g)]
    return order


def run_epochs(weights: torch.Tensor, hp: pd.DataFrame, n_train: int, epochs: int, checkpoints: Sequence[int],
               step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None], on_epoch: Callable[[], None],
               subsets: Sequence[torch.Tensor] | None = None,
               on_checkpoint: Callable[[int, torch.Tensor], None] | None = None) -> dict[int, torch.Tensor]:
    """The epoch loop of one batch-size group (``hp``: one row per model, one ``batch_size``; ``seed`` and
    ``train_fraction`` columns): returns ``{epoch: weights [B, P]}`` for the checkpoint epochs.

    Each epoch walks every model's subset (:func:`data_streams`) in a fresh order (:func:`epoch_order`) in
    minibatches of exactly ``batch_size`` (the remainder is dropped, as ``DataLoader(drop_last=True)``);
    ``step(rows, idx, active)`` updates ``weights`` in place for the models ``rows`` still training (``active``
    [B] bool; a model whose smaller subset is used up sits out) on their example indices ``idx`` [len(rows),
    batch]. A checkpoint is checked for divergence, copied, handed to ``on_checkpoint(epoch, weights)``."""
    bs = int(hp["batch_size"].iloc[0])
    gens, subsets, sizes = data_streams(hp["seed"], bs, n_train, hp["train_fraction"].to_numpy(), subsets)
    n_steps = torch.as_tensor(sizes // bs)
    saved = {0: weights.clone()} if 0 in checkpoints else {}
    for epoch in range(1, epochs + 1):
        order = epoch_order(gens, subsets, sizes)
        for s in range(int(sizes.max()) // bs):
            active = n_steps > s
            rows = active.nonzero().flatten()
            step(rows, order[rows, s * bs:(s + 1) * bs], active)
        if epoch in checkpoints:
            check_finite(weights, epoch, hp["seed"])
            saved[epoch] = weights.clone()
            if on_checkpoint:
                on_checkpoint(epoch, saved[epoch])
        on_epoch()
    return saved


def check_finite(weights: torch.Tensor, epoch: int, seeds: pd.Series) -> None:
    """Raise ``FloatingPointError`` naming (up to ten) seeds of the models whose weights [B, P] are not finite."""
    if not torch.isfinite(weights).all():
        bad = (~torch.isfinite(weights)).any(1).nonzero().flatten().tolist()
        raise FloatingPointError(f"training diverged at epoch {epoch} (non-finite weights) for models with seeds "
                                 f"{seeds.iloc[bad].tolist()[:10]}")


def epoch_counter(total: int, progress: Progress) -> Callable[[], None]:
    """A callable that counts one step of ``total`` each call and reports ``progress(done, total)``."""
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    return step


def checkpoint_table(hp: pd.DataFrame, checkpoints: Sequence[int]) -> pd.DataFrame:
    """Metadata rows for ``weights [n_models * n_checkpoints, P]`` stored model-major: ``model_id``, ``epoch``,
    then the hyper-parameter columns of ``hp`` (one row per model)."""
    meta = hp.loc[hp.index.repeat(len(checkpoints))].reset_index(drop=True)
    meta.insert(0, "model_id", np.repeat(np.arange(len(hp)), len(checkpoints)))
    meta.insert(1, "epoch", np.tile(list(checkpoints), len(hp)))
    return meta


def evaluate_columns(arch: Any, task: Task, weights: torch.Tensor, meta: pd.DataFrame) -> pd.DataFrame:
    """``meta`` with the :data:`METRICS` columns (replacing any already there) of ``weights`` [len(meta), P] on
    ``task``'s full splits (:func:`wslviz.core.evaluation.evaluate`, eval mode, sequential and module
    architectures alike); ``ggap = train_acc - test_acc``."""
    meta = meta.drop(columns=[c for c in METRICS if c in meta])
    for split in ("train", "test"):
        r = evaluate(arch, task, weights, split=split)
        meta[f"{split}_loss"] = r["loss"].numpy().astype(np.float64)
        meta[f"{split}_acc"] = r["accuracy"].numpy().astype(np.float64)
    meta["ggap"] = meta["train_acc"] - meta["test_acc"]
    return meta


@contextmanager
def thread_cap(threads: int | None) -> Iterator[None]:
    """Cap torch's intra-op threads at ``threads`` (None: leave as is) for the duration."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(min(before, threads or before))
        yield
    finally:
        torch.set_num_threads(before)
