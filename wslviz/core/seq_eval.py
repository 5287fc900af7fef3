"""The sequential kind's fast evaluator: loss, accuracy or outputs of many flat weight vectors of one sequential
spec at once, on the CPU (:class:`~wslviz.core.arch.Architecture` calls it; the public entry points are in
:mod:`wslviz.core.evaluation`).

:func:`evaluate` (``weights [B, P] -> {"loss": [B], "accuracy": [B]}``), :func:`model_outputs` and
:func:`evaluate_affine` (the models of a line or plane through weight space) cut the B models into chunks
and run each chunk through :func:`wslviz.core.batched.forward` (the per-layer formulations live there).

Which path when:

- **Chunks**: :func:`default_chunk_size` keeps a chunk's widest activation near the CPU caches
  (:data:`CACHE_BUDGET_BYTES`), makes at least :data:`STREAM_CHUNKS` chunks per stream so that streams end
  together, and never goes below :data:`MIN_CHUNK_BYTES` (small batches stay in one piece).
- **Streams**: without autograd and with T > 1 torch threads, the chunks run in T parallel streams of one
  intra-op thread each (:func:`_run_chunks`); otherwise serially. Layer outputs' buffers are reused from one
  chunk to the next within a stream (a :data:`wslviz.core.batched.Workspace`).
- **Lines and planes**: :func:`evaluate_affine` computes the first layer of every grid point as one
  ``[G, D+1] x [D+1, N*F]`` matmul from the first-layer outputs of the origin and the directions (exactly
  affine in the coordinates), then runs the rest as :func:`evaluate` does.
- :func:`evaluate_per_model` is the reference (one ``nn.Module`` per model) for tests and benchmarks.

Numbers: every chunk without autograd runs on single-threaded kernels (in a stream or, for one chunk, in the
calling thread, see :func:`_single_threaded`), so the results do not depend on the torch thread count: the same
weights cut into the same chunks give bit-identical results at any thread count. With other chunk sizes, at another
position in a chunk or in other memory, a model's results agree to float32 rounding only: matrix kernels take
other code paths for other operand sizes and alignments (MKL's narrow products, for one, round differently with
the weights' alignment in memory). Compare such results with a tolerance derived from float32 rounding.

The measurements behind these choices are in ``benchmarks/README.md`` ("How the evaluator got fast").
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from functools import cache
from typing import TypeVar

import torch

from wslviz.core.batched import Workspace, forward, workspace_buffer
from wslviz.core.kind import ArchitectureBase, Progress, task_split
from wslviz.core.tasks import Task

T = TypeVar("T")

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


def default_chunk_size(arch: ArchitectureBase, n_inputs: int, budget_bytes: int = CACHE_BUDGET_BYTES,
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
    arch: ArchitectureBase, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
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
    arch: ArchitectureBase,
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
    x, y = task_split(arch, task, split)
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
    each keeps its chunk in its own core's cache. A single chunk (or one stream) runs in the calling thread,
    also with one intra-op thread: every chunk is then computed by single-threaded kernels whatever the
    thread count, so the results do not depend on it (a kernel split over threads may sum in another order).
    Under autograd (training) the chunks run serially with the caller's threads.
    """
    bounds = [(start, min(start + chunk, n_models)) for start in range(0, n_models, chunk)]
    threads = torch.get_num_threads()  # also initialises this thread's count before the streams touch the default
    streams = 1 if torch.is_grad_enabled() else min(threads, len(bounds))
    if streams < 2:
        ws: Workspace = {}
        results = []
        with _single_threaded(not torch.is_grad_enabled()):
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


@contextmanager
def _single_threaded(enabled: bool = True) -> Iterator[None]:
    """Run the block with one intra-op torch thread in the calling thread (``enabled``), then restore the count.

    The evaluator computes every chunk without autograd this way, in parallel streams or not, so that its
    numbers do not depend on ``torch.get_num_threads()``: a matmul or reduction split over threads may add in
    another order. ``torch.set_num_threads`` also sets the default of threads started meanwhile; it is
    restored on exit."""
    threads = torch.get_num_threads()
    if not enabled or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


def _evaluate_chunks(arch: ArchitectureBase, task: Task, x: torch.Tensor, y: torch.Tensor, n_models: int,
                     chunk_size: int | None, progress: Progress, chunk_inputs: Callable) -> dict[str, torch.Tensor]:
    """The chunk loop shared by :func:`evaluate` and :func:`evaluate_affine`: ``chunk_inputs(start, stop, ws)``
    gives a chunk's ``(weights, first-layer output or None)``; ``ws`` is the workspace reused by all chunks."""
    chunk = chunk_size or default_chunk_size(arch, len(x), n_models=n_models)

    def work(start: int, stop: int, ws: Workspace) -> tuple[torch.Tensor, torch.Tensor]:
        w, first = chunk_inputs(start, stop, ws)
        return task.loss_and_correct(forward(arch, w, x, first=first, workspace=ws)[0], y)

    results = _run_chunks(n_models, chunk, work, progress)
    losses, correct = [r[0] for r in results], [r[1] for r in results]
    loss = torch.cat(losses) if losses else torch.zeros(0)
    acc = torch.cat(correct) / len(y) if correct else torch.zeros(0)
    if not task.is_classification:
        acc = torch.full_like(loss, float("nan"))
    return {"loss": loss, "accuracy": acc}


@torch.no_grad()
def evaluate_affine(
    arch: ArchitectureBase,
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
    x, y = task_split(arch, task, split)
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
    with _single_threaded():  # like every chunk, so that the numbers do not depend on the thread count
        z = forward(arch, basis, x.double(), upto=1)[0]  # [D+1, N, ...] first-layer outputs
    z_flat = z.reshape(len(basis), -1).float()
    mix = torch.cat([torch.ones(len(coords), 1, dtype=torch.float64), coords], 1).float()  # [G, D+1]
    def first_layer(start: int, stop: int, ws: Workspace) -> torch.Tensor:
        out = workspace_buffer(ws, "0", (stop - start, z_flat.shape[1]), z_flat)
        return torch.mm(mix[start:stop], z_flat, out=out).view(stop - start, *z.shape[1:])

    return _evaluate_chunks(arch, task, x, y, len(coords), chunk_size, progress,
                            lambda start, stop, ws: (points(start, stop), first_layer(start, stop, ws)))
