"""Batched functional evaluation: many flat weight vectors through one architecture at once.

``forward`` runs B models on the same inputs with an explicit batched formulation per layer type
(not ``vmap(functional_call)``, which materialises memory-bound intermediates and measured slower
than a Python loop for a 2-16-16-2 MLP at B=1681). Models are processed in chunks whose activations
stay near the CPU caches, and ``forward`` stays differentiable (``make-zoo`` trains hundreds of models
at once through it). Without autograd and with several torch threads, ``evaluate``, ``evaluate_affine``
and ``model_outputs`` run the chunks in parallel single-threaded streams (:func:`_run_chunks`).

Activation layouts:

- dense section: ``[B, N, F]``, or ``[N, F]`` while the input is still shared by all models;
- image section: ``[B, N, H, W, C]`` (channels last per model), or ``[N, H, W, C]`` while shared.
  Flattening keeps the (H, W, C) order and permutes the next layer's parameters instead of the data.
  Without autograd a banded conv's output is a permuted view of row-major ``[H, B, N, W, C]`` memory.

Per layer type:

- **linear**: one ``baddbmm`` per chunk (on the shared input expanded over models), or, reading a banded
  conv's row-major output unflattened, one per image row, summed.
- **conv2d, banded** (used when the padded image width is at most ``BANDED_MAX_WIDTH_RATIO`` times
  the kernel size): each model's convolution becomes one dense matmul per output *row*: the ``k``
  input rows an output row needs, ``k * W_in * C`` contiguous values in this layout, times a banded
  ``[k * W_in * C, W_out * O]`` matrix gathered from the kernel (zeros outside the band). That does
  ``W_in / k`` times the FLOPs of a direct convolution, but as large ``bmm`` calls that run near the
  machine's matmul peak, whereas a direct per-model convolution of these tiny images is dominated by
  call overhead and layout shuffles. While the input is still shared (first layer) the row windows are
  copied once for all models, the bias rides along as a column of ones, and (without autograd) output
  columns go in groups (:func:`_column_group`) so that the band holds fewer zeros; later layers read the
  windows in place without autograd (``k*W_in*C`` contiguous values per image at a fixed stride are a
  valid matmul operand) and copy them with ``unfold`` when autograd is on.
- **conv2d, grouped** (wide images, where the band would waste too many FLOPs): one grouped
  convolution with the models stacked along channels (``[N, B*C, H, W]``, ``groups=B``, channels-last).
- pooling, BatchNorm, LayerNorm, dropout, activations: one kernel call per chunk on the whole batch,
  in place when autograd is off; a ReLU right after a linear or conv layer is applied by that layer.

Measured on this project's 2-core Xeon (AVX-512, 125-140 GFLOP/s fp32 matmul per core when quiet) for the
digits CNN on 539 images, 1681 models, seconds for all models, one layer: the second conv as a grouped conv
0.80 (0.28 channels-last), as ``unfold`` im2col + bmm 7.0, as a full Toeplitz bmm (4x FLOPs) 0.26-0.33,
as banded rows 0.07 (window copy) + 0.12 (bmm), or 0.13 reading the windows in place. ``F.cross_entropy``
on [B*N, 10] logits cost 4x a logsumexp-minus-target (now in :meth:`wslviz.core.tasks.Task.loss`).

Further measured choices (digits CNN, 1 thread unless said; per-chunk figures for 16 models):

- **Buffers reused across chunks** (:func:`_buffer`, no-grad only): every chunk's multi-MB layer outputs
  were fresh ``mmap`` pages from glibc, page-faulted on first touch; reusing one buffer per layer took
  the evaluation of 2,601 models from ~2.5 s to ~1.1 s (same effect as ``MALLOC_MMAP_THRESHOLD_``).
- **Shared inputs are expanded, not broadcast**: ``torch.matmul(rows, band[B])`` copies the shared rows
  once per model; ``bmm`` on a stride-0 expanded view does not (conv1: 3.4 ms -> 0.64 ms per chunk of 8).
- **Narrow linear outputs are computed transposed** (``w @ h.T``, fewer than 16 output features): MKL's
  batched matmul with 2 output columns ran ~3x slower than with the roles swapped (10 columns: 1.7x).
- **Conv output left row-major**: copying the second conv's rows into ``[B, N, H, W, C]`` order was a
  pass over its output (~0.3 ms a chunk; writing the rows straight into that order through strided
  ``out=`` views cost as much); the linear layer reads the rows where they are instead.
- **One gather per band** (:func:`_kernel_band`): ``index_select`` into a reused buffer, bias row included,
  instead of ``cat`` + advanced indexing + ``repeat`` (~0.4 ms a chunk of 8).
- **Grouped output columns in the first conv**: groups of 2 columns (16 outputs per matmul row, 13 inputs)
  do 1.6x the direct FLOPs instead of 2.7x: 0.83 -> 0.59 ms; 1 column (8 outputs) ran slower, 0.94 ms.
- **Bias and ReLU fused** (:func:`_bias_relu_`): ``baddbmm`` copies the broadcast bias into its output
  before the matmul; ``bmm`` then ATen's fused add+ReLU saves that pass (2.77 -> 2.55 ms for conv2).
- **Loss and accuracy in one pass over the logits** (:meth:`wslviz.core.tasks.Task.loss_and_correct`): the
  class maximum is shared by logsumexp and the "correct" test; ``argmax`` alone cost 3x an ``amax``; the
  test for ties with an earlier class runs only when a row has a tie (or a non-finite maximum).
- **Parallel streams** (:func:`_run_chunks`): with 2 threads, two Python threads with one intra-op thread
  each took 0.27-0.29 s where the serial chunk loop with 2-thread kernels took 0.38-0.45 s; the threads
  are kept (new ones cost moons-mlp 20 -> 34 ms per call), and chunks are larger (``CACHE_BUDGET_BYTES``).
- **Lines and planes** (:func:`evaluate_affine`): the first layer's output is exactly affine in the grid
  coordinates, so it is one ``[G, D+1] x [D+1, N*F]`` matmul from precomputed products.

End to end (``benchmarks/bench_evaluate.py --repeats 5``, 1,681 models, 2 threads, load ~0.6): digits-cnn
6.0x the per-model loop (loop 1.75 s, batched 0.29 s; 0.50 s and 3.4x before the row-major conv output,
fused bias+ReLU, grouped conv1 columns and streams), moons-mlp 24x; ``--threads 1``: digits-cnn 3.9-5.0x
(batched 0.50-0.62 s, loop 2.2-2.9 s on this shared machine), moons-mlp 22x. The CNN's floor is the banded
conv2: 2 x 539 x 4 x 144 x 32 multiply-adds per model (twice the direct count), 33 GFLOP for all models,
~0.25 s on one core at its ~135 GFLOP/s matmul peak; counting the FLOPs the matmuls actually do (banded conv1
and conv2, linear: 25 MFLOP per model), the evaluator runs at ~145 GFLOP/s, about half the 2-core peak. The
rest (conv1's ReLU, the linear's four narrow products, fused bias+ReLU, loss) are memory-bound passes.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable
from concurrent import futures
from functools import cache, lru_cache
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from wslviz.core.arch import ACTIVATIONS, Architecture
from wslviz.core.tasks import Task

T = TypeVar("T")
Progress = Callable[[int, int], None] | None
"""A progress callback ``progress(done, total)``; pages pass one that drives ``st.progress``."""

BANDED_MAX_WIDTH_RATIO = 4
"""Convolutions whose padded input width is at most this many kernel widths use the banded matmul."""

_IMAGE = "image"  # [B, N, H, W, C] (or [N, H, W, C] while shared)
_DENSE = "dense"  # [B, N, F] (or [N, F] while shared)


def _activation(layer: dict, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    kind = layer["type"]
    if kind == "relu":
        return torch.relu_(x) if inplace else torch.relu(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, layer["negative_slope"], inplace=inplace)
    if kind == "tanh":
        return torch.tanh_(x) if inplace else torch.tanh(x)
    if kind == "gelu":
        return F.gelu(x)
    if kind == "sigmoid":
        return torch.sigmoid_(x) if inplace else torch.sigmoid(x)
    return torch.sin_(x.mul_(layer["w0"])) if inplace else torch.sin(layer["w0"] * x)


@lru_cache(maxsize=64)
def _band_index(o: int, c: int, k: int, s: int, wp: int, wo: int, bias: bool) -> torch.Tensor:
    """Index into a conv layer's parameters flattened as ``[O*C*k*k kernel taps, O biases (with bias), one zero]``,
    shaped ``[k*wp*c + bias, wo*o]``.

    Row ``(r, w_in, c)`` (kernel row, input column, input channel), column ``(w_out, o)``: the kernel
    tap ``W[o, c, r, w_in - s*w_out]`` when that column offset lies inside the kernel, else the zero. With
    ``bias`` a last row holds bias ``o`` in every column ``(w_out, o)``.
    """
    taps = o * c * k * k
    r = torch.arange(k).view(k, 1, 1, 1, 1)
    w_in = torch.arange(wp).view(1, wp, 1, 1, 1)
    ci = torch.arange(c).view(1, 1, c, 1, 1)
    w_out = torch.arange(wo).view(1, 1, 1, wo, 1)
    oi = torch.arange(o).view(1, 1, 1, 1, o)
    d = w_in - s * w_out
    idx = ((oi * c + ci) * k + r) * k + d
    idx = torch.where((d >= 0) & (d < k), idx, taps + o * bias).reshape(k * wp * c, wo * o)
    if bias:
        idx = torch.cat([idx, (taps + torch.arange(wo * o) % o).view(1, wo * o)])
    return idx


Workspace = dict[str, torch.Tensor] | None
"""Buffers reused from one chunk of models to the next (see :func:`_buffer`); ``None``: allocate afresh."""


def _buffer(ws: Workspace, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
    """An uninitialised ``shape`` tensor carved from the workspace's buffer ``key``, for an ``out=``
    argument; ``None`` (let the op allocate, as autograd requires) without a workspace.

    Why: a chunk's activations are megabytes, which glibc serves with fresh ``mmap`` pages that fault in
    on first touch; reusing one buffer per layer across chunks cut the digits CNN's evaluation of 2,601
    models from about 2.5 s to 1.1 s here (same effect as raising ``MALLOC_MMAP_THRESHOLD_``). Only for
    evaluation without autograd: a buffer is overwritten by the next chunk."""
    if ws is None:
        return None
    n = math.prod(shape)
    buf = ws.get(key)
    if buf is None or buf.numel() < n or buf.dtype != like.dtype:
        buf = ws[key] = like.new_empty(n)
    return buf[:n].view(shape)


def _conv(layer: dict, w: torch.Tensor, bias: torch.Tensor | None, h: torch.Tensor, shared: bool,
          b: int, ws: Workspace = None, key: str = "", relu: bool = False) -> torch.Tensor:
    """Convolution of image-layout activations; returns ``[B, N, H_out, W_out, O]``. ``relu`` (no autograd): also
    apply the ReLU that follows, in place."""
    k, s, p, o = layer["kernel_size"], layer["stride"], layer["padding"], layer["out_channels"]
    hp, wp, c = h.shape[-3] + 2 * p, h.shape[-2] + 2 * p, h.shape[-1]
    ho, wo = (hp - k) // s + 1, (wp - k) // s + 1
    n = h.shape[-4]
    if wp > BANDED_MAX_WIDTH_RATIO * k:
        if shared:
            xg = h.permute(0, 3, 1, 2).repeat(1, b, 1, 1)
        else:
            xg = h.permute(1, 0, 4, 2, 3).reshape(n, b * c, *h.shape[-3:-1])
        xg = xg.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(xg, w.reshape(b * o, c, k, k), None if bias is None else bias.reshape(-1),
                     stride=s, padding=p, groups=b)
        y = y.reshape(n, b, o, ho, wo).permute(1, 0, 3, 4, 2).contiguous()
        return y.relu_() if relu else y
    if p:
        h = F.pad(h, (0, 0, p, p, p, p))
    if shared:
        # Output columns in groups of g per matmul row, each row one group's window (k input rows by (g-1)*s + k
        # columns): the band then skips most of the zeros a full-width row multiplies (digits conv1: 2.7x -> 1.6x
        # the direct FLOPs, 0.83 -> 0.59 ms for 16 models). g: the fewest columns giving at least 16 outputs per row
        # (narrower matmuls ran slower). With autograd, full-width rows as before, so training's numerics stay put.
        g = wo if torch.is_grad_enabled() else _column_group(wo, o)
        wg = wp if g == wo else (g - 1) * s + k
        band = _kernel_band(w, bias, s, wg, g, ws, key)  # [B, k*wg*C (+1 bias row), g*O]
        rows = _shared_rows(h, k, s, g, wg, bias is not None, ws, key)
        # bmm on the rows expanded (stride 0) over models: torch.matmul would copy them once per model
        y = _buffer(ws, key, (b, rows.shape[0], g * o), rows)
        y = torch.bmm(rows.expand(b, *rows.shape), band, out=y).view(b, n, ho, wo, o)
        return y.relu_() if relu else y
    band = _kernel_band(w, bias, s, wp, wo, ws, key)  # [B, k*Wp*C (+1 bias row), Wo*O]
    kk = k * wp * c
    band, row_bias = band[:, :kk], (None if bias is None else band[:, kk:])
    if torch.is_grad_enabled():
        rows = h.flatten(-2).unfold(-2, k, s).transpose(-1, -2).reshape(b, n * ho, kk)
        y = torch.bmm(rows, band) if row_bias is None else torch.baddbmm(row_bias, rows, band)
        return y.view(b, n, ho, wo, o)
    # Without autograd, skip copying the row windows: output row i reads the k*Wp*C values from input
    # row i*s on, contiguous in each image, so a strided view is a valid matmul operand as it stands.
    h = h.contiguous().view(b, n, hp * wp * c)
    out = _buffer(ws, key, (ho, b, n, wo * o), h)
    out = h.new_empty(ho, b, n, wo * o) if out is None else out
    for i in range(ho):
        start = i * s * wp * c
        rows_i = h[:, :, start:start + kk]
        if row_bias is None or relu:
            torch.bmm(rows_i, band, out=out[i])
        else:
            torch.baddbmm(row_bias, rows_i, band, out=out[i])
    if relu:
        _bias_relu_(out, row_bias)
    # Returned as a [B, N, Ho, Wo, O] view of the row-major [Ho, B, N, Wo, O] memory, not copied to that order
    # (a pass over the whole output): elementwise layers work on the view and a linear layer reads it row by row.
    return out.view(ho, b, n, wo, o).permute(1, 2, 0, 3, 4)


def _column_group(wo: int, o: int) -> int:
    """The fewest output columns (a divisor of ``wo``) that give a shared conv's matmul rows 16 outputs or more."""
    return next(g for g in range(1, wo + 1) if wo % g == 0 and (g * o >= 16 or g == wo))


