"""Implicit neural representations (INRs): coordinate MLPs that *are* images, rendered and fitted in batches.

An INR of an image is a network ``f(x, y) -> pixel``; its weights are the image's representation. The
INR zoos of the weight-space literature (DWSNets, Navon et al., ICML 2023; NFN, Zhou et al., NeurIPS
2023) fit one SIREN (Sitzmann et al., "Implicit Neural Representations with Periodic Activation
Functions", NeurIPS 2020) per MNIST/CIFAR image: ``sin(w0 * (W x + b))`` layers and a linear output,
with the image recovered as network output + 0.5 on a grid of coordinates in ``[-1, 1]^2``.

Conventions here (shared by the ``digits-inr`` sample zoo and by imported INR folders): pixel ``(i, j)``
of an ``H x W`` image is the output at coordinates ``(u_i, v_j)`` with ``u = linspace(-1, 1, H)`` and
``v = linspace(-1, 1, W)`` (``indexing="ij"``, as SIREN's ``get_mgrid``); ``indexing="xy"`` swaps the two
inputs for INRs fitted the other way round. The output offset is :data:`OUTPUT_OFFSET`.

:func:`fit_inrs` fits B SIRENs to B images at once: the weights are one ``[B, P]`` matrix run through
the batched :func:`wslviz.core.batched.forward`, and full-batch Adam on the *sum* of the per-image
losses gives each row exactly its own gradient (one image's loss depends on its row only); Adam is
elementwise, so each INR follows the trajectory it would follow alone. :class:`InrRecipe` makes an INR zoo
of scikit-learn's digits with it (the ``digits-inr`` sample zoo).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from wslviz.core.arch import Architecture
from wslviz.core.evaluation import forward, model_outputs
from wslviz.core.trainloop import thread_cap
from wslviz.core.zoo import Zoo

Progress = Callable[[int, int], None] | None
OUTPUT_OFFSET = 0.5
"""Added to a network's output to get pixel values (DWSNets' and NFN's INRs are fitted to ``image - 0.5``)."""
INDEXINGS = ("ij", "xy")
DEFAULT_SIZE = 28
"""Rendering resolution for INR zoos that do not record theirs (MNIST's, as DWSNets' and NFN's INRs)."""


def is_inr(arch: Architecture) -> bool:
    """Whether ``arch`` is a coordinate MLP that renders as an image: 2 inputs, 1 (grey) or 3 (RGB) outputs,
    linear layers with ``sin`` activations (a SIREN)."""
    if not arch.plain_stack:
        return False
    kinds = {layer["type"] for layer in arch.layers}
    return (arch.input_shape == (2,) and arch.output_dim in (1, 3) and "sin" in kinds
            and kinds <= {"linear", "sin"})


def coordinate_grid(height: int, width: int | None = None, indexing: str = "ij") -> torch.Tensor:
    """Pixel-centre coordinates ``[H * W, 2]`` in ``[-1, 1]^2``, row-major over the image.

    ``indexing="ij"``: the first input is the row coordinate; ``"xy"``: the first input is the column."""
    if indexing not in INDEXINGS:
        raise ValueError(f"indexing must be one of {INDEXINGS}, got {indexing!r}")
    width = height if width is None else width
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    first, second = (rows, cols) if indexing == "ij" else (cols, rows)
    return torch.stack([first.reshape(-1), second.reshape(-1)], 1)


def _check_inr(arch: Architecture) -> None:
    if not is_inr(arch):
        raise ValueError(f"{arch.describe()} is not a coordinate MLP (a SIREN with 2 inputs and 1 or 3 outputs)")


def render_inrs(arch: Architecture, weights: torch.Tensor, size: int = DEFAULT_SIZE, offset: float = OUTPUT_OFFSET,
           indexing: str = "ij", progress: Progress = None) -> np.ndarray:
    """Images of INRs: ``weights`` ``[B, P]`` (or ``[P]``) -> float32 ``[B, size, size]`` (grey) or
    ``[B, size, size, 3]`` (RGB), pixel = output + ``offset``, clipped to ``[0, 1]``.

    An INR is continuous, so any ``size`` works; the fitting resolution shows what was fitted."""
    _check_inr(arch)
    single = weights.dim() == 1
    w = weights.unsqueeze(0) if single else weights
    out = model_outputs(arch, w.float(), coordinate_grid(size, indexing=indexing), progress=progress)
    images = (out + offset).clamp_(0, 1).reshape(len(w), size, size, arch.output_dim)
    images = images[..., 0] if arch.output_dim == 1 else images
    return images[0].numpy() if single else images.numpy()


