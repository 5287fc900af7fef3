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

This module is long because the recipes of every bundled zoo (plain, fine-tuning, federated, ...) live
beside the one batched trainer they all call, so ``wslviz make-zoo`` has a single place to look.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.batched import forward
from wslviz.core.evaluation import evaluate
from wslviz.core.inr import InrRecipe
from wslviz.core.lineage_train import TreeRecipe
from wslviz.core.lora_train import DIGITS_LORA, LoraRecipe
from wslviz.core.module_train import MODULE_RECIPES
from wslviz.core.optim import ADAM_BETAS as ADAM_BETAS  # the optimiser lived here: its names stay importable
from wslviz.core.optim import ADAM_EPS as ADAM_EPS
from wslviz.core.optim import ADAMW_BETAS as ADAMW_BETAS
from wslviz.core.optim import OPTIMIZERS as OPTIMIZERS
from wslviz.core.optim import BatchedOptimizer as BatchedOptimizer
from wslviz.core.tasks import Task, make_task
from wslviz.core.trainloop import DATA_STREAM as DATA_STREAM  # part of this module's interface since it began
from wslviz.core.trainloop import (
    GridRecipe,
    checkpoint_table,
    epoch_counter,
    evaluate_columns,
    fill_hyperparameters,
    run_epochs,
    thread_cap,
    train_by_batch_size,
)
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
Adam uses betas (0.9, 0.999) and eps 1e-8 as ``torch.optim.Adam`` does; AdamW betas (0.9, 0.98)."""

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
    return fill_hyperparameters(pd.DataFrame(hparams), HYPERPARAMETERS)


def _train_group(arch: Architecture, task: Task, hp: pd.DataFrame, epochs: int, checkpoints: Sequence[int],
                 on_epoch: Callable[[], None], initial: torch.Tensor | None = None,
                 subsets: Sequence[torch.Tensor] | None = None,
                 on_checkpoint: Callable[[int, torch.Tensor], None] | None = None) -> dict[int, torch.Tensor]:
    """Train one batch-size group; returns ``{epoch: weights [B, P]}`` for the checkpoint epochs (each also
    handed to ``on_checkpoint(epoch, weights)`` as it is saved)."""
    x, y = task.x_train, task.y_train
    weights = init_weights(arch, hp["seed"], hp["init_scale"].to_numpy(np.float64)) if initial is None else \
        initial.float().clone()
    opt = BatchedOptimizer(hp, arch.n_params)
    dropout = torch.tensor(hp["dropout"].to_numpy(np.float32, copy=True))

    def step(rows: torch.Tensor, idx: torch.Tensor, active: torch.Tensor) -> None:
        grad = torch.zeros_like(weights)  # only the rows still training are computed
        grad[rows] = batched_gradient(arch, task, weights[rows], x[idx], y[idx], dropout=dropout[rows])[1]
        opt.step(weights, grad, active)

    return run_epochs(weights, hp, len(x), epochs, checkpoints, step, on_epoch, subsets, on_checkpoint)


def train(
    arch: Architecture,
    task: Task,
    hparams: pd.DataFrame | Sequence[dict[str, Any]],
    epochs: int,
    checkpoints: Sequence[int],
    seed: int = 0,
    progress: Progress = None,
    initial: torch.Tensor | None = None,
    subsets: Sequence[torch.Tensor] | None = None,
    on_checkpoint: Callable[[int, np.ndarray, torch.Tensor], None] | None = None,
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

    ``initial`` [n_models, P]: start from these weights instead of a fresh initialisation (fine-tuning;
    epoch 0 is then ``initial``). ``subsets``: per model, the training-example indices it learns from
    (e.g. a federated client's classes), instead of the ``train_fraction`` subset.

    ``on_checkpoint(epoch, rows, weights)`` is called as each checkpoint epoch (past 0) of each batch-size
    group is saved, with the group's models (``rows`` into ``hparams``) and their weights ``[len(rows), P]``:
    for live curves while training runs.
    """
    _check_trainable(arch)
    hp = _fill_hparams(hparams)
    if (hp["dropout"] > 0).any() and not any(layer["type"] == "dropout" for layer in arch.layers):
        raise ValueError("a dropout rate is set but the architecture has no dropout layer to apply it")
    checkpoints = sorted({int(e) for e in checkpoints})
    if not checkpoints or checkpoints[0] < 0 or checkpoints[-1] > epochs:
        raise ValueError(f"checkpoint epochs must lie in [0, {epochs}], got {checkpoints}")
    on_epoch = epoch_counter(hp["batch_size"].nunique() * epochs + 1, progress)

    def group(rows: np.ndarray, group_hp: pd.DataFrame) -> dict[int, torch.Tensor]:
        return _train_group(arch, task, group_hp, epochs, checkpoints, on_epoch,
                            None if initial is None else initial[torch.as_tensor(rows)],
                            None if subsets is None else [subsets[r] for r in rows],
                            None if on_checkpoint is None else lambda epoch, w: on_checkpoint(epoch, rows, w))

    weights = train_by_batch_size(hp, checkpoints, arch.n_params, seed, group)
    meta = evaluate_columns(arch, task, weights, checkpoint_table(hp, checkpoints))
    on_epoch()
    return weights, meta