def _kernel_band(w: torch.Tensor, bias: torch.Tensor | None, s: int, wp: int, wo: int, ws: Workspace,
                 key: str) -> torch.Tensor:
    """Each model's banded conv matrix ``[B, k*Wp*C (+1), Wo*O]`` (see :func:`_band_index`), with a last row
    holding the bias repeated over the output columns when there is a bias.

    Without autograd, band and bias row come from one ``index_select`` on the layer's flattened parameters.
    With autograd the bias row is ``bias.repeat`` appended, as before the gather existed: the gather's
    backward sums the bias gradient's Wo copies in another order, a last-bit change that would alter the
    weights ``make-zoo`` trains."""
    b, o, c, k = w.shape[:4]
    fused = bias is not None and not torch.is_grad_enabled()
    parts = [w.reshape(b, -1), bias, w.new_zeros(b, 1)] if fused else [w.reshape(b, -1), w.new_zeros(b, 1)]
    flat = torch.cat(parts, 1, out=_buffer(ws, key + "flat", (b, sum(t.shape[1] for t in parts)), w))
    idx = _band_index(o, c, k, s, wp, wo, fused)
    band = torch.index_select(flat, 1, idx.view(-1), out=_buffer(ws, key + "band", (b, idx.numel()), w))
    band = band.view(b, *idx.shape)
    return band if fused or bias is None else torch.cat([band, bias.repeat(1, wo).unsqueeze(1)], 1)


