"""Batched functional evaluation: many flat weight vectors through one architecture at once.

The fast path is an explicit batched formulation rather than ``vmap(functional_call)``: dense layers
are one ``baddbmm`` over ``[B, N, F]`` activations, and conv layers are one grouped convolution with
the B models stacked along the channel axis (``[N, B*C, H, W]``, ``groups=B``), so pooling, BatchNorm
and activations act on all models in one kernel call. Models are processed in chunks so memory stays
bounded. ``forward`` is differentiable, which is how ``make-zoo`` trains hundreds of models at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from wslviz.arch import Architecture
from wslviz.tasks import Task

Progress = Callable[[int, int], None] | None
"""A progress callback ``progress(done, total)``; pages pass one that drives ``st.progress``."""

_GROUPED = "grouped"  # conv section: [N, B*C, H, W]
_DENSE = "dense"  # dense section: [B, N, F] (or [N, F] while still shared by all models)


def _activation(layer: dict, x: torch.Tensor) -> torch.Tensor:
    kind = layer["type"]
    if kind == "relu":
        return torch.relu(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, layer["negative_slope"])
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "gelu":
        return F.gelu(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    return torch.sin(layer["w0"] * x)


def _to_grouped(x: torch.Tensor, b: int, shared: bool) -> torch.Tensor:
    if shared:  # [N, C, H, W] -> same input for every model
        return x.repeat(1, b, 1, 1)
    n = x.shape[1]
    return x.transpose(0, 1).reshape(n, -1, *x.shape[-2:])


def forward(
    arch: Architecture,
    weights: torch.Tensor,
    x: torch.Tensor,
    *,
    train: bool = False,
    dropout: torch.Tensor | None = None,
    capture: set[int] | frozenset[int] = frozenset(),
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Outputs of B models on the same inputs, in one pass.

    ``weights`` [B, P]; ``x`` [N, *input_shape] (shared) or [B, N, *input_shape] (one batch per model).
    ``train`` turns on dropout (rate per model from ``dropout`` [B], else the spec's) and BatchNorm batch
    statistics (running statistics are not updated). ``capture`` names layer indices whose outputs are
    returned as ``{index: [B, N, C, (H, W)]}``. Returns ``(outputs [B, N, out], captured)``.
    """
    b = weights.shape[0]
    params = arch.unflatten(weights)
    shared = x.dim() == len(arch.input_shape) + 1
    h = x
    layout = _DENSE
    if len(arch.input_shape) == 3:
        h, layout = _to_grouped(x, b, shared), _GROUPED
        shared = False
    captured: dict[int, torch.Tensor] = {}
    for i, layer in enumerate(arch.layers):
        kind = layer["type"]
        if kind == "linear":
            w = params[f"{i}.weight"]
            bias = params.get(f"{i}.bias")
            if shared:
                h = torch.matmul(h, w.transpose(1, 2))
                h = h + bias.unsqueeze(1) if bias is not None else h
            elif bias is not None:
                h = torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))
            else:
                h = torch.bmm(h, w.transpose(1, 2))
            shared = False
        elif kind == "conv2d":
            w = params[f"{i}.weight"]
            bias = params.get(f"{i}.bias")
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), bias.reshape(-1) if bias is not None else None,
                         stride=layer["stride"], padding=layer["padding"], groups=b)
        elif kind == "maxpool2d":
            h = F.max_pool2d(h, layer["kernel_size"], layer["stride"])
        elif kind == "avgpool2d":
            h = F.avg_pool2d(h, layer["kernel_size"], layer["stride"])
        elif kind in ("global_avg_pool", "flatten"):
            n = h.shape[0]
            h = h.mean(dim=(-2, -1)) if kind == "global_avg_pool" else h
            h, layout = h.reshape(n, b, -1).transpose(0, 1), _DENSE
        elif kind == "batchnorm":
            h = _batchnorm(layer, params, i, h.expand(b, *h.shape) if shared else h, b, layout, train)
            shared = False
        elif kind == "layernorm":
            h = F.layer_norm(h, h.shape[-1:], eps=layer["eps"])
            h = h * params[f"{i}.weight"].unsqueeze(1) + params[f"{i}.bias"].unsqueeze(1)
            shared = False
        elif kind == "dropout":
            if train:
                h = _dropout(h.expand(b, *h.shape) if shared else h, b, layout,
                             layer["p"] if dropout is None else dropout)
                shared = False
        else:
            h = _activation(layer, h)
        if i in capture:
            captured[i] = _canonical(h, b, layout, shared)
    return _canonical(h, b, layout, shared), captured


def _canonical(h: torch.Tensor, b: int, layout: str, shared: bool) -> torch.Tensor:
    if layout == _GROUPED:
        n = h.shape[0]
        return h.reshape(n, b, -1, *h.shape[-2:]).transpose(0, 1)
    return h.expand(b, *h.shape) if shared else h


