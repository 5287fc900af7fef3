"""Training zoos of module architectures at once (the ``make-zoo`` recipes ``digits-resnet``, ``tiny-transformer``).

All B models of a batch-size group live in one weight matrix ``[B, P]``; one step draws a minibatch per model
(from its own permutation of its own training subset), runs them through
:func:`wslviz.core.module_eval.batched_call` (``vmap(functional_call)`` in train mode: BatchNorm normalises
each model with its own batch statistics and updates its running statistics with PyTorch's momentum 0.1)
and differentiates the summed per-model mean losses, whose row b is model b's own gradient. The optimiser is
:class:`wslviz.core.training.BatchedOptimizer` (SGD with momentum or Adam, per-model hyper-parameters; passed in
as the recipe's ``optimizer``);
running statistics are not trained (their rows take the values BatchNorm wrote).

A model's initial weights are the built-in module's own initialisation drawn with its seed (times
``init_scale`` for linear, conv and embedding tensors); its training subset and data order come from the same
seed, so a recipe and seed give the same zoo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pandas as pd
import torch
import torch.nn.functional as F

from wslviz.core import module_eval
from wslviz.core.builtins import BUILTINS
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.tasks import Task, make_task
from wslviz.core.trainloop import DATA_STREAM as DATA_STREAM  # part of this module's interface since it began
from wslviz.core.trainloop import (
    GridRecipe,
    checkpoint_table,
    epoch_counter,
    evaluate_columns,
    run_epochs,
    thread_cap,
    train_by_batch_size,
)

Progress = Callable[[int, int], None] | None
HYPERPARAMETERS: dict[str, Any] = {"lr": 1e-3, "weight_decay": 0.0, "batch_size": 32, "optimizer": "adam",
                                   "momentum": 0.9, "init_scale": 1.0, "train_fraction": 1.0}
"""What a module recipe may vary, with defaults (the sequential trainer's set without dropout: a module's
dropout layers have their own rates)."""


def init_module_weights(arch: ModuleArchitecture, seeds: Sequence[int], init_scale: Sequence[float]) -> torch.Tensor:
    """``[B, P]``: per seed, the built-in's own initialisation drawn under ``torch.manual_seed(seed)``, linear/conv/
    embedding tensors times that model's ``init_scale``."""
    make = BUILTINS[arch.spec["builtin"]]
    scaled = [p for p in arch.layout if arch.layers[p.layer]["type"] in ("linear", "conv2d", "conv1d", "embedding")]
    out = torch.empty(len(seeds), arch.n_params)
    for i, (seed, scale) in enumerate(zip(seeds, init_scale, strict=True)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            out[i] = arch.flatten(make(**arch.spec["kwargs"]).state_dict())
        for p in scaled:
            out[i, p.slice] *= float(scale)
    return out


def _train_group(arch: ModuleArchitecture, task: Task, hp: pd.DataFrame, epochs: int, checkpoints: Sequence[int],
                 on_epoch: Callable[[], None], optimizer: Any) -> dict[int, torch.Tensor]:
    x, y = task.x_train, task.y_train
    weights = init_module_weights(arch, hp["seed"].tolist(), hp["init_scale"].tolist())
    opt = optimizer(hp, arch.n_params)
    stats = [p for p in arch.layout if p.role in ("running_mean", "running_var")]

    def step(rows: torch.Tensor, idx: torch.Tensor, active: torch.Tensor) -> None:
        w = weights[rows].requires_grad_(True)
        tensors = arch.unflatten(w)
        for p in stats:
            tensors[p.name] = tensors[p.name].detach().clone()
        with torch.enable_grad():
            out = module_eval.call(arch, tensors, x[idx], train=True, per_model_inputs=True)
            out = out.reshape(*idx.shape, -1)
            losses = F.cross_entropy(out.reshape(-1, out.shape[-1]), y[idx].reshape(-1),
                                     reduction="none").view(idx.shape).mean(1)
            (grad_rows,) = torch.autograd.grad(losses.sum(), w)
        grad = torch.zeros_like(weights)
        grad[rows] = grad_rows
        opt.step(weights, grad, active)
        for p in stats:  # running statistics are what BatchNorm wrote, not optimised
            weights[rows, p.slice] = tensors[p.name].reshape(len(rows), -1)

    return run_epochs(weights, hp, len(x), epochs, checkpoints, step, on_epoch)


@dataclass(frozen=True)
class ModuleRecipe(GridRecipe):
    """A zoo of one built-in module architecture (the fields of :class:`wslviz.core.trainloop.GridRecipe`, two
    threads by default), trained by :func:`train_module_zoo`."""

    defaults: ClassVar[Mapping[str, Any]] = HYPERPARAMETERS
    threads: int | None = 2
    optimizer: Any = None
    """The batched optimiser class, ``optimizer(hparams, n_params)`` with ``step(weights, grad, active)``
    (:class:`wslviz.core.training.BatchedOptimizer`; set by :meth:`with_optimizer` where the recipe is registered
    in :data:`wslviz.core.training.RECIPES`, so that this module need not import the trainer's)."""

    def with_optimizer(self, optimizer: Any) -> ModuleRecipe:
        return replace(self, optimizer=optimizer)

    def train_zoo(self, seed: int = 0, progress: Progress = None):
        return train_module_zoo(self, seed, progress)


def train_module_zoo(recipe: ModuleRecipe, seed: int = 0, progress: Progress = None):
    """Train the zoo ``recipe`` describes; returns a :class:`wslviz.core.zoo.Zoo` with metadata columns
    ``model_id``, ``epoch``, the hyper-parameters, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``,
    ``ggap`` (every checkpoint evaluated in eval mode on the full splits)."""
    from wslviz.core.zoo import Zoo

    if recipe.optimizer is None:
        raise ValueError(f"recipe {recipe.name} has no optimiser: use wslviz.core.training.RECIPES[{recipe.name!r}]")
    arch = ModuleArchitecture(recipe.arch)
    task = make_task(recipe.task)
    hp = recipe.hyperparameters(seed)
    checkpoints = sorted(set(recipe.checkpoints))
    on_epoch = epoch_counter(hp["batch_size"].nunique() * recipe.epochs + 1, progress)
    with thread_cap(recipe.threads):
        weights = train_by_batch_size(
            hp, checkpoints, arch.n_params, seed,
            lambda rows, group: _train_group(arch, task, group.reset_index(drop=True), recipe.epochs, checkpoints,
                                             on_epoch, recipe.optimizer))
        meta = evaluate_columns(arch, task, weights, checkpoint_table(hp, checkpoints))
    on_epoch()
    return Zoo(name=recipe.name, metadata=meta, weights=weights, arch=arch, task=task, description=recipe.description)


DIGITS_RESNET = {"kind": "module", "builtin": "resnet20",
                 "kwargs": {"depth": 8, "channels": [12, 12, 24], "in_channels": 1}, "input_shape": [1, 8, 8]}
TINY_TRANSFORMER = {"kind": "module", "builtin": "gpt",
                    "kwargs": {"vocab_size": 24, "seq_len": 3, "n_classes": 23, "d_model": 16, "n_head": 2,
                               "n_layer": 1},
                    "input_shape": [3], "input_dtype": "int", "input_high": 24}

TRANSFORMER_MAX = {**TINY_TRANSFORMER, "kwargs": {**TINY_TRANSFORMER["kwargs"], "d_model": 32}}

MODULE_RECIPES: dict[str, ModuleRecipe] = {
    r.name: r
    for r in [
        ModuleRecipe(
            name="digits-resnet",
            description="CIFAR-style ResNet-8 (BasicBlocks, BatchNorm, 12/12/24 channels) on scikit-learn digits; "
                        "optimizer, learning rate, weight decay, init scale and train fraction varied: 16 "
                        "settings, each trained from 4 seeds (independently trained replicates).",
            arch=DIGITS_RESNET,
            task={"name": "digits", "seed": 0},
            n_models=64,
            grid={"optimizer": ("sgd", "adam"), "lr": (3e-3, 1e-2, 3e-2, 1e-1), "weight_decay": (0.0, 1e-3),
                  "init_scale": (0.5, 1.0), "train_fraction": (0.1, 0.3, 1.0)},
            fixed={"batch_size": 64},
            epochs=20,
            checkpoints=(0, 2, 6, 20),
            seeds_per_config=4,
        ),
        ModuleRecipe(
            name="tiny-transformer",
            description="One-layer pre-LN GPT (d=16, 2 heads) on modular addition a + b mod 23 (half the "
                        "problems held out), trained full-batch with AdamW (lr 3e-3) for 3000 steps; weight decay "
                        "0, 0.1, 0.3 or 1.0, 12 seeds each. With enough weight decay the models first memorise their "
                        "training problems, then generalise to the held-out half (grokking: Power et al. 2022); "
                        "without it they memorise only, test accuracy near chance (1/23): compare the checkpoints "
                        "at steps 300, 1000 and 3000.",
            arch=TINY_TRANSFORMER,
            task={"name": "modadd", "p": 23, "seed": 0},
            n_models=48,
            grid={"weight_decay": (0.0, 0.1, 0.3, 1.0)},
            fixed={"optimizer": "adamw", "lr": 3e-3, "batch_size": 265},  # the whole training split: 265 problems
            epochs=3000,
            checkpoints=(0, 300, 1000, 3000),
            seeds_per_config=12,
        ),
        ModuleRecipe(
            name="transformer-max",
            description="One-layer pre-LN GPT (d=32, 2 heads) on the larger of two tokens, max(a, b) for a, b < 23 "
                        "(half the problems held out), trained full-batch with AdamW (lr 3e-3) for 1500 steps, "
                        "weight decay 0 or 1.0, 8 seeds each. Every model generalises; independently trained pairs "
                        "have a loss barrier that weight and activation matching remove most of (contrast "
                        "tiny-transformer, whose grokked models stay apart).",
            arch=TRANSFORMER_MAX,
            task={"name": "tokenmax", "p": 23, "seed": 0},
            n_models=16,
            grid={"weight_decay": (0.0, 1.0)},
            fixed={"optimizer": "adamw", "lr": 3e-3, "batch_size": 265},
            epochs=1500,
            checkpoints=(0, 100, 1500),
            seeds_per_config=8,
        ),
    ]
}
"""The bundled module zoos, by name (registered in :data:`wslviz.core.training.RECIPES`)."""