def _shared_rows(h: torch.Tensor, k: int, s: int, g: int, wg: int, bias: bool, ws: Workspace,
                 key: str) -> torch.Tensor:
    """A shared padded image batch ``[N, Hp, Wp, C]`` as the rows ``[N*Ho*(Wo/g), k*wg*C (+1)]`` a banded conv
    multiplies: for each output row and group of g output columns, the window of k input rows and wg columns
    it reads, in (row, column, channel) order, with a column of ones when the bias rides along in the matmul.

    Small (one copy for all models) and the same for every chunk of models, so kept in the workspace."""
    cached = None if ws is None else ws.get(key + "shared_rows")
    if cached is not None:
        return cached
    c = h.shape[-1]
    windows = h.unfold(1, k, s).unfold(2, wg, g * s)  # [N, Ho, Wo/g, C, k, wg]
    rows = windows.permute(0, 1, 2, 4, 5, 3).reshape(-1, k * wg * c)
    if bias:
        rows = torch.cat([rows, rows.new_ones(len(rows), 1)], 1)
    if ws is not None:
        ws[key + "shared_rows"] = rows
    return rows


def _linear(h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None, ws: Workspace = None,
            key: str = "", relu: bool = False) -> torch.Tensor:
    """``h [B, N, F] @ w[b].T + bias[b]`` per model -> ``[B, N, O]`` (``h`` may be expanded over models);
    ``relu`` (no autograd): also apply the ReLU that follows, in place.

    ``h`` may also be an image not yet flattened, ``[B, N, H, W, C]`` with each row's ``W*C`` values contiguous
    (a banded conv's row-major output, see :func:`_conv`), ``w`` in (H, W, C) feature order: each image row
    is then one matmul operand in place, and the H products are summed (no copy to flatten the image).

    A narrow output (fewer than 16 features, e.g. the logits) is computed transposed, as
    ``w [O, F] @ h.T [F, N]``, and returned as a transposed view: MKL's batched matmul with only O
    output columns ran 2-3x slower (2-16-16-2 MLP: 1.8 ms vs 0.64 ms for 273 models on 300 inputs)."""
    b, o, f = w.shape
    if h.dim() == 5:
        pieces = list(zip(h.flatten(-2).unbind(2), w.reshape(b, o, h.shape[2], -1).unbind(2), strict=True))
    else:
        pieces = [(h, w)]
    narrow = o < min(16, f)
    y = _buffer(ws, key, (b, o, h.shape[1]) if narrow else (b, h.shape[1], o), h)
    for j, (hj, wj) in enumerate(pieces):
        a, m = (wj, hj.transpose(1, 2)) if narrow else (hj, wj.transpose(1, 2))
        if j:
            y.baddbmm_(a, m)
        elif bias is None or relu:
            y = torch.bmm(a, m, out=y)
        else:
            y = torch.baddbmm(bias.unsqueeze(2 if narrow else 1), a, m, out=y)
    if relu:
        _bias_relu_(y, None if bias is None else bias.unsqueeze(2 if narrow else 1))
    return y.transpose(1, 2) if narrow else y


