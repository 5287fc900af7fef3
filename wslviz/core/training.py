"""Training many models at once: the batched trainer behind ``wslviz make-zoo``, and the zoo recipes.

All B models of a run live in one weight matrix ``W`` ``[B, P]``. One step gathers a minibatch per
model (``[B, batch, ...]``, each model drawing from its own permutation of its own training subset),
runs :func:`wslviz.core.batched.forward` on all models together, and differentiates the *sum* of the
per-model mean losses: model b's loss depends only on row b, so row b of the gradient is exactly that
model's own gradient. The optimisers (SGD with momentum, Adam) are written on ``[B, P]`` tensors with
per-model learning rate, weight decay and momentum, and a per-model choice between the two, so one
run can mix every hyper-parameter except the batch size (models are grouped by batch size).

Semantics follow PyTorch's defaults: ``nn.Linear``/``nn.Conv2d`` initialisation (uniform in
``+-1/sqrt(fan_in)``, times a per-model ``init_scale``), L2 weight decay added to the gradient
(``torch.optim.SGD``/``Adam``), an epoch is one pass over the model's training subset in minibatches of
exactly ``batch_size`` (the remainder is dropped, as ``DataLoader(drop_last=True)`` does).

Determinism: a model's initial weights, training subset and data order come from its own ``seed``
alone; dropout masks come from a generator seeded by the run seed and the batch-size group. The same
recipe and seed give bit-identical weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.batched import forward
from wslviz.core.evaluation import evaluate
from wslviz.core.tasks import Task, make_task
from wslviz.core.zoo import Zoo

Progress = Callable[[int, int], None] | None

HYPERPARAMETERS: dict[str, Any] = {
    "lr": 0.01,
    "weight_decay": 0.0,
    "batch_size": 32,
    "optimizer": "sgd",
    "momentum": 0.9,
    "dropout": 0.0,
    "init_scale": 1.0,
    "train_fraction": 1.0,
}
"""Every hyper-parameter the trainer understands, with its default. ``momentum`` applies to SGD only;
Adam uses betas (0.9, 0.999) and eps 1e-8 as ``torch.optim.Adam`` does."""

OPTIMIZERS = ("sgd", "adam")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
DATA_STREAM = 2**32
"""Offset between a model's initialisation seed and the seed of its data-order generator."""


# ---------------------------------------------------------------------------------------------- init
def init_weights(arch: Architecture, seeds: Sequence[int], init_scale: Sequence[float] | float = 1.0) -> torch.Tensor:
    """Freshly initialised weights ``[B, P]``, one row per seed, like PyTorch's layer defaults.

    Linear and conv weights and biases are uniform in ``+-1/sqrt(fan_in)`` (what ``nn.Linear`` and
    ``nn.Conv2d`` draw: Kaiming-uniform with ``a=sqrt(5)``), times the model's ``init_scale``;
    BatchNorm/LayerNorm start at weight 1, bias 0 (running mean 0, variance 1) and are not scaled.
    Row b depends only on ``seeds[b]`` and ``init_scale[b]``.
    """
    seeds = [int(s) for s in seeds]
    scale = torch.tensor(np.asarray(init_scale, dtype=np.float32)).expand(len(seeds)).reshape(-1, 1)
    weights = torch.empty(len(seeds), arch.n_params)
    for b, seed in enumerate(seeds):  # a generator per model, so a model's weights do not depend on its batch mates
        gen = torch.Generator().manual_seed(seed)
        for p in arch.layout:
            layer = arch.layers[p.layer]
            if layer["type"] in ("linear", "conv2d"):
                fan_in = layer["in_features"] if layer["type"] == "linear" else (
                    layer["in_channels"] * layer["kernel_size"] ** 2)
                bound = fan_in ** -0.5
                values = (torch.rand(p.numel, generator=gen) * 2 - 1) * bound * scale[b]
            elif p.role in ("weight", "running_var"):
                values = torch.ones(p.numel)
            else:
                values = torch.zeros(p.numel)
            weights[b, p.slice] = values
    return weights


