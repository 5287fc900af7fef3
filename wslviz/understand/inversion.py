"""What a network remembers of its training data, read from its weights alone: DeepInversion.

A network with BatchNorm stores, in each BN layer's running mean and variance, the statistics of its training
data's features. DeepInversion (Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion",
CVPR 2020) optimises a batch of inputs, starting from noise, until (1) the network classifies each as the class
asked for, (2) every BN layer sees the batch mean and variance it recorded in training, and (3) the inputs are
smooth (total variation) and small (L2). The inputs that result look like the training data, and a student
network distilled only from them (Hinton et al., "Distilling the Knowledge in a Neural Network", 2015) learns
the teacher's task without a single real example: :func:`distil`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from wslviz.core import ArchitectureLike, Task, require_forward

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Inversion:
    """Inputs recovered from a network. ``images`` ``[n, *input_shape]``; ``labels`` ``[n]`` the classes they
    were optimised towards; ``confidence`` ``[n]`` the network's probability of that class on each; ``bn_loss``
    the final BatchNorm statistics mismatch (sum over layers, 0 when the batch matches training exactly);
    ``frames`` ``[k, n, *input_shape]`` the inputs as they were after the steps ``frame_steps`` (the last frame is
    ``images``; none unless asked for)."""

    images: torch.Tensor
    labels: torch.Tensor
    confidence: torch.Tensor
    bn_loss: float
    frames: torch.Tensor | None = None
    frame_steps: tuple[int, ...] = ()


def frame_marks(steps: int, frames: int) -> list[int]:
    """The steps (1-based, in order, the last one ``steps``) after which ``frames`` snapshots of an optimisation of
    ``steps`` steps are taken, evenly spaced; fewer when there are fewer steps."""
    if frames < 1:
        return []
    return sorted({max(1, int(round(v))) for v in np.linspace(steps / frames, steps, frames)})


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbours along the spatial axes: rows and columns of images
    ``[n, C, H, W]``, positions of sequences ``[n, C, L]``; zero for feature vectors ``[n, F]``, whose neighbouring
    features need not be alike."""
    if x.dim() < 3:
        return x.new_zeros(())
    tv = (x[..., 1:] - x[..., :-1]).abs().mean()
    return tv + (x[..., 1:, :] - x[..., :-1, :]).abs().mean() if x.dim() >= 4 else tv