# ---------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Recipe(GridRecipe):
    """How to make a zoo of a sequential network: the fields of :class:`wslviz.core.trainloop.GridRecipe`.

    ``grid`` maps hyper-parameter names to the values models draw from; each value of each list is given
    to an equal share of the models (balanced, then shuffled by the run seed), so every value is
    represented. Hyper-parameters absent from ``grid`` take ``fixed`` or :data:`HYPERPARAMETERS` defaults.
    ``threads`` caps torch's intra-op threads while training (None: leave as is). One thread is the
    default: these steps are small, and synchronising threads costs more than it saves (measured here:
    a digits-cnn epoch took 5.6 s on one thread and 54 s on two on a busy 2-core machine).
    """

    defaults: ClassVar[Mapping[str, Any]] = HYPERPARAMETERS


def train_zoo(recipe: Recipe | FinetuneRecipe | FederatedRecipe | InrRecipe | TreeRecipe | LoraRecipe, seed: int = 0,
              progress: Progress = None):
    """Train the zoo a recipe describes and return it as a :class:`wslviz.core.zoo.Zoo`."""
    if not isinstance(recipe, Recipe):
        return recipe.train_zoo(seed, progress)
    arch = Architecture(recipe.arch)
    task = make_task(recipe.task)
    with thread_cap(recipe.threads):
        weights, meta = train(arch, task, recipe.hyperparameters(seed), recipe.epochs, recipe.checkpoints,
                              seed=seed, progress=progress)
    return Zoo(name=recipe.name, metadata=meta, weights=weights, arch=arch, task=task,
               description=recipe.description)


def task_variants(spec: dict[str, Any]) -> list[str]:
    """The digits variants a task spec names (``["original"]`` when it names none)."""
    v = spec.get("variant", "original")
    return [v] if isinstance(v, str) else list(v)


