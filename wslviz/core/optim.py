"""One optimiser step for B models at once, each with its own hyper-parameters: SGD with momentum, Adam and AdamW
on rows of a weight matrix ``[B, P]`` (what every batched trainer of :mod:`wslviz.core.training` steps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

OPTIMIZERS = ("sgd", "adam", "adamw")
ADAM_BETAS = (0.9, 0.999)
ADAMW_BETAS = (0.9, 0.98)
"""AdamW's betas: Power et al.'s ("Grokking", 2022); with 0.999 a tiny GPT grokking modular addition spiked back to
chance late in training."""
ADAM_EPS = 1e-8


class BatchedOptimizer:
    """SGD with momentum, Adam and AdamW for B models at once, with per-model hyper-parameters.

    Each row follows ``torch.optim.SGD(lr, momentum, weight_decay)``, ``torch.optim.Adam(lr, weight_decay)``
    (Kingma & Ba 2015; weight decay as an L2 term of the gradient) or ``torch.optim.AdamW(lr, weight_decay,
    betas=ADAMW_BETAS)`` (Loshchilov & Hutter 2019; weight decay applied to the weights, outside the moments)
    exactly, chosen per model by ``optimizer``. ``step`` leaves the rows of inactive models (and their state)
    untouched.
    """

    def __init__(self, hparams: pd.DataFrame, n_params: int):
        def col(name: str) -> torch.Tensor:
            return torch.tensor(hparams[name].to_numpy(np.float32, copy=True)).view(-1, 1)

        unknown = set(hparams["optimizer"]) - set(OPTIMIZERS)
        if unknown:
            raise ValueError(f"unknown optimizer(s) {sorted(unknown)}; known: {', '.join(OPTIMIZERS)}")
        b = len(hparams)
        self.lr, self.weight_decay, self.momentum = col("lr"), col("weight_decay"), col("momentum")
        self.adamw = torch.tensor((hparams["optimizer"] == "adamw").to_numpy(copy=True)).view(-1, 1)
        self.adam = torch.tensor(hparams["optimizer"].isin(("adam", "adamw")).to_numpy(copy=True)).view(-1, 1)
        self.beta2 = torch.where(self.adamw, ADAMW_BETAS[1], ADAM_BETAS[1])
        self.buf = torch.zeros(b, n_params)  # SGD momentum buffer
        self.m = torch.zeros(b, n_params)  # Adam first and second moments
        self.v = torch.zeros(b, n_params)
        self.t = torch.zeros(b, 1)  # Adam step count per model

    @torch.no_grad()
    def step(self, weights: torch.Tensor, grad: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Update ``weights`` [B, P] in place from ``grad`` [B, P]; ``active`` [B] bool masks models out."""
        a = torch.ones(len(weights), 1, dtype=torch.bool) if active is None else active.view(-1, 1)
        decay = self.weight_decay * weights
        g = torch.where(self.adamw, grad, grad + decay)
        buf = self.momentum * self.buf + g
        b1, b2 = ADAM_BETAS[0], self.beta2
        t = self.t + 1
        m = b1 * self.m + (1 - b1) * g
        v = b2 * self.v + (1 - b2) * g * g
        denom = (v.sqrt() / (1 - b2 ** t).sqrt()) + ADAM_EPS
        adam_update = (self.lr / (1 - b1 ** t)) * (m / denom) + torch.where(self.adamw, self.lr * decay, 0.0)
        sgd_update = self.lr * buf
        update = torch.where(self.adam, adam_update, sgd_update)
        weights -= torch.where(a, update, torch.zeros(()))
        sgd_rows, adam_rows = a & ~self.adam, a & self.adam
        self.buf = torch.where(sgd_rows, buf, self.buf)
        self.m = torch.where(adam_rows, m, self.m)
        self.v = torch.where(adam_rows, v, self.v)
        self.t = torch.where(adam_rows, t, self.t)
