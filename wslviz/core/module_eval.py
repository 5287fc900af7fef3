"""The module kind's forward: ``torch.func.functional_call`` under ``torch.vmap``.

Used by :class:`~wslviz.core.module_arch.ModuleArchitecture` (and by the sequential kind on a device other than
the CPU, through the ``nn.Sequential`` it builds): any architecture holding an ``nn.Module`` as ``.module``. B
models run as one vectorised call: the flat
weights ``[B, P]`` are cut into batched state-dict tensors (views), and ``vmap`` maps
``functional_call(module, tensors, x)`` over the model axis, the inputs shared (``[N, ...]``) or per model
(``[B, N, ...]``, for training). BatchNorm runs in eval mode (running statistics) unless ``train=True``,
where each model normalises with its own batch statistics and its running statistics are updated in place
in the tensors passed (as ``nn.BatchNorm2d`` does in train mode). Gradients flow through (``make-zoo``
trains module zoos through :func:`batched_call`).

Models go in chunks so that a chunk's activations stay within :data:`CHUNK_BYTES` (estimated from the traced
shapes of one example); a module ``vmap`` cannot run (data-dependent control flow, ``.item()``, in-place
writes into an input) falls back to a per-model ``functional_call`` loop, with the same results.

Chunk size, measured on this project's shared 2-core machines: the vmapped call has a fixed cost per layer, so larger
chunks are faster until the activations leave the caches. ``benchmarks/bench_module_eval.py --repeats 3`` (B = 256
models on the test split, 2 threads, every variant once per round, medians of 3; load average 14-23, so only
differences of 2x and more are real) swept the budget; seconds:

================  =============  ==============  ===============  ===============  =====================
zoo               64 MiB         256 MiB         1 GiB            4 GiB            unchunked ``vmap``
================  =============  ==============  ===============  ===============  =====================
digits-resnet     115 (6/chunk)  40 (26/chunk)   22-41 (86)       42 (256)         34
tiny-transformer  18 (37)        11 (128)        4.9-8.8 (256)    6.0 (256)        5.4
================  =============  ==============  ===============  ===============  =====================

(1 GiB ran twice a round: as the default and in the sweep.) Rerun on the quiet machine (load average 0.8-1.6;
digits-resnet retrained at 12/12/24 channels, 14,326 parameters), seconds:

================  =============  ==============  ===============  ===============  =====================  ========
zoo               64 MiB         256 MiB         1 GiB            4 GiB            unchunked ``vmap``     loop
================  =============  ==============  ===============  ===============  =====================  ========
digits-resnet     1.8-2.4 (2)    1.9-2.9 (11)    4.3-5.6 (43)     6.3-7.9 (128)    8.0-9.5                1.0-1.2
tiny-transformer  0.08-0.14 (37) 0.07-0.10 (128) 0.10-0.19 (256)  0.09-0.19 (256)  0.11-0.16              0.19-0.23
================  =============  ==============  ===============  ===============  =====================  ========

Unloaded, large chunks lose (the activations of a chunk leave the caches), and on digits-resnet the per-model loop
wins, presumably because ``vmap`` turns each conv into a grouped conv over the chunk (not profiled). Loaded, the
loop lost by 14.7x (its kernels wait at every barrier for a descheduled thread). :data:`CHUNK_BYTES` is 256 MiB:
within the noise of the fastest budget in both states of the machine. Since no formulation wins everywhere,
:func:`call` times both on the first call of each shape and keeps the faster.

``device`` (every public function takes one; None is the CPU): the computation runs there (weights and inputs are
moved chunk by chunk; results come back to the CPU). :func:`resolve_device` checks it once, so that asking for CUDA
where there is none fails with one clear message.
"""

from __future__ import annotations

import copy
import math
import time
from functools import lru_cache
from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.func import functional_call, vmap

from wslviz.core.device import Device, resolve_device
from wslviz.core.kind import ArchitectureBase, chunks, even_chunk

TUNE_MODELS = 4
"""Models the loop runs on when :func:`call` compares it with the batched call (its cost grows with the models)."""
CHUNK_BYTES = 2**28
"""Activation bytes one chunk of models may hold (all traced intermediate tensors of the forward); 256 MiB, measured
in the module docstring."""


# ---------------------------------------------------------------------------------------------- modules
def _module(arch: ArchitectureBase, device: torch.device, train: bool) -> nn.Module:
    """The architecture's module on ``device`` in eval (or train) mode; one copy per (device, mode), kept on the
    architecture and never switched between modes (concurrent callers would see each other's mode)."""
    cache = arch.__dict__.setdefault("_module_copies", {})
    key = (str(device), train)
    if key not in cache:
        cache[key] = copy.deepcopy(arch.module).to(device).train(train)
    return cache[key]