@dataclass(frozen=True)
class FinetuneRecipe:
    """A fine-tuning zoo: one base model, then fine-tunes from it on related tasks, for merging.

    The base is trained on ``task`` (a digits spec listing several variants: multi-task "pre-training" on
    all of them) and then fine-tuned on each variant alone, ``seeds`` times for every combination of the
    ``grid`` values (the setting of task arithmetic, Ilharco et al., "Editing models with task
    arithmetic", ICLR 2023: a shared pre-trained model and one fine-tune per task). Everything trains on
    the training split minus its last ``holdout`` fraction, which stays free as a validation split
    (``{**task, "holdout": holdout}``) for greedy soups, Fisher data and choosing merge options.

    Metadata: ``model_id`` (0 is the base), ``epoch``, ``role`` (``base`` / ``finetune``), ``task`` (the
    variant fine-tuned on; ``all`` for the base), the hyper-parameters, ``train_*``/``test_*``/``ggap`` on the
    zoo's task (so ``test_acc`` is the average test accuracy over the variants) and ``acc_<variant>``, the
    test accuracy on each variant.
    """

    name: str
    description: str
    arch: dict[str, Any]
    task: dict[str, Any]
    base: dict[str, Any]
    base_epochs: int
    base_checkpoints: tuple[int, ...]
    grid: dict[str, tuple[Any, ...]]
    seeds: int
    epochs: int
    checkpoints: tuple[int, ...]
    fixed: dict[str, Any] = field(default_factory=dict)
    holdout: float = 0.2
    threads: int | None = 1

    def finetunes(self, seed: int = 0) -> pd.DataFrame:
        """One row per fine-tune: ``task``, ``seed`` and its hyper-parameters (every grid combination)."""
        combos = [dict(zip(self.grid, c, strict=True)) for c in itertools.product(*self.grid.values())]
        rows = [{"task": v, **combo, **self.fixed} for v in task_variants(self.task) for combo in combos
                for _ in range(self.seeds)]
        df = pd.DataFrame(rows)
        df.insert(1, "seed", seed * 100_000 + 1 + np.arange(len(df)))
        return df

    def train_zoo(self, seed: int = 0, progress: Progress = None):
        """Train the base, then every fine-tune (one batched run per variant); returns the zoo."""
        arch = Architecture(self.arch)
        zoo_task = make_task(self.task)
        plan = self.finetunes(seed)
        variants = task_variants(self.task)
        total, done = len(variants) + 1, 0
        with thread_cap(self.threads):
            base_w, base_meta = train(arch, make_task({**self.task, "holdout": self.holdout}),
                                      [{"seed": seed * 100_000, **self.base}], self.base_epochs,
                                      self.base_checkpoints, seed=seed)
            done += 1
            if progress:
                progress(done, total)
            base_meta.insert(2, "role", "base")
            base_meta.insert(3, "task", "all")
            weights, metas = [base_w], [base_meta]
            start = base_w[-1]
            for v in variants:
                hp = plan[plan["task"] == v]
                w, meta = train(arch, make_task({**self.task, "variant": v, "holdout": self.holdout}),
                                hp.drop(columns="task"), self.epochs, self.checkpoints, seed=seed,
                                initial=start.expand(len(hp), -1))
                meta["model_id"] = hp.index.to_numpy().repeat(len(self.checkpoints)) + 1
                meta.insert(2, "role", "finetune")
                meta.insert(3, "task", v)
                weights.append(w)
                metas.append(meta)
                done += 1
                if progress:
                    progress(done, total)
        weights = torch.cat(weights)
        meta = evaluate_columns(arch, zoo_task, weights, pd.concat(metas, ignore_index=True))
        for v in variants:
            meta[f"acc_{v}"] = evaluate(arch, make_task({**self.task, "variant": v}), weights)["accuracy"].numpy(
            ).astype(np.float64)
        return Zoo(name=self.name, metadata=meta, weights=weights, arch=arch, task=zoo_task,
                   description=self.description)


def non_iid_split(y: torch.Tensor, n_clients: int, classes_per_client: int, seed: int = 0) -> list[torch.Tensor]:
    """Training indices per client, each client holding only a few classes (pathological non-IID split).

    Client ``c`` holds classes ``(c * classes_per_client + j) mod n_classes`` for ``j < classes_per_client``;
    the examples of a class are shuffled (``seed``) and dealt evenly among the clients holding it, so every
    example belongs to exactly one client (the shards of McMahan et al., "Communication-efficient learning of
    deep networks from decentralized data", AISTATS 2017, without their random shard assignment).
    """
    n_classes = int(y.max()) + 1
    holders: dict[int, list[int]] = {k: [] for k in range(n_classes)}
    for c in range(n_clients):
        for j in range(classes_per_client):
            holders[(c * classes_per_client + j) % n_classes].append(c)
    gen = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(n_clients)]
    for k, clients in holders.items():
        idx = (y == k).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        for share, c in zip(torch.tensor_split(idx, max(1, len(clients))), clients, strict=False):
            parts[c].append(share)
    return [torch.sort(torch.cat(p)).values if p else torch.zeros(0, dtype=torch.long) for p in parts]


