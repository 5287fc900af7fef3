"""A zoo of LoRA adapters trained here: one base network, adapters over tasks x ranks x fine-tuning set sizes x seeds.

The setting of the LoRA weight-space papers (Salama et al. 2024, DSiRe: the fine-tuning set size read from the singular
values of an adapter; Putterman et al. 2024: learning on LoRA weights), at the size of a sample zoo: a digits MLP is
trained on the original digits, then every adapter learns one digits variant (:data:`wslviz.core.tasks.DIGITS_VARIANTS`)
from the first ``n_train`` examples of a permutation drawn from its own seed, with its own rank ``r``, ``alpha`` fixed
(so the scaling ``alpha / r`` varies with the rank, as in practice), ``A`` drawn as PEFT draws it (Kaiming-uniform) and
``B`` zero. All adapters train at once: each keeps its own parameters, minibatches and Adam state (Adam acts per
element, so one summed loss trains each exactly as alone); ranks below the layout's are masked to zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.arch import Architecture
from wslviz.core.lora import LoraArchitecture, linear_targets, lora_spec
from wslviz.core.tasks import make_task
from wslviz.core.trainloop import evaluate_columns, thread_cap
from wslviz.core.zoo import Zoo

Progress = Callable[[int, int], None] | None
Trainer = Callable[..., tuple[torch.Tensor, pd.DataFrame]]


@dataclass(frozen=True)
class LoraRecipe:
    """A base network trained on ``task``, then one adapter per (variant, rank, set size, seed) on ``targets``.

    ``trainer`` is the batched trainer that trains the base, :func:`wslviz.core.training.train` (passed in by the
    recipe table there, which imports this module)."""

    name: str
    description: str
    arch: dict[str, Any]
    task: dict[str, Any]
    base: dict[str, Any]
    base_epochs: int
    targets: tuple[str, ...]
    variants: tuple[str, ...]
    ranks: tuple[int, ...]
    set_sizes: tuple[int, ...]
    seeds: int
    alpha: float
    lr: float
    epochs: int
    batch_size: int = 32
    threads: int | None = 1
    trainer: Trainer | None = field(default=None, compare=False)

    def plan(self, seed: int = 0) -> pd.DataFrame:
        """One row per adapter: ``model_id``, ``task``, ``rank``, ``alpha``, ``n_train``, ``seed``."""
        rows = [{"task": v, "rank": r, "alpha": self.alpha, "n_train": n, "seed": seed * 100_000 + s}
                for v in self.variants for r in self.ranks for n in self.set_sizes for s in range(self.seeds)]
        plan = pd.DataFrame(rows)
        plan.insert(0, "model_id", range(len(plan)))
        plan["seed"] += plan["model_id"] * 1_000  # every adapter its own draw of A and of its examples
        return plan

    def train_zoo(self, seed: int = 0, progress: Progress = None) -> Zoo:
        """Train the base, then every adapter; returns the zoo (its task: all variants, so that ``accuracy`` is
        the mean over the tasks, ``test_acc``, and ``task_acc`` the adapter's own task's test accuracy)."""
        base = Architecture(self.arch)
        base_task = make_task(self.task)
        with thread_cap(self.threads):
            base_w, _ = self.trainer(base, base_task, [{"seed": seed * 100_000, **self.base}], self.base_epochs,
                                     [self.base_epochs], seed=seed)
            arch = LoraArchitecture.with_base(
                lora_spec(linear_targets(base, self.targets, max(self.ranks)), base_model=f"{self.name} base"),
                base, base_w[-1])
            plan = self.plan(seed)
            weights = torch.zeros(len(plan), arch.n_params)
            for i, n in enumerate(self.set_sizes):
                rows = np.flatnonzero(plan["n_train"].to_numpy() == n)
                weights[rows] = train_adapters(arch, plan.iloc[rows], self.task, self.lr, self.epochs,
                                               self.batch_size)
                if progress:
                    progress(i + 1, len(self.set_sizes) + 1)
            zoo_task = make_task({**self.task, "variant": list(self.variants)})
            meta = evaluate_columns(arch, zoo_task, weights, plan.copy())
            meta["task_acc"] = np.nan
            for v in self.variants:
                rows = np.flatnonzero(plan["task"].to_numpy() == v)
                own = arch.evaluate(make_task({**self.task, "variant": v}), weights[rows])
                meta.loc[rows, "task_acc"] = own["accuracy"].numpy()
            if progress:
                progress(len(self.set_sizes) + 1, len(self.set_sizes) + 1)
        return Zoo(name=self.name, metadata=meta, weights=weights, arch=arch, task=zoo_task,
                   description=self.description)


def _multipliers(arch: LoraArchitecture, plan: pd.DataFrame) -> torch.Tensor:
    """``[B, P]``: 1 on the A rows and B columns an adapter's rank uses (B's times its scaling alpha / r), else 0."""
    mult = torch.zeros(len(plan), arch.n_params)
    slots = {p.name: p for p in arch.layout}
    for b, (rank, alpha) in enumerate(zip(plan["rank"], plan["alpha"], strict=True)):
        for m in arch.modules:
            a_slot, b_slot = slots[f"{m['name']}.lora_A"], slots[f"{m['name']}.lora_B"]
            a_mask = torch.zeros(a_slot.shape)
            a_mask[:rank] = 1
            b_mask = torch.zeros(b_slot.shape)
            b_mask[:, :rank] = alpha / rank
            mult[b, a_slot.slice], mult[b, b_slot.slice] = a_mask.reshape(-1), b_mask.reshape(-1)
    return mult


def train_adapters(arch: LoraArchitecture, plan: pd.DataFrame, task: dict[str, Any], lr: float, epochs: int,
                   batch_size: int) -> torch.Tensor:
    """Train one adapter per row of ``plan`` (``task`` variant, ``rank``, ``alpha``, ``n_train`` equal for all
    rows, ``seed``) with Adam, all at once; returns their weights ``[B, P]`` (B scaled, see the module)."""
    n_train = int(plan["n_train"].iloc[0])
    variants = sorted(set(plan["task"]))
    xs, ys = zip(*(make_task({**task, "variant": v}).split("train") for v in variants), strict=True)
    which = torch.as_tensor([variants.index(v) for v in plan["task"]])
    subsets, raw = [], torch.zeros(len(plan), arch.n_params)
    slots = {p.name: p for p in arch.layout}
    for b, s in enumerate(plan["seed"]):
        gen = torch.Generator().manual_seed(int(s))
        subsets.append(torch.randperm(len(ys[0]), generator=gen)[:n_train])
        for m in arch.modules:  # A as nn.init.kaiming_uniform_(a=sqrt(5)) draws it, B zero (PEFT's default)
            a = slots[f"{m['name']}.lora_A"]
            bound = 1 / np.sqrt(a.shape[1])
            raw[b, a.slice] = (torch.rand(a.numel, generator=gen) * 2 - 1) * bound
    subsets_t = torch.stack(subsets)
    x_all, y_all = torch.stack(xs), torch.stack(ys)
    mult = _multipliers(arch, plan)
    raw = (raw * (mult != 0)).requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=lr)
    gen = torch.Generator().manual_seed(int(plan["seed"].iloc[0]))
    steps_per_epoch = -(-n_train // batch_size)
    for _ in range(epochs):
        order = torch.argsort(torch.rand(len(plan), n_train, generator=gen), dim=1)
        for step in range(steps_per_epoch):
            pick = order[:, step * batch_size:(step + 1) * batch_size]
            idx = torch.gather(subsets_t, 1, pick)
            x = x_all[which[:, None], idx]
            y = y_all[which[:, None], idx]
            out, _ = arch.forward(raw * mult, x, train=True)
            loss = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                                     reduction="none").reshape(len(plan), -1).mean(1).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return (raw * mult).detach()



DIGITS_LORA = LoraRecipe(
    name="digits-lora",
    description="LoRA adapters of one digits MLP (64-32-10, trained on the original digits, 30 epochs): each adapter "
                "learns one digits variant (rotated, mirrored, noisy) from its own random n_train examples "
                "(50, 200 or 800), at rank 2, 4 or 8 (alpha 8), 4 seeds: 108 adapters on both linear layers, 30 "
                "epochs of Adam. task_acc: on the adapter's own variant; test_acc: on all three. For LoRA "
                "weight spaces (GL(r) symmetry, invariant features, merging on delta_W).",
    arch={"input_shape": [1, 8, 8], "layers": [
        {"type": "flatten"}, {"type": "linear", "in_features": 64, "out_features": 32}, {"type": "relu"},
        {"type": "linear", "in_features": 32, "out_features": 10}]},
    task={"name": "digits", "seed": 0}, base={"optimizer": "adam", "lr": 3e-3, "batch_size": 32}, base_epochs=30,
    targets=("1", "3"), variants=("rotate90", "mirror", "noise"), ranks=(2, 4, 8), set_sizes=(50, 200, 800),
    seeds=4, alpha=8.0, lr=1e-2, epochs=30)
"""The bundled LoRA zoo's recipe (its ``trainer`` is set by :mod:`wslviz.core.training`)."""