# ---------------------------------------------------------------------------------------------- optimiser
class BatchedOptimizer:
    """SGD with momentum and Adam for B models at once, with per-model hyper-parameters.

    Each row follows ``torch.optim.SGD(lr, momentum, weight_decay)`` or
    ``torch.optim.Adam(lr, weight_decay)`` (Kingma & Ba 2015) exactly, chosen per model by
    ``optimizer``. ``step`` leaves the rows of inactive models (and their state) untouched.
    """

    def __init__(self, hparams: pd.DataFrame, n_params: int):
        def col(name: str) -> torch.Tensor:
            return torch.tensor(hparams[name].to_numpy(np.float32, copy=True)).view(-1, 1)

        unknown = set(hparams["optimizer"]) - set(OPTIMIZERS)
        if unknown:
            raise ValueError(f"unknown optimizer(s) {sorted(unknown)}; known: {', '.join(OPTIMIZERS)}")
        b = len(hparams)
        self.lr, self.weight_decay, self.momentum = col("lr"), col("weight_decay"), col("momentum")
        self.adam = torch.tensor((hparams["optimizer"] == "adam").to_numpy(copy=True)).view(-1, 1)
        self.buf = torch.zeros(b, n_params)  # SGD momentum buffer
        self.m = torch.zeros(b, n_params)  # Adam first and second moments
        self.v = torch.zeros(b, n_params)
        self.t = torch.zeros(b, 1)  # Adam step count per model

    @torch.no_grad()
    def step(self, weights: torch.Tensor, grad: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Update ``weights`` [B, P] in place from ``grad`` [B, P]; ``active`` [B] bool masks models out."""
        a = torch.ones(len(weights), 1, dtype=torch.bool) if active is None else active.view(-1, 1)
        g = grad + self.weight_decay * weights
        buf = self.momentum * self.buf + g
        b1, b2 = ADAM_BETAS
        t = self.t + 1
        m = b1 * self.m + (1 - b1) * g
        v = b2 * self.v + (1 - b2) * g * g
        denom = (v.sqrt() / (1 - b2 ** t).sqrt()) + ADAM_EPS
        adam_update = (self.lr / (1 - b1 ** t)) * (m / denom)
        sgd_update = self.lr * buf
        update = torch.where(self.adam, adam_update, sgd_update)
        weights -= torch.where(a, update, torch.zeros(()))
        sgd_rows, adam_rows = a & ~self.adam, a & self.adam
        self.buf = torch.where(sgd_rows, buf, self.buf)
        self.m = torch.where(adam_rows, m, self.m)
        self.v = torch.where(adam_rows, v, self.v)
        self.t = torch.where(adam_rows, t, self.t)


# ---------------------------------------------------------------------------------------------- losses
def per_model_loss(task: Task, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean loss of each model on its own batch: ``outputs [B, N, out]``, ``y [B, N]`` -> ``[B]``."""
    b, n = outputs.shape[:2]
    if task.kind == "classification":
        return F.cross_entropy(outputs.reshape(b * n, -1), y.reshape(b * n), reduction="none").view(b, n).mean(1)
    return ((outputs - y.to(outputs.dtype).view(b, n, -1)) ** 2).flatten(1).mean(1)


def batched_gradient(arch: Architecture, task: Task, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                     dropout: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model losses ``[B]`` and gradients ``[B, P]`` on per-model batches ``x [B, N, ...]``, ``y [B, N]``.

    The gradient of the summed loss: row b is model b's own gradient, because model b's loss depends on
    row b only. ``dropout`` [B]: per-model dropout rate for the spec's dropout layers.
    """
    w = weights.detach().requires_grad_(True)
    with torch.enable_grad():
        out, _ = forward(arch, w, x, train=True, dropout=dropout)
        losses = per_model_loss(task, out, y)
        (grad,) = torch.autograd.grad(losses.sum(), w)
    return losses.detach(), grad


# ---------------------------------------------------------------------------------------------- trainer
def _check_trainable(arch: Architecture) -> None:
    if any(layer["type"] == "batchnorm" for layer in arch.layers):
        raise ValueError("the batched trainer does not track BatchNorm running statistics; "
                         "use an architecture without batchnorm layers")


def _fill_hparams(hparams: pd.DataFrame | Sequence[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(hparams).reset_index(drop=True)
    if "seed" not in df:
        raise ValueError("hyper-parameters need a 'seed' column (one seed per model)")
    unknown = set(df.columns) - set(HYPERPARAMETERS) - {"seed"}
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)}; known: seed, {', '.join(HYPERPARAMETERS)}")
    for name, default in HYPERPARAMETERS.items():
        if name not in df:
            df[name] = default
    if not ((df["train_fraction"] > 0) & (df["train_fraction"] <= 1)).all():
        raise ValueError("train_fraction must be in (0, 1]")
    if not ((df["dropout"] >= 0) & (df["dropout"] < 1)).all():
        raise ValueError("dropout must be in [0, 1)")
    return df[["seed", *HYPERPARAMETERS]]


def _train_group(arch: Architecture, task: Task, hp: pd.DataFrame, epochs: int, checkpoints: Sequence[int],
                 on_epoch: Callable[[], None]) -> dict[int, torch.Tensor]:
    """Train one batch-size group; returns ``{epoch: weights [B, P]}`` for the checkpoint epochs."""
    b, bs = len(hp), int(hp["batch_size"].iloc[0])
    x, y = task.x_train, task.y_train
    n_train = len(x)
    sizes = np.maximum(bs, np.round(hp["train_fraction"].to_numpy() * n_train).astype(int))
    if (sizes > n_train).any():
        raise ValueError(f"batch size {bs} is larger than the {n_train} training examples")
    gens = [torch.Generator().manual_seed(int(s) + DATA_STREAM) for s in hp["seed"]]
    subsets = [torch.randperm(n_train, generator=g)[:n] for g, n in zip(gens, sizes, strict=True)]
    steps = int(sizes.max()) // bs
    weights = init_weights(arch, hp["seed"], hp["init_scale"].to_numpy(np.float64))
    opt = BatchedOptimizer(hp, arch.n_params)
    dropout = torch.tensor(hp["dropout"].to_numpy(np.float32, copy=True))
    n_steps = torch.as_tensor(sizes // bs)
    saved = {0: weights.clone()} if 0 in checkpoints else {}
    for epoch in range(1, epochs + 1):
        order = torch.zeros(b, int(sizes.max()), dtype=torch.long)
        for i, (g, sub) in enumerate(zip(gens, subsets, strict=True)):
            order[i, :len(sub)] = sub[torch.randperm(len(sub), generator=g)]
        for s in range(steps):
            active = n_steps > s
            # models whose (smaller) subset is used up sit out: compute only the rows still training
            rows = active.nonzero().flatten()
            idx = order[rows, s * bs:(s + 1) * bs]
            grad = torch.zeros_like(weights)
            grad[rows] = batched_gradient(arch, task, weights[rows], x[idx], y[idx], dropout=dropout[rows])[1]
            opt.step(weights, grad, active)
        if epoch in checkpoints:
            if not torch.isfinite(weights).all():
                bad = (~torch.isfinite(weights)).any(1).nonzero().flatten().tolist()
                raise FloatingPointError(f"training diverged at epoch {epoch} (non-finite weights) for "
                                         f"models with seeds {hp['seed'].iloc[bad].tolist()[:10]}")
            saved[epoch] = weights.clone()
        on_epoch()
    return saved


def train(
    arch: Architecture,
    task: Task,
    hparams: pd.DataFrame | Sequence[dict[str, Any]],
    epochs: int,
    checkpoints: Sequence[int],
    seed: int = 0,
    progress: Progress = None,
) -> tuple[torch.Tensor, pd.DataFrame]:
    """Train one model per row of ``hparams`` (columns: ``seed`` and any of :data:`HYPERPARAMETERS`),
    all at once, and return the checkpoints.

    Returns ``(weights [n_models * n_checkpoints, P], metadata)``, rows model-major (model 0 at every
    checkpoint epoch, then model 1, ...). Metadata columns: ``model_id``, ``epoch``, the hyper-parameters,
    ``train_loss``, ``train_acc`` (full training split, eval mode), ``test_loss``, ``test_acc``, ``ggap``
    (``train_acc - test_acc``), all computed with :func:`wslviz.core.evaluation.evaluate` on the stored weights.
    ``progress(done, total)`` counts epochs over all batch-size groups, then the evaluation.

    A model's training subset is ``round(train_fraction * n_train)`` examples (at least one batch), the
    first ones of a permutation drawn from its seed; it stays fixed across epochs.
    """
    _check_trainable(arch)
    hp = _fill_hparams(hparams)
    if (hp["dropout"] > 0).any() and not any(layer["type"] == "dropout" for layer in arch.layers):
        raise ValueError("a dropout rate is set but the architecture has no dropout layer to apply it")
    checkpoints = sorted({int(e) for e in checkpoints})
    if not checkpoints or checkpoints[0] < 0 or checkpoints[-1] > epochs:
        raise ValueError(f"checkpoint epochs must lie in [0, {epochs}], got {checkpoints}")
    groups = sorted(hp["batch_size"].unique())
    total = len(groups) * epochs + 1
    done = 0

    def on_epoch() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    weights = torch.empty(len(hp), len(checkpoints), arch.n_params)
    for bs in groups:
        rows = np.flatnonzero(hp["batch_size"].to_numpy() == bs)
        # forward() draws dropout masks from the global generator: seed it per group, restore it after
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 100_003 + int(bs))
            saved = _train_group(arch, task, hp.iloc[rows], epochs, checkpoints, on_epoch)
        weights[torch.as_tensor(rows)] = torch.stack([saved[e] for e in checkpoints], 1)
    weights = weights.reshape(-1, arch.n_params)
    meta = hp.loc[hp.index.repeat(len(checkpoints))].reset_index(drop=True)
    meta.insert(0, "model_id", np.repeat(np.arange(len(hp)), len(checkpoints)))
    meta.insert(1, "epoch", np.tile(checkpoints, len(hp)))
    for split in ("train", "test"):
        r = evaluate(arch, task, weights, split=split)
        meta[f"{split}_loss"] = r["loss"].numpy().astype(np.float64)
        meta[f"{split}_acc"] = r["accuracy"].numpy().astype(np.float64)
    meta["ggap"] = meta["train_acc"] - meta["test_acc"]
    on_epoch()
    return weights, meta


# ---------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe:
    """How to make a zoo: architecture and task specs, a hyper-parameter grid, epochs and checkpoints.

    ``grid`` maps hyper-parameter names to the values models draw from; each value of each list is given
    to an equal share of the models (balanced, then shuffled by the run seed), so every value is
    represented. Hyper-parameters absent from ``grid`` take ``fixed`` or :data:`HYPERPARAMETERS` defaults.
    ``threads`` caps torch's intra-op threads while training (None: leave as is). One thread is the
    default: these steps are small, and synchronising threads costs more than it saves (measured here:
    a digits-cnn epoch took 5.6 s on one thread and 54 s on two on a busy 2-core machine).
    """

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

    def hyperparameters(self, seed: int = 0) -> pd.DataFrame:
        """One row per model: ``seed`` (``seed * 100000 + model_id``) and the drawn hyper-parameters."""
        rng = np.random.default_rng(seed)
        cols: dict[str, Any] = {"seed": seed * 100_000 + np.arange(self.n_models)}
        for name, values in self.grid.items():
            balanced = np.resize(np.arange(len(values)), self.n_models)
            cols[name] = [values[i] for i in rng.permutation(balanced)]
        for name, value in self.fixed.items():
            cols[name] = value
        return _fill_hparams(pd.DataFrame(cols))


def train_zoo(recipe: Recipe, seed: int = 0, progress: Progress = None):
    """Train the zoo a :class:`Recipe` describes and return it as a :class:`wslviz.core.zoo.Zoo`."""
    arch = Architecture(recipe.arch)
    task = make_task(recipe.task)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(min(threads, recipe.threads or threads))
        weights, meta = train(arch, task, recipe.hyperparameters(seed), recipe.epochs, recipe.checkpoints,
                              seed=seed, progress=progress)
    finally:
        torch.set_num_threads(threads)
    return Zoo(name=recipe.name, metadata=meta, weights=weights, arch=arch, task=task,
               description=recipe.description)


DIGITS_CNN = {
    "input_shape": [1, 8, 8],
    "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3},
        {"type": "relu"},
        {"type": "conv2d", "in_channels": 8, "out_channels": 8, "kernel_size": 3},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.0},
        {"type": "linear", "in_features": 128, "out_features": 10},
    ],
}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            name="moons-mlp",
            description="MLPs 2-16-16-2 (ReLU) trained on two moons with SGD+momentum; seed, learning rate, "
                        "weight decay and batch size varied.",
            arch=mlp_spec([2, 16, 16, 2], "relu"),
            task={"name": "moons", "n_samples": 1000, "noise": 0.2, "seed": 0},
            n_models=160,
            grid={"lr": (0.003, 0.01, 0.03, 0.1), "weight_decay": (0.0, 1e-4, 1e-3, 1e-2),
                  "batch_size": (16, 32, 64, 128)},
            epochs=30,
            checkpoints=(0, 1, 2, 5, 10, 20, 30),
        ),
        Recipe(
            name="spirals-tanh",
            description="MLPs 2-32-32-3 (tanh) trained on three spirals with Adam; tanh nets have sign "
                        "symmetry besides permutations. Seed, learning rate, weight decay and init scale varied.",
            arch=mlp_spec([2, 32, 32, 3], "tanh"),
            task={"name": "spirals", "n_samples": 1200, "noise": 0.15, "n_classes": 3, "seed": 0},
            n_models=72,
            grid={"lr": (0.001, 0.003, 0.01), "weight_decay": (0.0, 1e-3, 1e-2), "init_scale": (0.5, 1.0, 2.0)},
            fixed={"optimizer": "adam", "batch_size": 32},
            epochs=40,
            checkpoints=(0, 1, 3, 5, 10, 20, 40),
        ),
        Recipe(
            name="digits-cnn",
            description="Small CNNs Conv(1->8,3)-ReLU-Conv(8->8,3)-ReLU-flatten-dropout-Linear(128,10) on "
                        "scikit-learn digits; learning rate, weight decay, dropout, init scale, train fraction "
                        "and optimizer varied, so test accuracy spreads widely.",
            arch=DIGITS_CNN,
            task={"name": "digits", "seed": 0},
            n_models=216,
            grid={"optimizer": ("sgd", "adam"), "lr": (1e-3, 3e-3, 1e-2, 3e-2), "weight_decay": (0.0, 1e-3, 1e-2),
                  "dropout": (0.0, 0.2, 0.5), "init_scale": (0.25, 1.0, 2.0), "train_fraction": (0.15, 0.4, 1.0)},
            fixed={"batch_size": 32},
            epochs=15,
            checkpoints=(0, 1, 3, 6, 10, 15),
        ),
    ]
}
"""The bundled zoos, by name (``wslviz make-zoo`` trains them all, or ``--only NAME``)."""
