"""The batched forward pass: B models with one architecture on the same inputs, one formulation per layer type.

:func:`forward` runs every layer for all models of a batch at once with an explicit batched formulation
(not ``vmap(functional_call)``, which materialises memory-bound intermediates and ran slower than a Python
loop for a small MLP); it stays differentiable (``make-zoo`` trains hundreds of models at once through it).
:mod:`wslviz.core.seq_eval` cuts large batches into chunks and calls it once per chunk.

Activation layouts:

- dense section: ``[B, N, F]``, or ``[N, F]`` while the input is still shared by all models;
- image section: ``[B, N, H, W, C]`` (channels last per model), or ``[N, H, W, C]`` while shared.
  Flattening keeps the (H, W, C) order and permutes the next layer's parameters instead of the data.
  Without autograd a banded conv's output is a permuted view of row-major ``[H, B, N, W, C]`` memory.

Which formulation when:

- **linear**: one ``baddbmm`` per batch (on the shared input expanded over models, never copied); a narrow
  output (fewer than 16 features, e.g. the logits) is computed transposed; reading a banded conv's row-major
  output unflattened, one product per image row, summed.
- **conv2d, banded**, when the padded image width is at most :data:`BANDED_MAX_WIDTH_RATIO` kernel widths:
  each model's convolution is one dense matmul per output row, the ``k`` input rows it reads
  (``k * W_in * C`` contiguous values) times a banded ``[k * W_in * C, W_out * O]`` matrix gathered from the
  kernel. It does ``W_in / k`` times the direct FLOPs, but as large matmuls near the machine's peak, where a
  per-model convolution of tiny images is dominated by call overhead. The first (shared-input) layer copies
  the row windows once for all models, with the bias as a column of ones and, without autograd, the output
  columns in groups (:func:`_column_group`) so that the band holds fewer zeros; later layers read the windows
  in place without autograd and copy them with ``unfold`` under autograd.
- **conv2d, grouped** (wider images, where the band would waste too many FLOPs): one grouped convolution
  with the models stacked along channels (``[N, B*C, H, W]``, ``groups=B``, channels-last).
- pooling, BatchNorm, LayerNorm, dropout, activations: one kernel call on the whole batch, in place when
  autograd is off; a ReLU right after a linear or conv layer is fused into that layer (no autograd).

Without autograd, layer outputs can live in a :data:`Workspace` reused from one chunk to the next. The
measurements behind these choices are in ``benchmarks/README.md`` ("How the evaluator got fast").
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from wslviz.core.kind import ArchitectureBase
from wslviz.core.layout import ACTIVATIONS

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
"""Buffers reused from one chunk of models to the next (see :func:`workspace_buffer`); ``None``: allocate afresh."""


def workspace_buffer(ws: Workspace, key: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
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
        y = workspace_buffer(ws, key, (b, rows.shape[0], g * o), rows)
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
    out = workspace_buffer(ws, key, (ho, b, n, wo * o), h)
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
    flat = torch.cat(parts, 1, out=workspace_buffer(ws, key + "flat", (b, sum(t.shape[1] for t in parts)), w))
    idx = _band_index(o, c, k, s, wp, wo, fused)
    band = torch.index_select(flat, 1, idx.view(-1), out=workspace_buffer(ws, key + "band", (b, idx.numel()), w))
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
    y = workspace_buffer(ws, key, (b, o, h.shape[1]) if narrow else (b, h.shape[1], o), h)
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
    arch: ArchitectureBase,
    weights: torch.Tensor,
    x: torch.Tensor,
    *,
    train: bool = False,
    dropout: torch.Tensor | None = None,
    capture: set[int] | frozenset[int] = frozenset(),
    first: torch.Tensor | None = None,
    upto: int | None = None,
    workspace: Workspace = None,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Outputs of B models on the same inputs, in one pass.

    ``weights`` [B, P]; ``x`` [N, *input_shape] (shared) or [B, N, *input_shape] (one batch per model).
    ``train`` turns on dropout (rate per model from ``dropout`` [B], else the spec's) and BatchNorm batch
    statistics (running statistics are not updated). ``capture`` names layer indices whose outputs are
    returned as ``{index: [B, N, C, (H, W)]}``. Returns ``(outputs [B, N, out], captured)``.
    Differentiable with respect to ``weights`` (and ``x``).

    Options for the evaluator (:mod:`wslviz.core.seq_eval`): ``upto=1`` returns layer 0's output in the
    internal layout (``[B, N, F]`` or ``[B, N, H, W, C]``) and stops; ``first`` supplies that output
    (computed elsewhere, e.g. as an affine combination) so that layer 0 is skipped; ``workspace`` reuses
    layer outputs' buffers across calls on the same inputs ``x`` (without autograd only, ignored under it;
    it also keeps the shared first conv's row windows of ``x``, see :func:`_shared_rows`).

    This is the sequential kind's forward (:meth:`wslviz.core.arch.Architecture.forward` calls it).
    """
    ws = None if torch.is_grad_enabled() else workspace
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
                w = torch.index_select(w, 2, order, out=workspace_buffer(ws, f"{i}w", w.shape, w))
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