@lru_cache(maxsize=32)
def _capture_module(arch: ArchitectureBase, nodes: tuple[str, ...]) -> fx.GraphModule:
    """A traced copy of the module that also returns the outputs of the named graph nodes."""
    from wslviz.core.fx_spec import trace

    gm = trace(arch)
    graph = gm.graph
    by_name = {n.name: n for n in graph.nodes}
    missing = [n for n in nodes if n not in by_name]
    if missing:
        raise ValueError(f"no traced nodes named {missing} in {arch.describe()}")
    out = next(n for n in graph.nodes if n.op == "output")
    result = out.args[0]
    with graph.inserting_before(out):
        graph.output((result, *(by_name[n] for n in nodes)))
    graph.erase_node(out)
    gm.recompile()
    return gm.eval()


def per_sample_bytes(arch: ArchitectureBase) -> int:
    """Float32 bytes of all intermediate tensors of one input through the traced module (no batch axis)."""
    cached = arch.__dict__.get("_per_sample_bytes")
    if cached is not None:
        return cached
    try:
        from wslviz.core.fx_spec import trace

        gm = trace(arch)
        total = 0
        for node in gm.graph.nodes:
            meta = node.meta.get("tensor_meta")
            if hasattr(meta, "shape") and len(meta.shape) and meta.shape[0] == 3:
                total += 4 * math.prod(meta.shape[1:])
    except Exception:  # noqa: BLE001 - an untraceable module: estimate from the input size
        total = 64 * 4 * math.prod(arch.input_shape)
    arch.__dict__["_per_sample_bytes"] = max(total, 4)
    return arch.__dict__["_per_sample_bytes"]


