"""A small zoo made live: a task, an MLP or the digits CNN, ranges of seed / learning rate / weight decay /
epochs, and a number of models, all trained at once by the batched trainer behind ``wslviz make-zoo``
(:func:`wslviz.core.training.train`). The Train-a-zoo page is a form over :class:`Sweep`.

Every model trains in the same batched run for the longest epoch budget; a model whose budget is shorter
keeps only its checkpoints up to its budget. Its weights there are exactly those of a run stopped at that
epoch (the trainer has no schedule that looks ahead), so a range of epochs costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.tasks import Task, make_task
from wslviz.core.training import DIGITS_CNN, Recipe, train
from wslviz.core.zoo import Zoo

Progress = Callable[[int, int], None] | None
MODELS = ("mlp", "digits-cnn")
ACTIVATIONS = ("relu", "tanh", "leaky_relu", "gelu")
TASKS: dict[str, dict[str, Any]] = {
    "moons": {"name": "moons", "n_samples": 1000, "noise": 0.2, "seed": 0},
    "circles": {"name": "circles", "n_samples": 1000, "noise": 0.1, "factor": 0.5, "seed": 0},
    "spirals": {"name": "spirals", "n_samples": 1200, "noise": 0.15, "n_classes": 3, "seed": 0},
    "digits": {"name": "digits", "seed": 0},
}
"""The built-in tasks, with the specs of the bundled zoos (an uploaded ``.npz`` is a fourth kind)."""


def _values(lo: float, hi: float, n: int, log: bool) -> list[float]:
    """``n`` values from ``lo`` to ``hi`` (one when they are equal): log-spaced where ``log`` and ``lo > 0``;
    with ``lo == 0`` on a log range, 0 and then log-spaced values up to ``hi`` (a decade apart)."""
    if n <= 1 or lo == hi:
        return [float(hi)]
    if log and lo == 0:
        return [0.0] + [float(v) for v in np.geomspace(hi / 10 ** (n - 2), hi, n - 1)]
    return [float(v) for v in (np.geomspace(lo, hi, n) if log else np.linspace(lo, hi, n))]


@dataclass(frozen=True)
class Sweep:
    """What to train. ``task``: a task spec (e.g. ``TASKS["moons"]`` or ``{"name": "npz", "path": ...}``);
    ``model``: ``"mlp"`` (``depth`` hidden layers of ``width`` units, ``activation``) or ``"digits-cnn"``
    (the bundled digits CNN; digits only). Ranges are ``(low, high)``; ``n_lr`` / ``n_wd`` / ``n_epochs``
    values are spread over them (learning rate and weight decay in log scale) and dealt out evenly to the
    ``n_models`` models, whose seeds are ``first_seed, first_seed + 1, ...``."""

    task: dict[str, Any]
    model: str = "mlp"
    width: int = 16
    depth: int = 2
    activation: str = "relu"
    n_models: int = 64
    first_seed: int = 0
    lr: tuple[float, float] = (0.003, 0.1)
    n_lr: int = 4
    weight_decay: tuple[float, float] = (0.0, 1e-3)
    n_wd: int = 2
    epochs: tuple[int, int] = (20, 20)
    n_epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"

    def architecture(self, task: Task) -> dict[str, Any]:
        """The architecture spec for ``task`` (raises ``ValueError`` for a model that cannot read it)."""
        if self.model == "digits-cnn":
            if task.input_shape != tuple(DIGITS_CNN["input_shape"]):
                raise ValueError(f"the digits CNN reads 1x8x8 images; this task's inputs are {list(task.input_shape)}")
            return DIGITS_CNN
        if self.model != "mlp":
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(MODELS)}")
        if len(task.input_shape) != 1:
            raise ValueError(f"an MLP reads flat inputs; this task's inputs are {list(task.input_shape)} "
                             "(use the digits CNN for images)")
        out = task.n_classes if task.kind == "classification" else int(task.y_train.reshape(len(task.y_train), -1)
                                                                        .shape[1])
        return mlp_spec([task.input_shape[0], *[self.width] * self.depth, out], self.activation)

    def hyperparameters(self) -> pd.DataFrame:
        """One row per model: ``seed``, ``lr``, ``weight_decay``, ``batch_size``, ``optimizer`` and its epoch
        budget ``epochs``; every value of each range goes to an equal share of the models (shuffled)."""
        grid = {"lr": tuple(_values(*self.lr, self.n_lr, log=True)),
                "weight_decay": tuple(_values(*self.weight_decay, self.n_wd, log=True))}
        recipe = Recipe(name="sweep", description="", arch={}, task=self.task, n_models=self.n_models, grid=grid,
                        epochs=max(self.epochs), checkpoints=(0,),
                        fixed={"batch_size": self.batch_size, "optimizer": self.optimizer})
        hp = recipe.hyperparameters(seed=self.first_seed)
        hp["seed"] = self.first_seed + np.arange(self.n_models)
        budgets = sorted({int(round(v)) for v in _values(*self.epochs, self.n_epochs, log=False)})
        rng = np.random.default_rng(self.first_seed + 1)
        hp["epochs"] = np.asarray(budgets)[rng.permutation(np.resize(np.arange(len(budgets)), self.n_models))]
        return hp

    def checkpoints(self) -> list[int]:
        """Epochs saved: 0, every epoch up to 5, then about ten more up to the longest budget, and every budget."""
        top = max(self.epochs)
        budgets = {int(round(v)) for v in _values(*self.epochs, self.n_epochs, log=False)}
        return sorted({0, *range(1, min(5, top) + 1), *np.linspace(0, top, 11).round().astype(int).tolist(), *budgets})


def train_sweep(sweep: Sweep, name: str = "trained-zoo", progress: Progress = None,
                on_checkpoint: Callable[[int, np.ndarray, torch.Tensor], None] | None = None) -> Zoo:
    """Train every model of ``sweep`` at once and return the zoo (checkpoints past a model's epoch budget
    dropped; ``epochs`` in the metadata is the budget). ``progress(done, total)`` counts epochs;
    ``on_checkpoint(epoch, rows, weights)`` sees each checkpoint as it is saved (see
    :func:`wslviz.core.training.train`)."""
    task = make_task(sweep.task)
    arch = Architecture(sweep.architecture(task))
    hp = sweep.hyperparameters()
    threads = torch.get_num_threads()
    try:
        # one thread, as make-zoo's recipes do: these steps are small, and on a busy two-core machine two
        # threads made 64 moons MLPs over 30 epochs take 117 s against 5.6 s on one
        torch.set_num_threads(1)
        weights, meta = train(arch, task, hp.drop(columns="epochs"), max(sweep.epochs), sweep.checkpoints(),
                              progress=progress, on_checkpoint=on_checkpoint)
    finally:
        torch.set_num_threads(threads)
    meta.insert(meta.columns.get_loc("lr"), "epochs", hp["epochs"].to_numpy()[meta["model_id"].to_numpy()])
    keep = np.flatnonzero((meta["epoch"] <= meta["epochs"]).to_numpy())
    description = (f"{sweep.n_models} {arch.describe()} on {task.name}, trained live: learning rate "
                   f"{sweep.lr[0]:g}-{sweep.lr[1]:g}, weight decay "
                   f"{sweep.weight_decay[0]:g}-{sweep.weight_decay[1]:g}, "
                   f"{sweep.epochs[0]}-{sweep.epochs[1]} epochs, seeds from {sweep.first_seed}.")
    return Zoo(name=name, metadata=meta.iloc[keep].reset_index(drop=True), weights=weights[torch.as_tensor(keep)],
               arch=arch, task=task, description=description)