def image_size(zoo: Zoo) -> int:
    """The resolution to render a zoo's INRs at: its fitting resolution (an ``image_size`` metadata column),
    else :data:`DEFAULT_SIZE`."""
    known = zoo.metadata["image_size"].dropna() if "image_size" in zoo.metadata else []
    return int(known.iloc[0]) if len(known) else DEFAULT_SIZE


def output_offset(zoo: Zoo) -> float:
    """What a zoo's INRs add to their output to get pixels: ``zoo.extra["output_offset"]`` where an importer
    recorded one, else :data:`OUTPUT_OFFSET`."""
    return float(zoo.extra.get("output_offset", OUTPUT_OFFSET))


def render_weights(zoo: Zoo, weights: torch.Tensor, size: int | None = None) -> np.ndarray:
    """:func:`render_inrs` for weights ``[B, P]`` of the zoo's architecture (generated ones, say), at ``size`` or
    :func:`image_size`, with the zoo's :func:`output_offset`."""
    return render_inrs(zoo.arch, weights, size or image_size(zoo), output_offset(zoo))


def render_rows(zoo: Zoo, rows: Sequence[int], size: int | None = None) -> np.ndarray:
    """Images of the zoo's checkpoints ``rows`` -> ``[len(rows), size, size(, 3)]`` (see :func:`render_weights`)."""
    return render_weights(zoo, zoo.weights[torch.as_tensor([int(r) for r in rows], dtype=torch.long)], size)


def render_path(arch: Architecture, a: torch.Tensor, b: torch.Tensor, ts: Sequence[float], size: int = DEFAULT_SIZE,
                offset: float = OUTPUT_OFFSET, indexing: str = "ij") -> np.ndarray:
    """Images of the INRs ``(1 - t) a + t b`` for each ``t`` in ``ts``: ``a``, ``b`` ``[P]`` ->
    ``[len(ts), size, size]`` (``[..., 3]`` for RGB). Pass ``b`` aligned to ``a`` (weight matching) to see
    the aligned path; the naive midpoint of two INRs from different initialisations is usually noise."""
    t = torch.as_tensor(np.asarray(ts, dtype=np.float32)).view(-1, 1)
    return render_inrs(arch, (1 - t) * a.float().view(1, -1) + t * b.float().view(1, -1), size, offset, indexing)


def siren_init(arch: Architecture, seeds: Sequence[int]) -> torch.Tensor:
    """SIREN initialisation (Sitzmann et al. 2020, Sec. 3.2), one row ``[P]`` per seed -> ``[B, P]``.

    First layer: weights uniform in ``+-1/fan_in``; later layers ``+-sqrt(6/fan_in)/w0`` with the ``w0`` of
    the sine before them; biases like the layer's weights. Row b depends on ``seeds[b]`` only."""
    _check_inr(arch)
    w0_before, bounds = 1.0, {}
    for i, layer in enumerate(arch.layers):
        if layer["type"] == "linear":
            fan = layer["in_features"]
            bounds[i] = 1.0 / fan if not bounds else math.sqrt(6.0 / fan) / w0_before
        else:
            w0_before = layer["w0"]
    weights = torch.empty(len(seeds), arch.n_params)
    for row, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(int(seed))
        for p in arch.layout:
            weights[row, p.slice] = (torch.rand(p.numel, generator=gen) * 2 - 1) * bounds[p.layer]
    return weights


def psnr(arch: Architecture, weights: torch.Tensor, images: torch.Tensor, offset: float = OUTPUT_OFFSET,
         indexing: str = "ij") -> np.ndarray:
    """Peak signal-to-noise ratio (dB, peak 1) of each INR ``[B, P]`` against its image ``[B, H, W]`` in
    ``[0, 1]``, rendered at the image's resolution without clipping."""
    _check_inr(arch)
    h, w = images.shape[-2:]
    out = model_outputs(arch, weights.float(), coordinate_grid(h, w, indexing)) + offset
    mse = ((out[..., 0] - images.reshape(len(images), -1).float()) ** 2).mean(1)
    return (10 * torch.log10(1.0 / mse)).numpy().astype(np.float64)