def _batchnorm(layer: dict, params: dict, i: int, h: torch.Tensor, b: int, layout: str, train: bool) -> torch.Tensor:
    gamma, beta = params[f"{i}.weight"], params[f"{i}.bias"]
    if layout == _GROUPED:
        dims, view = (0, 2, 3), (1, -1, 1, 1)
        gamma, beta = gamma.reshape(view), beta.reshape(view)
        mean, var = params[f"{i}.running_mean"].reshape(view), params[f"{i}.running_var"].reshape(view)
    else:
        dims, view = (1,), (b, 1, -1)
        gamma, beta = gamma.reshape(view), beta.reshape(view)
        mean, var = params[f"{i}.running_mean"].reshape(view), params[f"{i}.running_var"].reshape(view)
    if train:
        mean, var = h.mean(dims, keepdim=True), h.var(dims, unbiased=False, keepdim=True)
    return (h - mean) * torch.rsqrt(var + layer["eps"]) * gamma + beta


def _dropout(h: torch.Tensor, b: int, layout: str, p: float | torch.Tensor) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=h.dtype).expand(b)
    if layout == _GROUPED:
        c = h.shape[1] // b
        keep = (1 - p).repeat_interleave(c).view(1, -1, 1, 1)
    else:
        keep = (1 - p).view(b, 1, 1)
    mask = torch.rand_like(h) < keep
    return torch.where(mask, h / keep.clamp_min(1e-6), torch.zeros_like(h))


def default_chunk_size(arch: Architecture, n_inputs: int, budget_bytes: int = 256 * 2**20) -> int:
    """Models per chunk so that one chunk's widest activation stays within ``budget_bytes``."""
    import math

    widest = max([math.prod(arch.input_shape)] + [math.prod(s) for s in arch.shapes])
    per_model = 3 * 4 * n_inputs * widest
    return max(1, budget_bytes // max(per_model, 1))


@torch.no_grad()
def model_outputs(
    arch: Architecture, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
    progress: Progress = None,
) -> torch.Tensor:
    """Outputs ``[B, N, out]`` of B models (``weights`` [B, P] or [P]) on inputs ``x`` [N, ...]."""
    single = weights.dim() == 1
    weights = weights.unsqueeze(0) if single else weights
    chunk = chunk_size or default_chunk_size(arch, len(x))
    outs = []
    for start in range(0, len(weights), chunk):
        outs.append(forward(arch, weights[start:start + chunk].float(), x)[0])
        if progress:
            progress(min(start + chunk, len(weights)), len(weights))
    out = torch.cat(outs) if outs else torch.zeros(0, len(x), arch.output_dim)
    return out[0] if single else out


@torch.no_grad()
def evaluate(
    arch: Architecture,
    task: Task,
    weights: torch.Tensor,
    split: str = "test",
    chunk_size: int | None = None,
    progress: Progress = None,
) -> dict[str, torch.Tensor]:
    """Loss and accuracy of every model on a task split: ``weights [B, P] -> {"loss": [B], "accuracy": [B]}``.

    Equal (to float tolerance) to loading each model with ``load_state_dict`` and running it. For
    regression tasks accuracy is NaN.
    """
    if task is None:
        raise ValueError("this zoo has no task: attach evaluation data (a .npz with x and y) to evaluate it")
    single = weights.dim() == 1
    weights = weights.unsqueeze(0) if single else weights
    x, y = task.split(split)
    if tuple(x.shape[1:]) != arch.input_shape:
        raise ValueError(f"task inputs have shape {list(x.shape[1:])}, the architecture expects "
                         f"{list(arch.input_shape)}")
    chunk = chunk_size or default_chunk_size(arch, len(x))
    losses, correct = [], []
    for start in range(0, len(weights), chunk):
        out = forward(arch, weights[start:start + chunk].float(), x)[0]
        losses.append(task.loss(out, y))
        correct.append(task.correct(out, y))
        if progress:
            progress(min(start + chunk, len(weights)), len(weights))
    loss = torch.cat(losses) if losses else torch.zeros(0)
    acc = torch.cat(correct) / len(y) if correct else torch.zeros(0)
    if task.kind != "classification":
        acc = torch.full_like(loss, float("nan"))
    result = {"loss": loss, "accuracy": acc}
    return {k: v[0] for k, v in result.items()} if single else result


@torch.no_grad()
def evaluate_per_model(arch: Architecture, task: Task, weights: torch.Tensor, split: str = "test"):
    """Reference implementation: one ``nn.Module``, ``load_state_dict`` and forward per model.

    Used by the tests (ground truth for :func:`evaluate`) and the benchmarks (the loop baseline).
    """
    x, y = task.split(split)
    model = arch.build()
    losses, accs = [], []
    for w in weights:
        model.load_state_dict(arch.unflatten(w), strict=False)
        out = model(x).unsqueeze(0)
        losses.append(task.loss(out, y)[0])
        accs.append(task.correct(out, y)[0] / len(y))
    return {"loss": torch.stack(losses), "accuracy": torch.stack(accs)}
