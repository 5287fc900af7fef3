"""Hyper-representations: an autoencoder over flat weight vectors, trained self-supervised.

After Schürholt, Kostadinov & Borth, "Self-Supervised Representation Learning on Neural Network
Weights for Model Characteristic Prediction" (NeurIPS 2021) and Schürholt et al., "Hyper-
Representations as Generative Models: Sampling Unseen Neural Network Weights" (NeurIPS 2022):

* **views**: each training vector is shown in two random *symmetry-equivalent* forms (a random
  permutation of every hidden layer's units, :func:`wslviz.understand.symmetry.apply_symmetry`, drawn per sample
  and per batch, with probability ``permute_prob``) plus small Gaussian noise. The views compute the
  same function, so a good representation should not tell them apart.
* **loss**: reconstruction (mean squared error) plus ``contrastive_weight`` times NT-Xent (the SimCLR
  loss, Chen et al. 2020) between projections of the two views' latent codes: the views of one model
  attract, other models in the batch repel.

Differences from the papers, chosen to keep it CPU-cheap (seconds, not GPU hours) and decoding useful:
the encoder and decoder are MLPs rather than transformers over neuron tokens, and the reconstruction
target is the *un-augmented* vector rather than the view. The decoder therefore writes weights in the
basis of the training data: fitted on a zoo aligned to one reference (as the generators in
:mod:`wslviz.generation.generators` do), decoded latents are weights in the reference's basis, which is what
sampling new models needs. Inputs are standardised per tensor (one mean and scale per weight/bias
tensor, a transform that commutes with the permutations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from wslviz.core.evaluation import model_outputs
from wslviz.core.protocol import knows_symmetries
from wslviz.understand.symmetry import SymmetryElement, apply_symmetry, random_symmetry

Progress = Callable[[int, int], None] | None


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.LayerNorm(b), nn.GELU()]
    return nn.Sequential(*layers)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent loss of two batches of embeddings ``a``, ``b`` [N, d] whose rows ``i`` are positive pairs.

    Cross-entropy of picking row ``i``'s partner among the other ``2N - 1`` rows by cosine similarity
    over ``temperature`` (Chen et al., "A Simple Framework for Contrastive Learning", ICML 2020)."""
    z = nn.functional.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / temperature
    n = len(a)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return nn.functional.cross_entropy(sim, target)