def default_chunk_size(arch: ArchitectureBase, n_inputs: int, n_models: int,
                       budget_bytes: int = CHUNK_BYTES) -> int:
    """Models per chunk: as many as keep one chunk's activations within ``budget_bytes``, evened out."""
    return even_chunk(n_models, budget_bytes // max(1, per_sample_bytes(arch) * n_inputs))


# ---------------------------------------------------------------------------------------------- calls
def _tensors(arch: ArchitectureBase, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    return arch.unflatten(weights)


def batched_call(arch: ArchitectureBase, tensors: dict[str, torch.Tensor], x: torch.Tensor,
                 train: bool = False, per_model_inputs: bool = False, device: Device = None,
                 capture: tuple[str, ...] = ()) -> Any:
    """``vmap(functional_call)`` of the module over the leading model axis of ``tensors`` (``{name: [B, ...]}``)
    on ``x`` (``[N, ...]`` shared, or ``[B, N, ...]`` with ``per_model_inputs``). With ``capture`` (graph node
    names), returns ``(outputs, *captured)``. Differentiable; in train mode BatchNorm running statistics in
    ``tensors`` are updated in place and dropout masks differ per model."""
    device = resolve_device(device)
    module = _capture_module(arch, capture) if capture else _module(arch, device, train)
    if capture:
        module = module.to(device)

    def one(t: dict[str, torch.Tensor], xi: torch.Tensor) -> Any:
        return functional_call(module, t, (xi,), tie_weights=True, strict=False)

    in_dims = (0, 0 if per_model_inputs else None)
    return vmap(one, in_dims=in_dims, randomness="different")(tensors, x)


def looped_call(arch: ArchitectureBase, tensors: dict[str, torch.Tensor], x: torch.Tensor, train: bool = False,
                per_model_inputs: bool = False, device: Device = None,
                capture: tuple[str, ...] = ()) -> Any:
    """:func:`batched_call` as a Python loop over models (the fallback for modules ``vmap`` cannot run)."""
    device = resolve_device(device)
    module = _capture_module(arch, capture).to(device) if capture else _module(arch, device, train)
    b = next(iter(tensors.values())).shape[0]
    outs = [functional_call(module, {k: v[i] for k, v in tensors.items()}, (x[i] if per_model_inputs else x,),
                            tie_weights=True, strict=False) for i in range(b)]
    if capture:
        return tuple(torch.stack([o[j] for o in outs]) for j in range(1 + len(capture)))
    return torch.stack(outs)


def _batched(arch: ArchitectureBase, tensors: dict[str, torch.Tensor], x: torch.Tensor, **options: Any) -> Any:
    """:func:`batched_call`, or :func:`looped_call` for a module ``vmap`` cannot run (remembered per architecture)."""
    if getattr(arch, "_vmap_fails", False):
        return looped_call(arch, tensors, x, **options)
    try:
        return batched_call(arch, tensors, x, **options)
    except (RuntimeError, ValueError, NotImplementedError) as e:
        if not any(word in str(e).lower() for word in ("vmap", "batched", "batching", "functorch")):
            raise
        arch._vmap_fails = True
        return looped_call(arch, tensors, x, **options)


def call(arch: ArchitectureBase, tensors: dict[str, torch.Tensor], x: torch.Tensor, **options: Any) -> Any:
    """:func:`batched_call` or :func:`looped_call`, whichever is faster here. Neither always is: on a quiet 2-core
    machine the loop ran digits-resnet 1.8x faster than ``vmap`` (which turns each conv into a grouped one) and
    tiny-transformer 2.6x slower; on a loaded one the loop lost by 15x. So the first eval-mode call of each shape
    (inputs, options, chunk size to a power of two) runs the batched call and the loop on up to
    :data:`TUNE_MODELS` of its models, and keeps the formulation that costs less per model; later calls of that shape
    use it. Train mode (which updates running statistics in place) always runs the batched call; a module ``vmap``
    cannot run always loops."""
    if options.get("train") or getattr(arch, "_vmap_fails", False):
        return _batched(arch, tensors, x, **options)
    b = next(iter(tensors.values())).shape[0]
    key = (tuple(x.shape), b.bit_length(), bool(options.get("per_model_inputs")), tuple(options.get("capture", ())),
           str(options.get("device")))
    chosen = arch.__dict__.setdefault("_formulations", {})
    if key not in chosen:
        capture = tuple(options.get("capture", ()))  # the module copies both use, made before either is timed
        if capture:
            _capture_module(arch, capture)
        else:
            _module(arch, resolve_device(options.get("device")), False)
        start = time.perf_counter()
        out = _batched(arch, tensors, x, **options)
        batched = (time.perf_counter() - start) / b
        k = min(b, TUNE_MODELS)
        start = time.perf_counter()
        looped_call(arch, {name: t[:k] for name, t in tensors.items()},
                    x[:k] if options.get("per_model_inputs") else x, **options)
        chosen[key] = "loop" if (time.perf_counter() - start) / k < batched else "batched"
        if chosen[key] == "batched":
            return out
    # every call of a shape answers by one formulation, so repeated calls agree exactly
    return (looped_call if chosen[key] == "loop" else _batched)(arch, tensors, x, **options)


# ---------------------------------------------------------------------------------------------- public
def forward(arch: ArchitectureBase, weights: torch.Tensor, x: torch.Tensor, capture: set | None = None,
            train: bool = False, device: Device = None) -> tuple[torch.Tensor, dict]:
    """Outputs ``[B, N, out]`` of ``weights`` [B, P] on ``x`` ([N, ...] shared or [B, N, ...] per model), and the
    captured activations: for each ``(node, axis)`` in ``capture`` (a group's ``capture``), ``[B, N, C, ...]``
    with the units on axis 2. Differentiable; in train mode the module's own dropout layers apply their rates."""
    per_model = x.dim() == len(arch.input_shape) + 2
    keys = sorted(capture or ())
    nodes = tuple(dict.fromkeys(k[0] for k in keys))
    dev = resolve_device(device)
    stats = {p.name for p in arch.layout if p.role in ("running_mean", "running_var")}
    # running statistics are not learned (BatchNorm refuses gradients through them); in train mode it updates them
    # in place, so they get their own copies
    tensors = {k: (v.detach().clone() if train else v.detach()) if k in stats else v
               for k, v in _tensors(arch, weights.to(dev)).items()}
    result = call(arch, tensors, x.to(dev), train=train, per_model_inputs=per_model, device=dev, capture=nodes)
    out, captured = (result[0], result[1:]) if nodes else (result, ())
    b, n = out.shape[:2]
    out = out.reshape(b, n, -1)
    found = {}
    for key in keys:
        node, axis = key
        t = captured[nodes.index(node)]  # [B, N, ...] with the units on axis 1 + axis
        found[key] = t.movedim(1 + axis, 2) if t.dim() > 2 else t
    return out, found


@torch.no_grad()
def batchnorm_statistics(arch: ArchitectureBase, weights: torch.Tensor, x: torch.Tensor,
                         chunk_size: int | None = None, device: Device = None) -> torch.Tensor:
    """``weights`` [B, P] with every BatchNorm's running mean and (unbiased) variance replaced by the statistics
    of its input over ``x`` [N, ...]: one pass of all of ``x`` in train mode with momentum 1, so a running
    statistic becomes exactly the batch statistic of that layer's input (the inference statistics of Ioffe &
    Szegedy 2015, Sec. 3.1, over ``x``). Batched over models; networks without BatchNorm come back unchanged."""
    out = weights.detach().float().clone()
    if not arch.has_batchnorm or len(out) == 0:
        return out
    dev = resolve_device(device)
    cache = arch.__dict__.setdefault("_module_copies", {})
    key = (str(dev), "statistics")
    if key not in cache:
        module = copy.deepcopy(arch.module).to(dev).train()
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = 1.0
        cache[key] = module
    module = cache[key]
    stats = [p for p in arch.layout if p.role in ("running_mean", "running_var")]
    chunk = chunk_size or default_chunk_size(arch, len(x), len(out))
    xd = x.to(dev)

    def one(t: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(module, t, (xd,), tie_weights=True, strict=False)

    for start, stop in chunks(len(out), chunk):
        tensors = {k: v.to(dev).clone() for k, v in arch.unflatten(out[start:stop]).items()}
        vmap(one, randomness="different")(tensors)  # BatchNorm writes the batch statistics into the tensors
        for p in stats:
            out[start:stop, p.slice] = tensors[p.name].reshape(stop - start, -1).float().cpu()
    return out
