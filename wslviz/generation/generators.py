"""Weight generation: make new weights for a zoo's architecture, and check whether they are new.

Generators follow the scikit-learn pattern: ``make_generator(method, **options)`` returns an object
with ``fit(zoo, progress=None)`` and ``sample(n, seed=None) -> Tensor [n, n_params]``, so a page can cache
a fitted generator and sample from it repeatedly. :func:`generate` is the one-call form.

======================  ==========================================================================
method                  what it does
======================  ==========================================================================
``interpolate``         points ``(1 - t) a + t b`` on the line between two checkpoints (naive, or with
                        ``b`` first aligned to ``a`` by weight matching); ``t`` outside [0, 1] extrapolates
``merge``               aligned merging of selected checkpoints: sample 0 is the uniform average,
                        further samples random convex (Dirichlet) combinations of the aligned models
``pca_gaussian``        a Gaussian in the top-``k`` PCA space of aligned final checkpoints
``kde``                 kernel density sampling in that PCA space
``hyperrep``            kernel density sampling in the latent space of a hyper-representation
                        autoencoder, decoded (Schürholt et al., NeurIPS 2022)
``conditional``         a conditional VAE in PCA space of aligned checkpoints, conditioned on test
                        accuracy: ask for ``target=0.9`` and decode
``diffusion``           a small DDPM over PCA latents of aligned final checkpoints, in the spirit of
                        p-diff (Wang et al. 2024, which diffuses autoencoder latents of parameters)
======================  ==========================================================================

"Aligned" means re-expressed in the permutation basis of one *reference* checkpoint (the final
checkpoint with the best test accuracy) by weight matching (Ainsworth et al., ICLR 2023), so that
averaging and density estimation do not mix up neurons that play the same role.

Novelty checks and the noise baseline are in :mod:`wslviz.generation.novelty`; exports in
:mod:`wslviz.generation.export`. Each generator declares the options the app offers for it (``params``,
:mod:`wslviz.generation.params`).

This module is long because every generator is one small class over the shared base (fit, sample, parameters,
alignment to one reference); split apart, each would import the same helpers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from wslviz.core.zoo import Zoo, checkpoint_accuracies, reference_row
from wslviz.generation.params import Param
from wslviz.generation.rows import align_rows, best_final_rows, check_rows
from wslviz.represent.hyperrep import HyperRepresentation
from wslviz.understand.align import reset_batchnorm

Progress = Callable[[int, int], None] | None

LEARNED = ("pca_gaussian", "kde", "hyperrep", "conditional", "diffusion")
"""Methods that fit a density or a network to the zoo (as opposed to interpolation and merging)."""


class PCASpace:
    """Affine PCA coordinates of a weight matrix: ``z = (w - mean) V^T / s`` with unit-variance coordinates.

    ``fit(W [M, P], k)`` keeps ``min(k, M - 1)`` components; ``transform`` / ``inverse_transform`` map
    between weights ``[B, P]`` and standardized coordinates ``[B, k]``.
    """

    def fit(self, weights: torch.Tensor, k: int) -> PCASpace:
        if weights.shape[0] < 2:
            raise ValueError("a PCA space needs at least 2 models")
        w = weights.double()
        self.mean_ = w.mean(0)
        _, s, vh = torch.linalg.svd(w - self.mean_, full_matrices=False)
        k = max(1, min(int(k), w.shape[0] - 1))
        self.components_ = vh[:k]
        # floor the scale so a (near-)degenerate direction cannot blow up the coordinates
        self.scale_ = (s[:k] / math.sqrt(w.shape[0] - 1)).clamp_min(1e-8 * float(s[0]) + 1e-12)
        self.explained_variance_ratio_ = (s[:k] ** 2 / (s**2).sum().clamp_min(1e-30)).float()
        return self

    @property
    def k(self) -> int:
        return int(self.components_.shape[0])

    def transform(self, weights: torch.Tensor) -> torch.Tensor:
        return (((weights.double() - self.mean_) @ self.components_.T) / self.scale_).float()

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        return ((z.double() * self.scale_) @ self.components_ + self.mean_).float()


def _scott_bandwidth(n: int, d: int) -> float:
    """Scott's rule for unit-variance data: ``n ** (-1 / (d + 4))``."""
    return float(n ** (-1.0 / (d + 4)))