def _bias_relu_(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``relu(y + bias)`` in place (``bias`` broadcast): one pass over ``y`` where ``baddbmm`` then ``relu_`` make
    three (``baddbmm`` first copies the broadcast bias into its output; digits conv2: 2.77 -> 2.55 ms for 16
    models). ``aten::_add_relu_`` is ATen's fused add+ReLU kernel (the one TorchScript's fuser uses)."""
    return y.relu_() if bias is None else torch.ops.aten._add_relu_(y, bias)


def _pool(layer: dict, h: torch.Tensor) -> torch.Tensor:
    lead = h.shape[:-3]
    x = h.reshape(-1, *h.shape[-3:]).permute(0, 3, 1, 2)  # a channels-last [M, C, H, W] view
    pool = F.max_pool2d if layer["type"] == "maxpool2d" else F.avg_pool2d
    y = pool(x, layer["kernel_size"], layer["stride"])
    return y.permute(0, 2, 3, 1).reshape(*lead, *y.shape[-2:], y.shape[1])


@lru_cache(maxsize=64)
def _flatten_order(c: int, hh: int, ww: int) -> torch.Tensor:
    """Canonical (C, H, W) feature index of each position of an (H, W, C)-flattened image."""
    return torch.arange(c * hh * ww).view(c, hh, ww).permute(1, 2, 0).reshape(-1)


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
    Differentiable with respect to ``weights`` (and ``x``).
    """
    return _forward(arch, weights, x, train=train, dropout=dropout, capture=capture)