def invert(arch: ArchitectureLike, weights: torch.Tensor, n: int = 256, steps: int = 1000, lr: float = 0.1,
           bn_weight: float = 1.0, tv_weight: float = 0.05, l2_weight: float = 1e-4, random_state: int = 0,
           progress: Callable[[int, int], None] | None = None, frames: int = 0) -> Inversion:
    """DeepInversion of one classifier with BatchNorm: ``n`` inputs, classes taken in turn, optimised with Adam
    for ``steps`` steps from standard-normal noise (seeded by ``random_state``) to minimise cross-entropy towards
    their class + ``bn_weight`` x (sum over BN layers of the distances between the batch's per-channel mean and
    standard deviation and the layer's running ones) + ``tv_weight`` x total variation + ``l2_weight`` x mean
    square. ``frames`` snapshots of the inputs are kept along the way (:func:`frame_marks`), to watch them form.
    ``weights`` is one flat weight vector ``[P]``. Refuses a network without a forward, without BatchNorm
    (its weights then keep no statistics of the data to match) or with fewer than two outputs."""
    require_forward(arch, "Inverting a network")
    if weights.dim() != 1 or weights.numel() != arch.n_params:
        raise ValueError(f"expected one weight vector of {arch.n_params} values, got shape {list(weights.shape)}")
    if n < 2 or steps < 1:
        raise ValueError(f"need at least 2 inputs and 1 step, got n={n}, steps={steps}")
    net = arch.build(weights).eval()
    norms = [m for m in net.modules() if isinstance(m, BATCHNORMS)]
    if not norms or any(m.running_mean is None for m in norms):
        raise ValueError(f"{arch.describe()} has no BatchNorm running statistics: DeepInversion matches the "
                         "feature statistics that BatchNorm layers record in training, and this network kept none")
    n_classes = arch.output_dim
    if n_classes < 2:
        raise ValueError(f"DeepInversion needs a classifier; {arch.describe()} gives {n_classes} output")
    for p in net.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(random_state)
    labels = torch.arange(n) % n_classes
    x = torch.randn(n, *arch.input_shape, generator=gen).requires_grad_(True)
    mismatch: list[torch.Tensor] = []

    def match(module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        feats = inputs[0].transpose(0, 1).reshape(inputs[0].shape[1], -1)  # [channels, batch x positions]
        mismatch.append(torch.linalg.vector_norm(feats.mean(1) - module.running_mean)
                        + torch.linalg.vector_norm(feats.var(1, unbiased=False).add(module.eps).sqrt()
                                                   - module.running_var.add(module.eps).sqrt()))

    hooks = [m.register_forward_hook(match) for m in norms]
    optimiser = torch.optim.Adam([x], lr=lr)
    marks, snapshots = frame_marks(steps, frames), []
    try:
        for step in range(steps):
            mismatch.clear()
            optimiser.zero_grad()
            logits = net(x)
            bn = torch.stack(mismatch).sum()
            loss = (F.cross_entropy(logits, labels) + bn_weight * bn + tv_weight * _total_variation(x)
                    + l2_weight * x.square().mean())
            loss.backward()
            optimiser.step()
            if step + 1 in marks:
                snapshots.append(x.detach().clone())
            if progress:
                progress(step + 1, steps)
        with torch.no_grad():
            mismatch.clear()
            probs = net(x).softmax(-1)
            bn = torch.stack(mismatch).sum()
    finally:
        for h in hooks:
            h.remove()
    confidence = probs.gather(1, labels[:, None])[:, 0]
    return Inversion(x.detach(), labels, confidence, float(bn), torch.stack(snapshots) if snapshots else None,
                     tuple(marks))


def distil(arch: ArchitectureLike, teacher: torch.Tensor, inputs: torch.Tensor, epochs: int = 200,
           batch_size: int = 64, lr: float = 3e-3, temperature: float = 4.0, random_state: int = 0) -> torch.Tensor:
    """A student of the same architecture, from a fresh initialisation (seeded by ``random_state``), trained with
    Adam to match the ``teacher``'s (``[P]``) softened outputs (KL divergence at ``temperature``) on ``inputs``
    ``[N, *input_shape]`` only: no labels and no real data. Returns the student's flat weights ``[P]``."""
    require_forward(arch, "Distilling a network")
    if len(inputs) == 0:
        raise ValueError("no inputs to distil from")
    with torch.no_grad():
        targets = arch.build(teacher).eval()(inputs).div(temperature).softmax(-1)
    torch.manual_seed(random_state)
    student = arch.build().train()
    for module in student.modules():  # a module kind builds its stored instance: start from a fresh draw
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    gen = torch.Generator().manual_seed(random_state)
    optimiser = torch.optim.Adam(student.parameters(), lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(inputs), generator=gen).split(batch_size):
            if len(idx) < 2:  # BatchNorm cannot train on a batch of one
                continue
            optimiser.zero_grad()
            log_probs = student(inputs[idx]).div(temperature).log_softmax(-1)
            F.kl_div(log_probs, targets[idx], reduction="batchmean").backward()
            optimiser.step()
    return arch.flatten(student.eval().state_dict())


def _standardised(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(len(x), -1).double()
    flat = flat - flat.mean(1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_examples(inputs: torch.Tensor, examples: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each input ``[n, ...]``, the index of the nearest of ``examples`` ``[N, ...]`` and the distance, both
    standardised first (each minus its mean, over its norm: inverted inputs live on another scale than the data, and
    only their pattern is compared). Distances lie in [0, 2]: 0 the same pattern, about 1.4 unrelated ones."""
    a, b = _standardised(inputs), _standardised(examples)
    dist = torch.cdist(a, b)
    best = dist.min(1)
    return best.indices.numpy(), best.values.numpy()


def distillation_scores(arch: ArchitectureLike, task: Task, teacher: torch.Tensor, inputs: torch.Tensor,
                        epochs: int = 50, random_state: int = 0,
                        progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """The honest measure of what ``inputs`` carry of the data: test accuracy of the ``teacher`` [P], of a student
    :func:`distil` led from the ``inputs`` alone, and of one from as many standard-normal noise inputs (the baseline;
    seeded by ``random_state``). Columns ``model``, ``inputs``, ``test accuracy``."""
    noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(random_state + 1))
    rows = [("teacher", "its training data", teacher)]
    for k, (label, data) in enumerate((("the inverted inputs", inputs), ("noise", noise))):
        rows.append(("student", label, distil(arch, teacher, data, epochs, random_state=random_state)))
        if progress:
            progress(k + 1, 2)
    weights = torch.stack([w for _, _, w in rows])
    accuracy = arch.evaluate(task, weights)["accuracy"].numpy().astype(float)
    return pd.DataFrame({"model": [m for m, _, _ in rows], "inputs": [i for _, i, _ in rows],
                         "test accuracy": accuracy})