def _kde_sample(points: np.ndarray, n: int, bandwidth: float, rng: np.random.Generator) -> np.ndarray:
    """Draw from a Gaussian KDE: a random data point plus ``N(0, bandwidth^2 I)`` (exactly the KDE's law)."""
    pick = rng.integers(0, len(points), size=n)
    return points[pick] + bandwidth * rng.standard_normal((n, points.shape[1]))


def _mlp(n_in: int, n_out: int, hidden: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.SiLU()]
    layers.append(nn.Linear(hidden, n_out))
    return nn.Sequential(*layers)


def _report(progress: Progress, done: int, total: int, every: int = 25) -> None:
    if progress is not None and (done % every == 0 or done == total):
        progress(done, total)


# ---------------------------------------------------------------------------------------------- generators
class WeightGenerator:
    """Base class. Subclasses set ``method`` and implement ``_fit`` and ``_sample``.

    After ``fit``: ``arch_`` (the zoo's architecture), ``reference_`` (row of the alignment reference, or
    None), ``fit_rows_`` (zoo rows the generator was fitted on). After ``sample``: ``sample_info_``, a
    DataFrame with one row per sample (e.g. the ``t`` of an interpolation), used as export metadata.
    """

    method = ""
    label = ""
    """What the app calls the method."""
    learned = False
    sample_params: tuple[str, ...] = ()
    """Options used only when sampling: :meth:`set_params` may change them on a fitted generator."""
    PARAMS: tuple[Param, ...] = ()
    """The options the app offers (:mod:`wslviz.generation.params`); :meth:`params` adapts them to a zoo."""

    @classmethod
    def params(cls, zoo: Zoo) -> tuple[Param, ...]:
        """The options to offer for ``zoo`` (the class's :attr:`PARAMS`; a generator whose ranges depend on the
        zoo overrides this)."""
        return cls.PARAMS

    def __init__(self, random_state: int = 0):
        self.random_state = int(random_state)

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (JSON-able), recorded in exported metadata."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def fit_params(self) -> dict[str, Any]:
        """The constructor arguments that affect fitting (a cache key for fitted generators)."""
        return {k: v for k, v in self.get_params().items() if k not in self.sample_params}

    def set_params(self, **params: Any) -> WeightGenerator:
        """Change options; on a fitted generator only the sampling options (:attr:`sample_params`) may
        change, anything else needs a refit. Returns ``self``."""
        known = self.get_params()
        for key, value in params.items():
            if key not in known:
                raise TypeError(f"{self.method}: unknown option {key!r}; options: {', '.join(sorted(known))}")
            if hasattr(self, "arch_") and key not in self.sample_params:
                raise ValueError(f"{self.method}: {key!r} changes the fit; refit the generator to change it")
            setattr(self, key, value)
        return self

    def fit(self, zoo: Zoo, progress: Progress = None) -> WeightGenerator:
        """Fit to ``zoo``; ``progress(done, total)`` is called during alignment and training."""
        self.arch_ = zoo.arch
        self.reference_: int | None = None
        with torch.random.fork_rng():
            torch.manual_seed(self.random_state)
            self._fit(zoo, progress)
        return self

    def sample(self, n: int = 16, seed: int | None = None) -> torch.Tensor:
        """``n`` new weight vectors, float32 ``[n, n_params]``; the same seed gives the same samples."""
        if not hasattr(self, "arch_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(zoo) first")
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        seed = self.random_state if seed is None else int(seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            out, info = self._sample(int(n), np.random.default_rng(seed))
        self.sample_info_ = pd.DataFrame(info, index=range(n))
        return out.detach().float().contiguous()

    def _fit(self, zoo: Zoo, progress: Progress) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError


class Interpolation(WeightGenerator):
    """Points on the line through two checkpoints ``a`` and ``b`` (zoo rows): ``w(t) = (1 - t) a + t b``.

    ``n`` samples take ``t`` evenly from ``t_min`` to ``t_max`` (values outside [0, 1] extrapolate).
    With ``aligned=True`` (default) ``b`` is first permuted into ``a``'s basis by weight matching, the
    linear mode connectivity setting of Ainsworth et al. (2023). Defaults: the two best final checkpoints.
    """

    method = "interpolate"
    label = "Interpolation / extrapolation between two checkpoints"
    sample_params = ("t_min", "t_max")
    PARAMS = (Param("a", "Checkpoint a (t = 0)", "row", 0), Param("b", "Checkpoint b (t = 1)", "row", 1),
              Param("aligned", "Align b to a first (weight matching)", "checkbox", True),
              Param(("t_min", "t_max"), "Range of t (outside [0, 1] extrapolates)", "range", (-0.25, 1.25), -1.0,
                    2.0, 0.05))

    def __init__(self, a: int | None = None, b: int | None = None, aligned: bool = True, t_min: float = -0.25,
                 t_max: float = 1.25, random_state: int = 0):
        super().__init__(random_state)
        self.a, self.b, self.aligned = a, b, bool(aligned)
        self.t_min, self.t_max = float(t_min), float(t_max)

    def _fit(self, zoo: Zoo, progress: Progress) -> None:
        a, b = self.a, self.b
        if a is None or b is None:
            best = best_final_rows(zoo, 1.0)
            acc = checkpoint_accuracies(zoo, best)
            order = best[np.argsort(-acc, kind="stable")]
            if len(order) < 2:
                raise ValueError("interpolation needs two checkpoints; this zoo has one final checkpoint")
            a = int(order[0]) if a is None else a
            b = int(next(r for r in order if r != a)) if b is None else b
        rows = check_rows(zoo, [a, b], "interpolation", 2)
        self.fit_rows_ = rows
        self.reference_ = int(rows[0])
        self.endpoints_ = align_rows(zoo, rows, rows[0], self.aligned, progress)

    def _sample(self, n, rng):
        t = torch.linspace(self.t_min, self.t_max, n) if n > 1 else torch.tensor([0.5 * (self.t_min + self.t_max)])
        wa, wb = self.endpoints_
        return wa + t[:, None] * (wb - wa), {"t": t.numpy()}


class Merge(WeightGenerator):
    """Aligned merging of selected checkpoints (``rows``; default: all final checkpoints).

    All are aligned to the best of them by weight matching. Sample 0 is the uniform average (model
    soup / "merging after alignment"); further samples are random convex combinations with Dirichlet
    (``alpha``) coefficients. BatchNorm running statistics of a merge are meaningless averages, so when
    the architecture has BatchNorm and the zoo a task, they are recomputed on the training data.
    """

    method = "merge"
    label = "Aligned merging of selected checkpoints"
    sample_params = ("alpha",)
    PARAMS = (Param("rows", "Checkpoints to merge (default: distinct models of the linked selection, else the 8 best "
                    "final checkpoints)", "rows", 8, high=64),
              Param("aligned", "Align to the best of them first", "checkbox", True),
              Param("alpha", "Dirichlet concentration of the merge coefficients (samples after the first)", "slider",
                    1.0, 0.1, 10.0, 0.1))

    def __init__(self, rows: Sequence[int] | None = None, aligned: bool = True, alpha: float = 1.0,
                 random_state: int = 0):
        super().__init__(random_state)
        self.rows = None if rows is None else [int(r) for r in rows]
        self.aligned, self.alpha = bool(aligned), float(alpha)

    def _fit(self, zoo: Zoo, progress: Progress) -> None:
        rows = check_rows(zoo, zoo.final_index() if self.rows is None else self.rows, "merging", 2)
        known = "test_acc" in zoo.metadata or zoo.task is not None
        acc = checkpoint_accuracies(zoo, rows) if known else np.zeros(len(rows))
        self.reference_ = int(rows[int(np.argmax(acc))])
        self.fit_rows_ = rows
        self.aligned_ = align_rows(zoo, rows, self.reference_, self.aligned, progress)
        self.task_ = zoo.task

    def _sample(self, n, rng):
        k = len(self.fit_rows_)
        coef = rng.dirichlet(np.full(k, self.alpha), size=n)
        coef[0] = 1.0 / k
        merged = torch.as_tensor(coef, dtype=torch.float32) @ self.aligned_
        merged = reset_batchnorm(self.arch_, merged, self.task_)  # averaged BatchNorm statistics describe no model
        return merged, {"coefficients": [json.dumps(np.round(c, 4).tolist()) for c in coef]}


def _k(default: int) -> Param:
    return Param("k", "PCA components k (at most the number of fitted models - 1)", "slider", default, 1, 64, 1)


TOP_FRACTION = Param("top_fraction", "Fit on the best fraction of final checkpoints", "slider", 1.0, 0.1, 1.0, 0.05)


class _AlignedPCA(WeightGenerator):
    """Shared fitting: align the (best ``top_fraction`` of the) final checkpoints, PCA with ``k`` components."""

    learned = True

    def __init__(self, k: int = 8, top_fraction: float = 1.0, random_state: int = 0):
        super().__init__(random_state)
        self.k, self.top_fraction = int(k), float(top_fraction)

    def _fit(self, zoo: Zoo, progress: Progress) -> None:
        self.reference_ = reference_row(zoo)
        self.fit_rows_ = best_final_rows(zoo, self.top_fraction)
        self.aligned_ = align_rows(zoo, self.fit_rows_, self.reference_, True, progress)
        self.pca_ = PCASpace().fit(self.aligned_, self.k)
        self.latent_ = self.pca_.transform(self.aligned_)


class PCAGaussian(_AlignedPCA):
    """A Gaussian in the top-``k`` PCA space of aligned final checkpoints.

    PCA coordinates are uncorrelated, so the Gaussian is diagonal there with the data's variances;
    ``temperature`` scales its standard deviation (< 1 samples closer to the mean). Samples lie in the
    affine span of the mean and the ``k`` components.
    """

    method = "pca_gaussian"
    label = "Gaussian in PCA space of aligned weights"
    PARAMS = (_k(8), Param("temperature", "Temperature (std scale)", "slider", 1.0, 0.0, 2.0, 0.05), TOP_FRACTION)
    sample_params = ("temperature",)

    def __init__(self, k: int = 8, temperature: float = 1.0, top_fraction: float = 1.0, random_state: int = 0):
        super().__init__(k, top_fraction, random_state)
        self.temperature = float(temperature)

    def _sample(self, n, rng):
        z = self.temperature * rng.standard_normal((n, self.pca_.k))
        return self.pca_.inverse_transform(torch.as_tensor(z)), {}


class KDESampler(_AlignedPCA):
    """Gaussian kernel density sampling in the top-``k`` PCA space of aligned final checkpoints.

    ``bandwidth`` is in units of each component's standard deviation; ``None`` uses Scott's rule.
    A sample is a fitted model's coordinates plus kernel noise, so small bandwidths memorise. ``k`` is
    capped at M - 1 for M fitted models; the default keeps every direction for zoos of up to 65 fitted
    models, so the kernels sit exactly on the aligned checkpoints (with fewer components they sit on
    their projections, which lose accuracy).
    """

    method = "kde"
    label = "Kernel density sampling in PCA space"
    PARAMS = (_k(64), Param("bandwidth", "Bandwidth (0 = Scott's rule)", "slider", 0.0, 0.0, 2.0, 0.05, none_at=0.0),
              TOP_FRACTION)
    sample_params = ("bandwidth",)

    def __init__(self, k: int = 64, bandwidth: float | None = None, top_fraction: float = 1.0, random_state: int = 0):
        super().__init__(k, top_fraction, random_state)
        self.bandwidth = None if bandwidth is None else float(bandwidth)

    def _sample(self, n, rng):
        pts = self.latent_.numpy().astype(float)
        bw = self.bandwidth if self.bandwidth is not None else _scott_bandwidth(*pts.shape)
        return self.pca_.inverse_transform(torch.as_tensor(_kde_sample(pts, n, bw, rng))), {}


class HyperRepSampler(WeightGenerator):
    """Kernel density sampling in a hyper-representation's latent space, decoded to weights.

    The autoencoder (:class:`wslviz.represent.hyperrep.HyperRepresentation`, trained with permutation augmentation
    for ``steps`` optimiser steps) is fitted on the aligned final checkpoints; new latents are drawn from a
    Gaussian KDE of their embeddings (Scott's rule times ``bandwidth_scale``) and decoded, as in
    Schürholt et al., "Hyper-representations as generative models" (NeurIPS 2022).
    """

    method = "hyperrep"
    label = "Hyper-representation latent sampling"
    PARAMS = (Param("latent_dim", "Latent dimension", "slider", 16, 2, 32, 1),
              Param("bandwidth_scale", "KDE bandwidth (x Scott's rule)", "slider", 1.0, 0.0, 3.0, 0.05), TOP_FRACTION)
    learned = True
    sample_params = ("bandwidth_scale",)

    def __init__(self, latent_dim: int = 16, bandwidth_scale: float = 1.0, top_fraction: float = 1.0,
                 steps: int = 1000, random_state: int = 0):
        super().__init__(random_state)
        self.latent_dim, self.bandwidth_scale, self.top_fraction = int(latent_dim), float(bandwidth_scale), \
            float(top_fraction)
        self.steps = int(steps)

    def _fit(self, zoo: Zoo, progress: Progress) -> None:
        self.reference_ = reference_row(zoo)
        self.fit_rows_ = best_final_rows(zoo, self.top_fraction)
        aligned = align_rows(zoo, self.fit_rows_, self.reference_, True)
        model = HyperRepresentation(latent_dim=self.latent_dim, steps=self.steps, random_state=self.random_state)
        self.model_ = model.fit((zoo.arch, aligned), progress=progress)
        z = np.asarray(self.model_.transform(aligned), dtype=float)
        self.latent_mean_, self.latent_std_ = z.mean(0), z.std(0) + 1e-8
        self.latent_ = (z - self.latent_mean_) / self.latent_std_

    def _sample(self, n, rng):
        bw = self.bandwidth_scale * _scott_bandwidth(*self.latent_.shape)
        z = _kde_sample(self.latent_, n, bw, rng) * self.latent_std_ + self.latent_mean_
        return torch.as_tensor(self.model_.inverse_transform(z.astype(np.float32))).float(), {}


class ConditionalVAE(WeightGenerator):
    """Property-conditioned generation: a conditional VAE (Sohn et al. 2015) over PCA coordinates of
    aligned checkpoints, conditioned on their test accuracy.

    Trained on *all* checkpoints (every epoch, so the condition spans bad to good models), each aligned
    to the reference. ``sample`` decodes ``z ~ N(0, temperature^2 I)`` with the condition ``target``
    (default: the zoo's best final accuracy). The decoder is the hypernetwork accuracy -> weights.
    """

    method = "conditional"
    label = "Accuracy-conditioned VAE"
    learned = True
    sample_params = ("target", "temperature")

    @classmethod
    def params(cls, zoo: Zoo) -> tuple[Param, ...]:
        """The target accuracy starts at the zoo's best final accuracy, with the zoo's range as help."""
        acc = checkpoint_accuracies(zoo, np.arange(zoo.n_checkpoints)) if "test_acc" in zoo.metadata else None
        lo = float(np.nanmin(acc)) if acc is not None else 0.0
        hi = float(np.nanmax(acc[zoo.final_index()])) if acc is not None else 1.0
        return (Param("target", "Target test accuracy", "slider", round(hi, 3), 0.0, 1.0, 0.005,
                      help=f"Zoo accuracies range from {lo:.3f} to {hi:.3f}; targets outside extrapolate."),
                Param("steps", "Training steps", "choice", 1500, choices=(300, 750, 1500, 3000)))

    def __init__(self, target: float | None = None, k: int = 16, latent_dim: int = 4, hidden: int = 128,
                 steps: int = 1500, beta: float = 0.5, temperature: float = 1.0, random_state: int = 0):
        super().__init__(random_state)
        self.target = None if target is None else float(target)
        self.k, self.latent_dim, self.hidden, self.steps = int(k), int(latent_dim), int(hidden), int(steps)
        self.beta, self.temperature = float(beta), float(temperature)

    def _fit(self, zoo: Zoo, progress: Progress) -> None:
        rows = np.arange(zoo.n_checkpoints)
        acc = checkpoint_accuracies(zoo, rows)
        keep = np.isfinite(acc)
        rows, acc = rows[keep], acc[keep]
        if len(rows) < 3:
            raise ValueError("conditional generation needs at least 3 checkpoints with a known accuracy")
        self.reference_ = reference_row(zoo)
        self.fit_rows_ = rows
        total = self.steps + len(rows)
        align_progress = (lambda d, t: progress(d, total)) if progress else None
        aligned = align_rows(zoo, rows, self.reference_, True, align_progress)
        self.pca_ = PCASpace().fit(aligned, self.k)
        x = self.pca_.transform(aligned)
        self.acc_mean_, self.acc_std_ = float(acc.mean()), float(acc.std() + 1e-6)
        c = torch.as_tensor((acc - self.acc_mean_) / self.acc_std_, dtype=torch.float32)[:, None]
        self.default_target_ = float(checkpoint_accuracies(zoo, zoo.final_index()).max())
        kx, kz = x.shape[1], self.latent_dim
        self.encoder_ = _mlp(kx + 1, 2 * kz, self.hidden)
        self.decoder_ = _mlp(kz + 1, kx, self.hidden)
        opt = torch.optim.Adam([*self.encoder_.parameters(), *self.decoder_.parameters()], lr=2e-3)
        for step in range(self.steps):
            mu, logvar = self.encoder_(torch.cat([x, c], 1)).chunk(2, dim=1)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            recon = self.decoder_(torch.cat([z, c], 1))
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1).mean()
            loss = ((recon - x) ** 2).sum(1).mean() + self.beta * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            _report(progress, len(rows) + step + 1, total)
        self.final_loss_ = loss.item()

    def _sample(self, n, rng):
        target = self.default_target_ if self.target is None else self.target
        z = torch.as_tensor(self.temperature * rng.standard_normal((n, self.latent_dim)), dtype=torch.float32)
        c = torch.full((n, 1), (target - self.acc_mean_) / self.acc_std_)
        with torch.no_grad():
            x = self.decoder_(torch.cat([z, c], 1))
        return self.pca_.inverse_transform(x), {"target": np.full(n, target)}