def _forward(
    arch: Architecture,
    weights: torch.Tensor,
    x: torch.Tensor,
    *,
    train: bool = False,
    dropout: torch.Tensor | None = None,
    capture: set[int] | frozenset[int] = frozenset(),
    first: torch.Tensor | None = None,
    upto: int | None = None,
    ws: Workspace = None,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """:func:`forward`, plus two internal options for :func:`evaluate_affine`: ``upto=1`` returns layer 0's
    output in the internal layout (``[B, N, F]`` or ``[B, N, H, W, C]``) and stops; ``first`` supplies that
    output (computed elsewhere) so that layer 0 is skipped; ``ws`` reuses layer outputs' buffers across
    calls on the same inputs ``x`` (evaluation without autograd only; it also keeps the shared first conv's
    row windows of ``x``, see :func:`_shared_rows`)."""
    ws = None if torch.is_grad_enabled() else ws
    b = weights.shape[0]
    params = arch.unflatten(weights)
    shared = x.dim() == len(arch.input_shape) + 1
    h, layout = x, _DENSE
    if len(arch.input_shape) == 3:
        h, layout = x.movedim(-3, -1).contiguous(), _IMAGE
    order: torch.Tensor | None = None  # dense features in (H, W, C) order after a flatten
    # In-place ops only on tensors this function allocated, and only when autograd is off.
    fresh, no_grad = False, not torch.is_grad_enabled()
    captured: dict[int, torch.Tensor] = {}
    relu_done = False  # the layer before (linear or conv) applied this ReLU already
    for i, layer in enumerate(arch.layers):
        if i == upto:
            return h, captured
        kind = layer["type"]
        if i == 0 and first is not None:
            h, shared, fresh = first, False, True
            continue
        if kind in ("linear", "conv2d"):
            # Without autograd a ReLU right after is applied by the layer itself (bias add and ReLU in one pass),
            # unless this layer's own output is wanted (captured, or returned by ``upto``).
            fuse = (no_grad and i + 1 < len(arch.layers) and arch.layers[i + 1]["type"] == "relu"
                    and i not in capture and i + 1 != upto)
        if kind == "relu" and relu_done:
            relu_done = False
        elif kind == "linear":
            w = params[f"{i}.weight"]
            bias = params.get(f"{i}.bias")
            if order is not None:
                w = torch.index_select(w, 2, order, out=_buffer(ws, f"{i}w", w.shape, w))
                order = None
            h = _linear(h.expand(b, *h.shape) if shared else h, w, bias, ws, str(i), relu=fuse)
            shared, relu_done = False, fuse
        elif kind == "conv2d":
            h = _conv(layer, params[f"{i}.weight"], params.get(f"{i}.bias"), h, shared, b, ws, str(i), relu=fuse)
            shared, relu_done = False, fuse
        elif kind in ("maxpool2d", "avgpool2d"):
            h = _pool(layer, h)
        elif kind == "global_avg_pool":
            h, layout = h.mean(dim=(-3, -2)), _DENSE
        elif kind == "flatten":  # dense activations are flat already
            if layout == _IMAGE:
                order = _flatten_order(h.shape[-1], h.shape[-3], h.shape[-2])
                layout = _DENSE
                # a banded conv's row-major output (a permuted view) is left unflattened (flattening would copy
                # it) when the next layer that is not elementwise is a linear layer, which reads it row by row
                if h.is_contiguous() or not (no_grad and _linear_next(arch.layers, i)):
                    h = h.flatten(-3)
        elif kind == "batchnorm":
            h = _batchnorm(layer, params, i, h.expand(b, *h.shape) if shared else h, b, layout, train, order)
            shared = False
        elif kind == "layernorm":
            gamma, beta = params[f"{i}.weight"], params[f"{i}.bias"]
            if order is not None:
                gamma, beta = gamma[:, order], beta[:, order]
            h = torch.addcmul(beta.unsqueeze(1), F.layer_norm(h, h.shape[-1:], eps=layer["eps"]), gamma.unsqueeze(1))
            shared = False
        elif kind == "dropout":
            if train:
                h = _dropout(h.expand(b, *h.shape) if shared else h, b, layer["p"] if dropout is None else dropout)
                shared = False
        else:
            h = _activation(layer, h, inplace=fresh and no_grad and not shared)
        # Everything but flatten and an inactive dropout allocates its output.
        fresh = fresh or kind not in ("flatten", "dropout") or train
        if i in capture:
            captured[i] = _canonical(h, b, layout, shared, order)
            fresh = False  # a captured tensor must not be modified in place by the next layer
    return _canonical(h, b, layout, shared, order), captured


def _canonical(h: torch.Tensor, b: int, layout: str, shared: bool, order: torch.Tensor | None) -> torch.Tensor:
    """The activation as ``[B, N, C, H, W]`` (image) or ``[B, N, F]`` with features in PyTorch's order."""
    if shared:
        h = h.expand(b, *h.shape)
    if layout == _IMAGE:
        return h.permute(0, 1, 4, 2, 3)
    if h.dim() == 5:  # an image left unflattened for the next linear layer
        h = h.flatten(-3)
    return h[..., torch.argsort(order)] if order is not None else h


def _linear_next(layers: list[dict], i: int) -> bool:
    """Whether the first layer after ``i`` that is not an activation or a dropout is a linear layer."""
    after = [layer["type"] for layer in layers[i + 1:] if layer["type"] not in (*ACTIVATIONS, "dropout")]
    return bool(after) and after[0] == "linear"


def _batchnorm(layer: dict, params: dict, i: int, h: torch.Tensor, b: int, layout: str, train: bool,
               order: torch.Tensor | None) -> torch.Tensor:
    stats = [params[f"{i}.{role}"] for role in ("weight", "bias", "running_mean", "running_var")]
    if order is not None:
        stats = [s[:, order] for s in stats]
    view = (b, 1, 1, 1, -1) if layout == _IMAGE else (b, 1, -1)
    gamma, beta, mean, var = (s.reshape(view) for s in stats)
    if train:
        dims = tuple(range(1, h.dim() - 1))
        mean, var = h.mean(dims, keepdim=True), h.var(dims, unbiased=False, keepdim=True)
    scale = torch.rsqrt(var + layer["eps"]) * gamma
    return torch.addcmul(beta - mean * scale, h, scale)


def _dropout(h: torch.Tensor, b: int, p: float | torch.Tensor) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=h.dtype).expand(b)
    keep = (1 - p).view(b, *[1] * (h.dim() - 1))
    mask = torch.rand_like(h) < keep
    return torch.where(mask, h / keep.clamp_min(1e-6), torch.zeros_like(h))


