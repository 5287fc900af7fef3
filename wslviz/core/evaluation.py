"""Running networks: outputs, loss and accuracy of many flat weight vectors through one architecture at once.

The public entry points (``wv.evaluate``, ``wv.model_outputs``, ``wv.evaluate_affine``, ``wv.forward``) for every
kind of architecture. Each checks that the architecture can run (a weights-only layout gets one sentence saying
what to state) and calls the architecture's own method (:class:`wslviz.core.kind.ArchitectureBase`): the
sequential kind runs its hand-written batched kernels (:mod:`wslviz.core.seq_eval`), the module kind ``vmap`` of
``functional_call`` (:mod:`wslviz.core.module_eval`), a registered kind whatever it implements.
"""

from __future__ import annotations

import numpy as np
import torch

from wslviz.core.device import Device
from wslviz.core.kind import ArchitectureBase, Progress, require_forward
from wslviz.core.tasks import Task


def forward(arch: ArchitectureBase, weights: torch.Tensor, x: torch.Tensor, capture: set | None = None,
            train: bool = False, device: Device = None) -> tuple[torch.Tensor, dict]:
    """Outputs ``[B, N, out]`` of ``weights`` [B, P] on ``x`` and the activations named in ``capture`` (see
    :meth:`~wslviz.core.kind.ArchitectureBase.forward`). Differentiable."""
    require_forward(arch, "A forward pass")
    return arch.forward(weights, x, capture=capture, train=train, device=device)


@torch.no_grad()
def model_outputs(arch: ArchitectureBase, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
                  progress: Progress = None, device: Device = None) -> torch.Tensor:
    """Outputs ``[B, N, out]`` of B models (``weights`` [B, P] or [P]) on inputs ``x`` [N, ...]."""
    require_forward(arch, "Running the networks")
    return arch.model_outputs(weights, x, chunk_size, progress, device)


@torch.no_grad()
def evaluate(arch: ArchitectureBase, task: Task, weights: torch.Tensor, split: str = "test",
             chunk_size: int | None = None, progress: Progress = None,
             device: Device = None) -> dict[str, torch.Tensor]:
    """Loss and accuracy of every model on a task split: ``weights [B, P] -> {"loss": [B], "accuracy": [B]}``.

    Equal (to float tolerance) to loading each model with ``load_state_dict`` and running it
    (:func:`evaluate_per_model`). For regression tasks accuracy is NaN.
    """
    require_forward(arch, "Evaluation")
    return arch.evaluate(task, weights, split, chunk_size, progress, device)


@torch.no_grad()
def evaluate_affine(arch: ArchitectureBase, task: Task, origin: torch.Tensor, directions: torch.Tensor,
                    coords: torch.Tensor, split: str = "test", chunk_size: int | None = None,
                    progress: Progress = None, device: Device = None) -> dict[str, torch.Tensor]:
    """:func:`evaluate` of the G models ``origin + coords @ directions`` (``origin`` [P], ``directions``
    [D, P], ``coords`` [G, D]): a line or plane through weight space -> ``{"loss": [G], "accuracy": [G]}``.
    Only one chunk of points is in memory at a time."""
    require_forward(arch, "Evaluation")
    return arch.evaluate_affine(task, origin, directions, coords, split, chunk_size, progress, device)


@torch.no_grad()
def evaluate_per_model(arch: ArchitectureBase, task: Task, weights: torch.Tensor, split: str = "test",
                       device: Device = None) -> dict[str, torch.Tensor]:
    """Reference implementation: one ``nn.Module``, ``load_state_dict`` and forward per model (on ``device``),
    ``weights [B, P] -> {"loss": [B], "accuracy": [B]}``. Ground truth for the tests, the loop for benchmarks."""
    require_forward(arch, "Evaluation")
    return arch.evaluate_per_model(task, weights, split, device)


@torch.no_grad()
def batchnorm_statistics(arch: ArchitectureBase, weights: torch.Tensor, x: torch.Tensor,
                         chunk_size: int | None = None, device: Device = None) -> torch.Tensor:
    """``weights`` [B, P] with every BatchNorm's running mean and (unbiased) variance recomputed over the
    inputs ``x`` [N, ...] (Ioffe & Szegedy 2015, Sec. 3.1); unchanged without BatchNorm."""
    require_forward(arch, "Recomputing BatchNorm statistics")
    return arch.batchnorm_statistics(weights, x, chunk_size, device)


@torch.no_grad()
def decision_grid(arch: ArchitectureBase, weights: torch.Tensor, x: torch.Tensor, resolution: int = 80,
                  margin: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted class of each model on a ``resolution x resolution`` grid over the 2D inputs ``x [N, 2]``
    (padded by ``margin`` of the range), in one batched pass. Returns ``(xs [R], ys [R], classes [B, R, R])``
    with ``classes[b, i, j]`` the prediction at ``(xs[j], ys[i])``."""
    if tuple(arch.input_shape or ()) != (2,):
        raise ValueError(f"decision boundaries need 2D inputs; this architecture takes {list(arch.input_shape or [])}")
    lo, hi = x.min(0).values, x.max(0).values
    pad = margin * (hi - lo)
    xs = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), resolution)
    ys = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), resolution)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    out = model_outputs(arch, weights.reshape(-1, arch.n_params), grid)
    classes = out.argmax(-1).reshape(-1, resolution, resolution)
    return xs.numpy(), ys.numpy(), classes.numpy()