class LatentDiffusion(_AlignedPCA):
    """A small DDPM (Ho et al. 2020) over standardized PCA coordinates of aligned final checkpoints.

    In the spirit of p-diff (Wang et al. 2024, "Neural network diffusion"), which trains a diffusion
    model on autoencoder latents of checkpoints; here the latent map is PCA so that it trains in seconds
    on a CPU. ``timesteps`` noise levels on a linear beta schedule; an MLP denoiser predicts the noise.
    """

    method = "diffusion"
    label = "Latent diffusion (p-diff style)"
    PARAMS = (_k(16), Param("steps", "Training steps", "choice", 3000, choices=(500, 1500, 3000, 6000)), TOP_FRACTION)

    def __init__(self, k: int = 16, timesteps: int = 100, hidden: int = 256, steps: int = 3000, batch_size: int = 256,
                 top_fraction: float = 1.0, random_state: int = 0):
        super().__init__(k, top_fraction, random_state)
        self.timesteps, self.hidden, self.steps, self.batch_size = int(timesteps), int(hidden), int(steps), \
            int(batch_size)

    def _embed_t(self, t: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(-math.log(1000.0) * torch.arange(8) / 8)
        ang = t.float()[:, None] / self.timesteps * 100 * freqs
        return torch.cat([ang.sin(), ang.cos()], 1)

    def _fit(self, zoo: Zoo, progress: Progress) -> None:
        super()._fit(zoo, None)
        x0 = self.latent_
        betas = torch.linspace(1e-4, 0.02 * 1000 / self.timesteps, self.timesteps).clamp_max(0.999)
        self.betas_ = betas
        self.alpha_bar_ = torch.cumprod(1 - betas, 0)
        self.denoiser_ = _mlp(x0.shape[1] + 16, x0.shape[1], self.hidden, depth=3)
        opt = torch.optim.Adam(self.denoiser_.parameters(), lr=1e-3)
        for step in range(self.steps):
            idx = torch.randint(0, len(x0), (self.batch_size,))
            t = torch.randint(0, self.timesteps, (self.batch_size,))
            eps = torch.randn(self.batch_size, x0.shape[1])
            ab = self.alpha_bar_[t][:, None]
            xt = ab.sqrt() * x0[idx] + (1 - ab).sqrt() * eps
            loss = ((self.denoiser_(torch.cat([xt, self._embed_t(t)], 1)) - eps) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            _report(progress, step + 1, self.steps)
        self.final_loss_ = loss.item()

    def _sample(self, n, rng):
        x = torch.as_tensor(rng.standard_normal((n, self.pca_.k)), dtype=torch.float32)
        noise = torch.as_tensor(rng.standard_normal((self.timesteps, n, self.pca_.k)), dtype=torch.float32)
        with torch.no_grad():
            for t in reversed(range(self.timesteps)):
                beta, ab = self.betas_[t], self.alpha_bar_[t]
                eps = self.denoiser_(torch.cat([x, self._embed_t(torch.full((n,), t))], 1))
                x = (x - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
                if t > 0:
                    x = x + beta.sqrt() * noise[t]
        return self.pca_.inverse_transform(x), {}


GENERATORS: dict[str, type[WeightGenerator]] = {
    cls.method: cls for cls in (Interpolation, Merge, PCAGaussian, KDESampler, HyperRepSampler, ConditionalVAE,
                                LatentDiffusion)
}
"""method name -> generator class."""


def make_generator(method: str, random_state: int = 0, **options: Any) -> WeightGenerator:
    """An unfitted generator for ``method`` (see :data:`GENERATORS`); unknown options raise ``TypeError``."""
    if method not in GENERATORS:
        raise ValueError(f"unknown generation method {method!r}; known: {', '.join(GENERATORS)}")
    cls = GENERATORS[method]
    try:
        return cls(random_state=random_state, **options)
    except TypeError as e:
        raise TypeError(f"{method}: {e}") from None


def generate(zoo: Zoo, method: str, n: int = 16, seed: int = 0, progress: Progress = None,
             **options: Any) -> torch.Tensor:
    """``n`` new weight vectors ``[n, n_params]`` for ``zoo.arch`` made by ``method`` (see module docstring).

    ``options`` go to the generator's constructor (e.g. ``k=8`` for ``pca_gaussian``, ``target=0.9`` for
    ``conditional``, ``a=0, b=5, aligned=False`` for ``interpolate``). ``seed`` fixes fitting and sampling.
    """
    return make_generator(method, random_state=seed, **options).fit(zoo, progress).sample(n, seed)