class HyperRepresentation:
    """An autoencoder over weights of one architecture, sklearn style.

    ``fit(zoo)`` or ``fit((arch, weights [B, P]))``; ``transform(weights [B, P]) -> numpy [B, latent_dim]``;
    ``inverse_transform(z [B, latent_dim]) -> torch [B, P]``. Training runs ``epochs`` passes over the
    data when given, else ``steps`` optimiser steps of ``batch_size`` models (deterministic for
    ``random_state``; the global torch RNG is left untouched).
    """

    def __init__(self, latent_dim: int = 16, epochs: int | None = None, steps: int = 800, batch_size: int = 64,
                 hidden: tuple[int, ...] = (256,), lr: float = 2e-3, weight_decay: float = 1e-5,
                 contrastive_weight: float = 0.1, temperature: float = 0.1, permute_prob: float = 0.5,
                 noise: float = 0.02, random_state: int = 0):
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not 0 <= permute_prob <= 1:
            raise ValueError(f"permute_prob must be in [0, 1], got {permute_prob}")
        self.latent_dim, self.epochs, self.steps, self.batch_size = int(latent_dim), epochs, int(steps), int(batch_size)
        self.hidden, self.lr, self.weight_decay = tuple(int(h) for h in hidden), float(lr), float(weight_decay)
        self.contrastive_weight, self.temperature = float(contrastive_weight), float(temperature)
        self.permute_prob, self.noise, self.random_state = float(permute_prob), float(noise), int(random_state)

    def get_params(self) -> dict[str, Any]:
        keys = ("latent_dim", "epochs", "steps", "batch_size", "hidden", "lr", "weight_decay", "contrastive_weight",
                "temperature", "permute_prob", "noise", "random_state")
        return {k: getattr(self, k) for k in keys}

    # ------------------------------------------------------------------ preprocessing
    def _fit_scaler(self, w: torch.Tensor) -> None:
        mean, scale = torch.empty(self.arch_.n_params), torch.empty(self.arch_.n_params)
        for p in self.arch_.layout:
            t = w[:, p.slice]
            mean[p.slice], scale[p.slice] = t.mean(), t.std().clamp_min(1e-8)
        self.mean_, self.scale_ = mean, scale

    def _scale(self, w: torch.Tensor) -> torch.Tensor:
        return (w - self.mean_) / self.scale_

    def _as_weights(self, weights: Any) -> torch.Tensor:
        w = torch.as_tensor(np.asarray(weights) if not isinstance(weights, torch.Tensor) else weights).float()
        w = w.unsqueeze(0) if w.dim() == 1 else w
        if w.dim() != 2 or w.shape[1] != self.arch_.n_params:
            raise ValueError(f"weights must be [B, {self.arch_.n_params}], got {list(w.shape)}")
        return w

    def _permute(self, w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Each row of ``w`` [B, P] under its own random element of the architecture's permutation group
        (identity with prob. 1 - permute_prob), drawn from ``arch.perm_spec`` by
        :func:`wslviz.understand.symmetry.random_symmetry`, so module architectures get their derived groups
        (residual streams shared, attention heads moved whole, tied groups together). A layout whose
        symmetries cannot be derived (weights-only) gets noise views only."""
        if not self.symmetric_:
            return w
        use = (torch.rand(len(w), generator=gen) < self.permute_prob).tolist()
        seeds = torch.randint(0, 2**31 - 1, (len(w),), generator=gen).tolist()
        identity = [torch.arange(g.size) for g in self.arch_.perm_spec.groups]
        drawn = [random_symmetry(self.arch_, seed, kinds=("permutation",)).perms if u else identity
                 for u, seed in zip(use, seeds, strict=True)]
        if not identity:
            return w
        perms = [torch.stack(column) for column in zip(*drawn, strict=True)]
        return apply_symmetry(self.arch_, w, SymmetryElement(perms, [torch.ones_like(p, dtype=torch.float32)
                                                                     for p in perms]))

    def _view(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        v = self._permute(x, gen)
        return v + self.noise * torch.randn(v.shape, generator=gen) if self.noise > 0 else v

    # ------------------------------------------------------------------ training
    def fit(self, data: Any, progress: Progress = None) -> HyperRepresentation:
        """Train on a :class:`~wslviz.core.zoo.Zoo` (all its checkpoints) or an ``(arch, weights [B, P])`` pair;
        ``arch`` is any architecture kind (:mod:`wslviz.core.protocol`: sequential, module or weights-only)."""
        if isinstance(data, tuple):
            arch, weights = data
        else:
            arch, weights = data.arch, data.weights
        if not hasattr(arch, "layout") or not hasattr(arch, "n_params"):
            raise TypeError("fit takes a Zoo or an (architecture, weights) pair")
        self.arch_ = arch
        self.symmetric_ = knows_symmetries(arch)
        w = self._as_weights(weights)
        if len(w) < 2:
            raise ValueError("a hyper-representation needs at least 2 models to train on")
        self._fit_scaler(w)
        x = self._scale(w)
        n, p = x.shape
        batch = min(self.batch_size, n)
        steps = self.epochs * math.ceil(n / batch) if self.epochs is not None else self.steps
        gen = torch.Generator().manual_seed(self.random_state)
        with torch.random.fork_rng():
            torch.manual_seed(self.random_state)
            self.encoder_ = _mlp([p, *self.hidden, self.latent_dim])
            self.decoder_ = _mlp([self.latent_dim, *reversed(self.hidden), p])
            self.head_ = _mlp([self.latent_dim, 64, 32])
        params = [*self.encoder_.parameters(), *self.decoder_.parameters(), *self.head_.parameters()]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=max(steps, 1))
        self.history_: list[float] = []
        threads = torch.get_num_threads()
        # One thread: these steps are small, and on a busy 2-core machine two threads ran a step ~50x slower.
        torch.set_num_threads(1)
        try:
            self._train(x, steps, batch, gen, opt, sched, progress)
        finally:
            torch.set_num_threads(threads)
        return self

    def _train(self, x: torch.Tensor, steps: int, batch: int, gen: torch.Generator, opt, sched,
               progress: Progress) -> None:
        n = len(x)
        for m in (self.encoder_, self.decoder_, self.head_):
            m.train()
        for step in range(steps):
            idx = torch.randint(0, n, (batch,), generator=gen)
            target = x[idx]
            za, zb = self.encoder_(self._view(target, gen)), self.encoder_(self._view(target, gen))
            recon = ((self.decoder_(za) - target) ** 2).mean() + ((self.decoder_(zb) - target) ** 2).mean()
            loss = recon / 2
            if self.contrastive_weight > 0:
                loss = loss + self.contrastive_weight * nt_xent(self.head_(za), self.head_(zb), self.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            self.history_.append(loss.item())
            if progress and ((step + 1) % 50 == 0 or step + 1 == steps):
                progress(step + 1, steps)
        for m in (self.encoder_, self.decoder_, self.head_):
            m.eval()

    def _check_fitted(self) -> None:
        if not hasattr(self, "encoder_"):
            raise ValueError("this HyperRepresentation is not fitted yet: call fit first")

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def transform(self, weights: Any) -> np.ndarray:
        """Latent codes ``[B, latent_dim]`` (numpy float32) of ``weights`` [B, P] (or [P])."""
        self._check_fitted()
        return self.encoder_(self._scale(self._as_weights(weights))).numpy()

    @torch.no_grad()
    def inverse_transform(self, z: Any) -> torch.Tensor:
        """Decoded weights ``[B, P]`` (torch float32) of latent codes ``z`` [B, latent_dim]."""
        self._check_fitted()
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z).float()
        z = z.unsqueeze(0) if z.dim() == 1 else z
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"latent codes must be [B, {self.latent_dim}], got {list(z.shape)}")
        return self.decoder_(z) * self.scale_ + self.mean_

    def reconstruct(self, weights: Any) -> torch.Tensor:
        """``inverse_transform(transform(weights))`` -> ``[B, P]``."""
        return self.inverse_transform(self.transform(weights))


def reconstruction_quality(model: HyperRepresentation, task, weights: torch.Tensor) -> dict[str, float]:
    """How well ``model`` reproduces ``weights`` [B, P] as working networks, on ``task``'s test split.

    Returns the mean test accuracy of the originals and of the reconstructions, the mean absolute
    accuracy difference per model, the fraction of test predictions on which each reconstruction agrees
    with its original (mean over models), and the relative L2 error ``||w - w'|| / ||w||`` (mean)."""
    weights = torch.as_tensor(weights).float()
    recon = model.reconstruct(weights)
    x, y = task.split("test")
    out_a, out_b = model_outputs(model.arch_, weights, x), model_outputs(model.arch_, recon, x)
    pa, pb = out_a.argmax(-1), out_b.argmax(-1)
    acc_a, acc_b = (pa == y).float().mean(1), (pb == y).float().mean(1)
    return {
        "accuracy_original": float(acc_a.mean()), "accuracy_reconstructed": float(acc_b.mean()),
        "accuracy_abs_diff": float((acc_a - acc_b).abs().mean()),
        "agreement": float((pa == pb).float().mean()),
        "relative_l2": float(((recon - weights).norm(dim=1) / weights.norm(dim=1).clamp_min(1e-12)).mean()),
    }