def fit_inrs(arch: Architecture, images: torch.Tensor, seeds: Sequence[int], steps: int = 200, lr: float = 3e-3,
             offset: float = OUTPUT_OFFSET, indexing: str = "ij", chunk_size: int = 512,
             progress: Progress = None) -> torch.Tensor:
    """Fit one SIREN per grey image, batched: ``images`` ``[B, H, W]`` in ``[0, 1]`` -> weights ``[B, P]``.

    Each INR starts from :func:`siren_init` with its own seed and takes ``steps`` full-batch Adam steps
    (``lr``, ``torch.optim.Adam`` defaults otherwise) on the mean squared error over all pixels of its
    image minus ``offset``. INRs are fitted ``chunk_size`` at a time (every INR's trajectory is its own,
    so chunks only bound the activations' memory: ``chunk_size * H * W * width`` floats per layer).
    ``progress(done, total)`` counts steps over all chunks, every 10 steps."""
    _check_inr(arch)
    if arch.output_dim != 1 or images.dim() != 3 or len(images) != len(seeds):
        raise ValueError(f"fit_inrs fits grey images [B, H, W] with one seed each and one output; got images "
                         f"{list(images.shape)}, {len(seeds)} seeds, {arch.output_dim} outputs")
    coords = coordinate_grid(images.shape[1], images.shape[2], indexing)
    starts = range(0, len(images), chunk_size)
    out = []
    for c, start in enumerate(starts):
        target = images[start:start + chunk_size].reshape(-1, coords.shape[0], 1).float() - offset
        weights = siren_init(arch, seeds[start:start + chunk_size]).requires_grad_(True)
        opt = torch.optim.Adam([weights], lr=lr)
        for step in range(1, steps + 1):
            with torch.enable_grad():
                pred, _ = forward(arch, weights, coords)
                loss = F.mse_loss(pred, target, reduction="none").mean((1, 2)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            if progress and (step % 10 == 0 or step == steps):
                progress(c * steps + step, len(starts) * steps)
        out.append(weights.detach())
    return torch.cat(out) if out else torch.zeros(0, arch.n_params)


def resampled_digits(size: int) -> tuple[torch.Tensor, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8, values 0..16) scaled to ``[0, 1]`` and resampled
    bilinearly (corner-aligned) to ``size x size``: ``(images [1797, size, size], labels [1797])``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    small = torch.as_tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    images = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=True)[:, 0]
    return images.clamp_(0, 1), d.target.astype(np.int64)


@dataclass(frozen=True)
class InrRecipe:
    """An INR zoo recipe (``wslviz make-zoo``; listed in :data:`wslviz.core.training.RECIPES`): SIRENs fitted to
    the images of scikit-learn's digits, resampled to ``image_size``, all at once.

    Every image gets ``fits_per_image`` INRs, each from its own random SIREN initialisation (seed
    ``seed * 100000 + row``), as in the DWSNets and NFN INR data sets (a shared start would leave the units
    aligned across INRs), fitted with :func:`wslviz.core.inr.fit_inrs` (``steps`` full-batch Adam steps at
    ``lr``). Rows are image-major. ``model_id`` is the image: the INRs of one image are that model's fits, so
    every split grouped by model (the Predict page's folds, the metanetworks' early stopping) is a split by
    image. Images are split into train/val/test by the ``split`` fractions. Metadata: ``model_id``,
    ``image_index``, ``fit``, ``label`` (the digit), ``seed``, ``psnr`` (dB at the fitting resolution),
    ``split``, ``image_size``. The zoo has no task: an INR's data is its own image.
    """

    name: str
    description: str
    arch: dict[str, Any]
    image_size: int
    steps: int
    lr: float
    fits_per_image: int = 1
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    threads: int | None = 1

    def train_zoo(self, seed: int = 0, progress: Progress = None):
        """Fit every INR (``progress(step, steps)``) and return the zoo."""
        arch = Architecture(self.arch)
        images, labels = resampled_digits(self.image_size)
        n, k = len(images), self.fits_per_image
        image = np.repeat(np.arange(n), k)
        seeds = seed * 100_000 + np.arange(n * k)
        targets = images[torch.as_tensor(image)]
        with thread_cap(self.threads):
            weights = fit_inrs(arch, targets, seeds, steps=self.steps, lr=self.lr, progress=progress)
            quality = psnr(arch, weights, targets)
        order = np.random.default_rng(seed).permutation(n)
        cut = np.cumsum(np.round(np.asarray(self.split) * n).astype(int))[:2]
        split = np.empty(n, dtype=object)
        for name, part in zip(("train", "val", "test"), np.split(order, cut), strict=True):
            split[part] = name
        meta = pd.DataFrame({"model_id": image, "image_index": image, "fit": np.tile(np.arange(k), n),
                             "label": labels[image], "seed": seeds, "psnr": quality, "split": split[image],
                             "image_size": self.image_size})
        return Zoo(name=self.name, metadata=meta, weights=weights, arch=arch, task=None, description=self.description)