def average_clients(weights: torch.Tensor, n_examples: Sequence[int]) -> torch.Tensor:
    """FedAvg's server step (McMahan et al. 2017): the average of client models ``[K, P]`` weighted by their
    numbers of training examples, computed in float64 -> ``[P]`` float32."""
    n = torch.as_tensor(np.asarray(n_examples, dtype=np.float64))
    return ((n / n.sum()) @ weights.double()).float()


def federated_rounds(arch: Architecture, task: Task, start: torch.Tensor, subsets: Sequence[torch.Tensor],
                     hparams: dict[str, Any], rounds: int, local_epochs: int, seed: int = 0,
                     aggregate: Callable[[torch.Tensor, Sequence[int]], torch.Tensor] = average_clients,
                     progress: Progress = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Federated training: every round each client trains ``local_epochs`` from the global model on its own
    ``subsets[c]`` (all clients batched in one run), then ``aggregate(client_weights, n_examples)`` makes the
    next global model (default :func:`average_clients`). Client ``c`` uses data-order seed ``seed * 100000 + c``
    (and a fresh optimiser) every round.

    Returns ``(clients [rounds, K, P], globals [rounds + 1, P])``; ``globals[0]`` is ``start``.
    """
    k = len(subsets)
    sizes = [len(s) for s in subsets]
    hp = [{"seed": seed * 100_000 + c, **hparams} for c in range(k)]
    clients, glob = [], [start.float()]
    for r in range(rounds):
        w, _ = train(arch, task, hp, local_epochs, [local_epochs], seed=seed * 1000 + r,
                     initial=glob[-1].expand(k, -1), subsets=subsets)
        clients.append(w)
        glob.append(aggregate(w, sizes))
        if progress:
            progress(r + 1, rounds)
    return torch.stack(clients), torch.stack(glob)


@dataclass(frozen=True)
class FederatedRecipe:
    """A federated zoo: ``n_clients`` clients start from one common initialisation (seed ``seed * 100000``)
    and train on non-IID splits of ``task`` (:func:`non_iid_split`, ``classes_per_client`` classes each) for
    ``rounds`` rounds of FedAvg (:func:`federated_rounds`, ``local_epochs`` each).

    Rows: every client's model at epoch 0 (the common start) and after each round's local training (epoch
    ``round * local_epochs``, before the server averages them). Metadata: ``model_id`` (the client),
    ``epoch``, ``round``, ``classes`` (e.g. ``"0 1"``), ``n_examples``, the hyper-parameters, and
    ``train_*``/``test_*``/``ggap`` on the whole task. FedAvg of round ``r``'s rows is the global model that
    round ``r + 1`` starts from.
    """

    name: str
    description: str
    arch: dict[str, Any]
    task: dict[str, Any]
    n_clients: int
    classes_per_client: int
    rounds: int
    local_epochs: int
    hparams: dict[str, Any] = field(default_factory=dict)
    threads: int | None = 1

    def train_zoo(self, seed: int = 0, progress: Progress = None):
        """Run the federated training and return the clients' checkpoints as a zoo."""
        arch = Architecture(self.arch)
        task = make_task(self.task)
        subsets = non_iid_split(task.y_train, self.n_clients, self.classes_per_client, seed)
        start = init_weights(arch, [seed * 100_000])[0]
        with thread_cap(self.threads):
            clients, _ = federated_rounds(arch, task, start, subsets, self.hparams, self.rounds, self.local_epochs,
                                          seed=seed, progress=progress)
        k, n_classes = self.n_clients, task.n_classes
        weights = torch.cat([start.expand(k, -1), clients.reshape(-1, arch.n_params)]).reshape(
            self.rounds + 1, k, -1).transpose(0, 1).reshape(-1, arch.n_params)
        hp = _fill_hparams([{"seed": seed * 100_000 + c, **self.hparams} for c in range(k)])
        meta = hp.loc[hp.index.repeat(self.rounds + 1)].reset_index(drop=True)
        meta.insert(0, "model_id", np.repeat(np.arange(k), self.rounds + 1))
        meta.insert(1, "epoch", np.tile(np.arange(self.rounds + 1) * self.local_epochs, k))
        meta.insert(2, "round", np.tile(np.arange(self.rounds + 1), k))
        classes = [" ".join(str((c * self.classes_per_client + j) % n_classes) for j in range(self.classes_per_client))
                   for c in range(k)]
        meta.insert(3, "classes", np.repeat(classes, self.rounds + 1))
        meta.insert(4, "n_examples", np.repeat([len(s) for s in subsets], self.rounds + 1))
        meta = evaluate_columns(arch, task, weights, meta)
        return Zoo(name=self.name, metadata=meta, weights=weights, arch=arch, task=task, description=self.description)


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

RECIPES: dict[str, Recipe | FinetuneRecipe | FederatedRecipe | InrRecipe] = {
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
        FinetuneRecipe(
            name="digits-finetunes",
            description="One digits CNN (the digits-cnn architecture) pre-trained with Adam on all five digit "
                        "variants (original, rotated 90 degrees, mirrored, inverted, noisy), then fine-tuned on "
                        "each variant alone: 2 learning rates x 3 seeds per variant, 30 fine-tunes. test_acc is "
                        "the average over the variants; acc_<variant> per variant. For task arithmetic, TIES, "
                        "DARE, soups and Fisher merging.",
            arch=DIGITS_CNN,
            task={"name": "digits", "seed": 0, "variant": ["original", "rotate90", "mirror", "invert", "noise"]},
            base={"optimizer": "adam", "lr": 3e-3, "batch_size": 32},
            base_epochs=6,
            base_checkpoints=(0, 1, 2, 4, 6),
            grid={"lr": (5e-4, 1e-3)},
            seeds=3,
            epochs=3,
            checkpoints=(1, 2, 3),
            fixed={"optimizer": "adam", "batch_size": 32},
        ),
        FederatedRecipe(
            name="digits-federated",
            description="Federated digits CNNs: 10 clients from one common initialisation, each holding 3 of "
                        "the 10 classes (non-IID), 10 rounds of FedAvg with 5 local Adam epochs; every client's "
                        "model after every round (before averaging).",
            arch=DIGITS_CNN,
            task={"name": "digits", "seed": 0},
            n_clients=10,
            classes_per_client=3,
            rounds=10,
            local_epochs=5,
            hparams={"optimizer": "adam", "lr": 3e-3, "batch_size": 16},
        ),
        InrRecipe(
            name="digits-inr",
            description="INRs of scikit-learn's digits: SIRENs 2-32-1 (sin, w0=10; 129 parameters) fitted to each "
                        "image resampled to 16x16 (256 pixels), five fits per image from independent random "
                        "initialisations, 300 full-batch Adam steps. model_id is the image; split by image "
                        "(70/10/20). For INR classification by metanetworks.",
            arch=mlp_spec([2, 32, 1], "sin", w0=10.0),
            image_size=16,
            steps=300,
            lr=3e-3,
            fits_per_image=5,
        ),
    ]
}
"""The bundled zoos, by name (``wslviz make-zoo`` trains them all, or ``--only NAME``)."""
RECIPES["digits-lineage"] = TreeRecipe(
    name="digits-lineage",
    description="A known family tree of digits CNNs (the digits-cnn architecture): 3 roots pre-trained with Adam "
                "from their own seeds, each fine-tuned on three digit variants (rotated, mirrored, noisy), each "
                "child specialised again on its variant's digits 0-4 and 5-9: 27 models, three levels; `parent` "
                "is each model's parent model_id. For model lineage.",
    arch=DIGITS_CNN, task={"name": "digits", "seed": 0}, roots=3,
    root={"optimizer": "adam", "lr": 3e-3, "batch_size": 32}, root_epochs=6,
    child_variants=("rotate90", "mirror", "noise"), grandchild_classes=((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)),
    finetune={"optimizer": "adam", "lr": 1e-3, "batch_size": 32},
    finetune_epochs=5, trainer=train)
# digits-resnet, tiny-transformer: module architectures (core/module_train.py), trained with this module's optimiser
RECIPES.update({name: r.with_optimizer(BatchedOptimizer) for name, r in MODULE_RECIPES.items()})
RECIPES["digits-lora"] = replace(DIGITS_LORA, trainer=train)