CACHE_BUDGET_BYTES = 14 * 2**20
"""Default chunk budget: 23 models of the digits CNN (539 test images, conv1's output 0.6 MB per model), near
the fastest of chunks of 8-32 models measured with parallel streams (8: 0.37-0.41 s, 16: 0.28-0.33 s, 24:
0.26-0.29 s for 1,681 models at 2 threads); smaller chunks pay the ~60 small kernel calls of a chunk more often."""

STREAM_CHUNKS = 4
"""Chunks are at most ``1/STREAM_CHUNKS`` of a stream's share of the models (counting at least 2 streams), so
that parallel streams taking chunks as they finish end together (moons-mlp at 2 threads: 3 chunks cost
38 ms, 8 cost 15 ms), and an MLP's chunks stay near the caches at 1 thread too (moons-mlp: chunks of 764
models 38-40 ms, of 211-273 models 30 ms)."""

MIN_CHUNK_BYTES = 4 * 2**20
"""...but no smaller than this much activation: a chunk has a fixed cost of tens of kernel calls and a
hand-over between threads (about 0.4 ms), so small batches split finely ran slower than in one piece
(moons-mlp, 8 models: 0.3 ms in one chunk, 3.5 ms in 8 of one model; digits-cnn, 8 models: 2.2 ms vs 7.1 ms)."""


def default_chunk_size(arch: Architecture, n_inputs: int, budget_bytes: int = CACHE_BUDGET_BYTES,
                       n_models: int | None = None) -> int:
    """Models per chunk so that one chunk's widest activation stays within ``budget_bytes``; given ``n_models``,
    also at most ``n_models / (STREAM_CHUNKS * max(threads, 2))`` (see :data:`STREAM_CHUNKS`) but at least
    :data:`MIN_CHUNK_BYTES` worth of activations, with the chunks evened out."""
    widest = max([math.prod(arch.input_shape)] + [math.prod(s) for s in arch.shapes])
    per_model = max(4 * n_inputs * widest, 1)
    chunk = max(1, budget_bytes // per_model)
    if n_models:
        spread = -(-n_models // (STREAM_CHUNKS * max(torch.get_num_threads(), 2)))
        chunk = min(chunk, max(spread, -(-MIN_CHUNK_BYTES // per_model)))
        chunk = -(-n_models // -(-n_models // chunk))  # as many chunks, of equal size
    return max(1, chunk)


@torch.no_grad()
def model_outputs(
    arch: Architecture, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
    progress: Progress = None,
) -> torch.Tensor:
    """Outputs ``[B, N, out]`` of B models (``weights`` [B, P] or [P]) on inputs ``x`` [N, ...]."""
    single = weights.dim() == 1
    weights = weights.unsqueeze(0) if single else weights
    chunk = chunk_size or default_chunk_size(arch, len(x), n_models=len(weights))
    outs = _run_chunks(len(weights), chunk, lambda start, stop, ws: forward(arch, weights[start:stop].float(), x)[0],
                       progress)
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
    x, y = _check_inputs(arch, task, split)
    single = weights.dim() == 1
    weights = weights.unsqueeze(0) if single else weights
    result = _evaluate_chunks(arch, task, x, y, len(weights), chunk_size, progress,
                              lambda start, stop, ws: (weights[start:stop].float(), None))
    return {k: v[0] for k, v in result.items()} if single else result


def _run_chunks(n_models: int, chunk: int, work: Callable[[int, int, Workspace], T], progress: Progress) -> list[T]:
    """``work(start, stop, ws)`` for each chunk of ``chunk`` models, results in chunk order; ``ws`` is a workspace
    that the chunks of one stream share. ``progress`` is called from the calling thread only.

    Without autograd and with T > 1 torch threads, the chunks run in T parallel streams: T Python threads,
    each with one intra-op thread, taking the next chunk when done. Why: torch releases the GIL inside its
    kernels, and a chunk's kernels are too small to split well over threads (every kernel ends at a barrier
    where a thread that the OS descheduled holds up the other); independent streams share no barrier and
    each keeps its chunk in its own core's cache. Each chunk is computed exactly as the serial path does.
    """
    bounds = [(start, min(start + chunk, n_models)) for start in range(0, n_models, chunk)]
    threads = torch.get_num_threads()  # also initialises this thread's count before the streams touch the default
    streams = 1 if torch.is_grad_enabled() else min(threads, len(bounds))
    if streams < 2:
        ws: Workspace = {}
        results = []
        for start, stop in bounds:
            results.append(work(start, stop, ws))
            if progress:
                progress(stop, n_models)
        return results
    results: list = [None] * len(bounds)
    todo, lock, done, failed = iter(range(len(bounds))), threading.Lock(), queue.SimpleQueue(), threading.Event()

    def stream() -> None:
        ws: Workspace = {}
        try:
            with torch.no_grad():  # grad mode is per thread
                while not failed.is_set():
                    with lock:
                        j = next(todo, None)
                    if j is None:
                        return
                    results[j] = work(*bounds[j], ws)
                    done.put(j)
        except BaseException as e:  # noqa: BLE001 - handed to the calling thread, which re-raises it
            failed.set()
            done.put(e)

    workers = [_stream_pool(streams, os.getpid()).submit(stream) for _ in range(streams)]
    try:
        finished = 0
        for _ in bounds:
            item = done.get()
            if isinstance(item, BaseException):
                raise item
            finished += bounds[item][1] - bounds[item][0]
            if progress:
                progress(finished, n_models)
    finally:
        failed.set()
        futures.wait(workers)
        torch.set_num_threads(threads)  # torch's default for threads started later, which a new stream changed
    return results


@cache
def _stream_pool(n: int, pid: int) -> futures.ThreadPoolExecutor:
    """``n`` threads for :func:`_run_chunks`' streams, kept for the life of the process ``pid`` (a forked child
    inherits the pool but not its threads, so it gets its own): a new thread's first kernels pay for
    thread-local set-up in OpenMP and MKL (fresh threads per call made moons-mlp's 20 ms evaluation take 34 ms)."""
    return futures.ThreadPoolExecutor(n, thread_name_prefix="wslviz-stream", initializer=_one_intra_op_thread)


def _one_intra_op_thread() -> None:
    """Give the calling thread one intra-op thread (its own OpenMP and MKL counts), for good."""
    torch.set_num_threads(1)  # also sets torch's default for threads started later: _run_chunks restores it
    torch.get_num_threads()  # torch initialises a thread's count on first use, from that default: do it now


def _check_inputs(arch: Architecture, task: Task | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    if task is None:
        raise ValueError("this zoo has no task: attach evaluation data (a .npz with x and y) to evaluate it")
    x, y = task.split(split)
    if tuple(x.shape[1:]) != arch.input_shape:
        raise ValueError(f"task inputs have shape {list(x.shape[1:])}, the architecture expects "
                         f"{list(arch.input_shape)}")
    return x, y


def _evaluate_chunks(arch: Architecture, task: Task, x: torch.Tensor, y: torch.Tensor, n_models: int,
                     chunk_size: int | None, progress: Progress, chunk_inputs: Callable) -> dict[str, torch.Tensor]:
    """The chunk loop shared by :func:`evaluate` and :func:`evaluate_affine`: ``chunk_inputs(start, stop, ws)``
    gives a chunk's ``(weights, first-layer output or None)``; ``ws`` is the workspace reused by all chunks."""
    chunk = chunk_size or default_chunk_size(arch, len(x), n_models=n_models)

    def work(start: int, stop: int, ws: Workspace) -> tuple[torch.Tensor, torch.Tensor]:
        w, first = chunk_inputs(start, stop, ws)
        return task.loss_and_correct(_forward(arch, w, x, first=first, ws=ws)[0], y)

    results = _run_chunks(n_models, chunk, work, progress)
    losses, correct = [r[0] for r in results], [r[1] for r in results]
    loss = torch.cat(losses) if losses else torch.zeros(0)
    acc = torch.cat(correct) / len(y) if correct else torch.zeros(0)
    if task.kind != "classification":
        acc = torch.full_like(loss, float("nan"))
    return {"loss": loss, "accuracy": acc}


@torch.no_grad()
def evaluate_affine(
    arch: Architecture,
    task: Task,
    origin: torch.Tensor,
    directions: torch.Tensor,
    coords: torch.Tensor,
    split: str = "test",
    chunk_size: int | None = None,
    progress: Progress = None,
) -> dict[str, torch.Tensor]:
    """:func:`evaluate` of the G models ``origin + coords @ directions`` (``origin`` [P], ``directions``
    [D, P], ``coords`` [G, D]): a line or plane through weight space -> ``{"loss": [G], "accuracy": [G]}``.

    Exploits that the first layer (linear or conv2d) is linear in its weights and bias: its output for
    every grid point is exactly the same affine combination ``Z_0 + sum_d coords[g, d] Z_d`` of the
    first-layer outputs ``Z`` of ``origin`` and of each direction (computed once, in float64), so the
    first layer costs one ``[G, D+1] x [D+1, N*features]`` matmul instead of G layers. The rest runs as
    in :func:`evaluate`. Results agree with :func:`evaluate` on the same points to float32 rounding.
    """
    x, y = _check_inputs(arch, task, split)
    origin, directions = origin.detach().double(), directions.detach().double()
    coords = torch.as_tensor(coords, dtype=torch.float64)
    if origin.shape != (arch.n_params,) or directions.dim() != 2 or directions.shape[1] != arch.n_params:
        raise ValueError(f"origin must be [{arch.n_params}] and directions [D, {arch.n_params}], got "
                         f"{list(origin.shape)} and {list(directions.shape)}")
    if coords.dim() != 2 or coords.shape[1] != directions.shape[0]:
        raise ValueError(f"coords must be [G, {directions.shape[0]}], got {list(coords.shape)}")

    def points(start: int, stop: int) -> torch.Tensor:
        return (origin + coords[start:stop] @ directions).float()

    if arch.layers[0]["type"] not in ("linear", "conv2d"):
        return _evaluate_chunks(arch, task, x, y, len(coords), chunk_size, progress,
                                lambda start, stop, ws: (points(start, stop), None))
    basis = torch.cat([origin.unsqueeze(0), directions])
    z = _forward(arch, basis, x.double(), upto=1)[0]  # [D+1, N, ...] first-layer outputs
    z_flat = z.reshape(len(basis), -1).float()
    mix = torch.cat([torch.ones(len(coords), 1, dtype=torch.float64), coords], 1).float()  # [G, D+1]
    def first_layer(start: int, stop: int, ws: Workspace) -> torch.Tensor:
        out = _buffer(ws, "0", (stop - start, z_flat.shape[1]), z_flat)
        return torch.mm(mix[start:stop], z_flat, out=out).view(stop - start, *z.shape[1:])

    return _evaluate_chunks(arch, task, x, y, len(coords), chunk_size, progress,
                            lambda start, stop, ws: (points(start, stop), first_layer(start, stop, ws)))


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


@torch.no_grad()
def decision_grid(arch: Architecture, weights: torch.Tensor, x: torch.Tensor, resolution: int = 80,
                  margin: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted class of each model on a ``resolution x resolution`` grid over the 2D inputs ``x [N, 2]``
    (padded by ``margin`` of the range), in one batched pass. Returns ``(xs [R], ys [R], classes [B, R, R])``
    with ``classes[b, i, j]`` the prediction at ``(xs[j], ys[i])``."""
    if tuple(arch.input_shape) != (2,):
        raise ValueError(f"decision boundaries need 2D inputs; this architecture takes {list(arch.input_shape)}")
    lo, hi = x.min(0).values, x.max(0).values
    pad = margin * (hi - lo)
    xs = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), resolution)
    ys = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), resolution)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    out = model_outputs(arch, weights.reshape(-1, arch.n_params), grid)
    classes = out.argmax(-1).reshape(-1, resolution, resolution)
    return xs.numpy(), ys.numpy(), classes.numpy()
