"""Precompute per-checkpoint results of a large zoo on a Dask cluster, into a cache the app reads instantly.

:func:`precompute_zoo` (and ``wslviz precompute ZOO``) computes, for every checkpoint row, the feature
kinds of :mod:`wslviz.represent.features` that are per row (``stats``, ``spectral``, ``functional``), the weights
aligned to one reference (``aligned``), and loss/accuracy per split (``evaluate``). The rows are cut into
chunks; each chunk is one ``dask.distributed`` task that opens the zoo itself (memory-mapped: the weight
matrix never travels through the scheduler), computes its rows and writes one file per result
(temporary name, then an atomic rename). A final merge concatenates the chunks. Cache layout::

    CACHE/manifest.json          zoo fingerprint, parameters, chunk list, complete flag
    CACHE/chunks/<kind>-<start>-<stop>.parquet|.safetensors   (while the run is in progress)
    CACHE/<kind>.parquet         one table per feature kind: column "row" then the feature columns
    CACHE/evaluation.parquet     "row", "<split>_loss", "<split>_acc" per split
    CACHE/aligned.safetensors    float32 "weights" [n_checkpoints, n_params]

Resuming: a rerun with the same zoo and parameters skips every chunk whose files are complete (a
truncated or unreadable file is recomputed); a cache made for another zoo (fingerprint) or other
parameters is refused, naming the difference. Nothing is ever overwritten silently.

Agreement: every computation is per row, by the same functions as in process
(:func:`wslviz.represent.features.compute_features`, :func:`wslviz.core.evaluation.evaluate`,
:func:`wslviz.understand.align.align_zoo`), so the cached values equal the in-process ones to float32 rounding,
not bit for bit: a chunk is another batch than an in-process call's, in another process with one thread per
worker, and matrix kernels and reductions round differently with batch size, memory alignment and thread count
(the tests compare with tolerances derived from float32 rounding, with chunks that do not line up with the
library's internal batches). A resumed or repeated run with the same chunks on the same kind of workers
reproduces a cache bit for bit. The only zoo-level quantity is the alignment reference, which
by default is the final checkpoint with the best test accuracy: it is resolved once, before the tasks
start, and recorded in the manifest. ``flat`` (the weights themselves) and ``learned`` (a
hyper-representation fitted to the whole zoo) are not per-checkpoint computations and are not cached.

Devices: ``device`` (``wslviz precompute --device cuda``) is where the evaluations run (the module evaluator,
:mod:`wslviz.core.module_eval`, for sequential and module architectures alike); the default is the CPU. It is
not a cache parameter: results on another device agree to float32 rounding, so a run may resume on another
device. Feature kinds and alignment run on the CPU.

Pick-up: :mod:`wslviz.scale.cache` finds the cache and reads it back.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.device import Device, resolve_device
from wslviz.core.evaluation import evaluate
from wslviz.core.protocol import has_forward, knows_symmetries
from wslviz.core.zoo import Zoo
from wslviz.represent.features import FeatureError, default_reference, feature_set
from wslviz.scale.cache import (
    CACHE_VERSION,
    DEFAULTS,
    KINDS,
    MANIFEST,
    SPLITS,
    CacheError,
    chunk_file,
    load_zoo,
    merged_file,
    read_manifest,
    read_weights,
    result_names,
    user_cache_path,
    valid_file,
)
from wslviz.understand.align import align_zoo

Progress = Callable[[int, int], None] | None

CHUNK_BYTES = 64 * 2**20
"""Default bound on a chunk's slice of the weight matrix (float32 bytes)."""
CHUNKS_PER_WORKER = 4
"""Default chunking aims at this many chunks per worker at least, so that workers stay balanced."""


@dataclass
class PrecomputeReport:
    """What a :func:`precompute_zoo` run did."""

    cache: Path
    n_chunks: int
    computed: int
    skipped: int
    complete: bool
    seconds: float
    merge_seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- files
def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def _write_json(path: Path, obj: Any) -> None:
    tmp = _atomic_path(path)
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _write_table(path: Path, df: pd.DataFrame) -> None:
    tmp = _atomic_path(path)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_weights(path: Path, parts: Sequence[torch.Tensor] | Callable[[], Any], shape: tuple[int, int]) -> None:
    """Write float32 ``weights`` [shape] as safetensors from row blocks, streaming (bounded memory).

    The layout is an 8-byte little-endian header length, a JSON header, then the raw data."""
    header = {"weights": {"dtype": "F32", "shape": list(shape), "data_offsets": [0, 4 * shape[0] * shape[1]]}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format allows space padding; keep the data 8-byte aligned
    tmp = _atomic_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(raw)) + raw)
            for part in parts() if callable(parts) else parts:
                f.write(part.detach().to(torch.float32).contiguous().numpy().tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- parameters
def cache_parameters(zoo: Zoo, features: Sequence[str] = ("stats", "spectral"), align_to: int | None = None,
                     evaluate: bool = False, method: str = DEFAULTS["method"], n_probe: int = DEFAULTS["n_probe"],
                     min_singular_values: int = DEFAULTS["min_singular_values"]) -> dict[str, Any]:
    """The parameters a cache is made for (recorded in its manifest), checked against ``zoo``.

    The alignment reference is resolved here, once for the whole zoo (default: the final checkpoint with
    the best test accuracy, as in :func:`wslviz.represent.features.default_reference`). On a zoo without a
    forward (weights-only) functional features and evaluations are dropped, and ``aligned`` where no permutation
    spec can be derived, with one warning that says so."""
    features = list(dict.fromkeys(features))
    bad = [k for k in features if k not in KINDS]
    if bad:
        why = {"flat": "flat features are the weights themselves", "learned": "learned features come from a model "
               "fitted to the whole zoo, not a per-checkpoint computation"}
        reasons = "; ".join(why.get(k, f"unknown kind {k!r}") for k in bad)
        raise FeatureError(f"cannot precompute {', '.join(bad)} ({reasons}); precomputable kinds: {', '.join(KINDS)}")
    skip = {"functional": not has_forward(zoo.arch), "aligned": not knows_symmetries(zoo.arch)}
    skipped = [k for k in features if skip.get(k)]
    if skipped or (evaluate and skip["functional"]):  # a weights-only zoo: compute what needs no forward
        what = ", ".join(skipped + (["evaluations"] if evaluate and skip["functional"] else []))
        warnings.warn(f"skipping {what}: this zoo is {zoo.arch.describe()}, with no forward or permutation spec to "
                      "run or align it", stacklevel=2)
        features, evaluate = [k for k in features if k not in skipped], evaluate and not skip["functional"]
    if not features and not evaluate:
        raise FeatureError("nothing to precompute: give at least one feature kind or evaluate=True")
    if zoo.task is None and ("functional" in features or evaluate):
        raise FeatureError("functional features and evaluations need evaluation data, and this zoo has no task")
    reference = None
    if "aligned" in features:
        reference = default_reference(zoo) if align_to is None else int(align_to)
        if not 0 <= reference < zoo.n_checkpoints:
            raise FeatureError(f"alignment reference row {reference} is outside the zoo's "
                               f"{zoo.n_checkpoints} checkpoints")
    return {"features": features, "evaluate": bool(evaluate), "splits": list(SPLITS) if evaluate else [],
            "reference": reference, "method": method, "align_seed": DEFAULTS["align_seed"],
            "n_probe": int(n_probe), "probe_seed": DEFAULTS["probe_seed"],
            "min_singular_values": int(min_singular_values)}


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: cache has {old.get(k)!r}, asked {new.get(k)!r}" for k in keys)


def _chunk_bounds(n_rows: int, chunk_size: int) -> list[list[int]]:
    return [[start, min(start + chunk_size, n_rows)] for start in range(0, n_rows, chunk_size)]


def default_chunk_size(n_rows: int, n_params: int, n_workers: int) -> int:
    """Rows per chunk: at most :data:`CHUNK_BYTES` of weights, and about :data:`CHUNKS_PER_WORKER` chunks per
    worker when the zoo is small."""
    by_memory = max(1, CHUNK_BYTES // (4 * max(n_params, 1)))
    by_balance = max(1, math.ceil(n_rows / (CHUNKS_PER_WORKER * max(n_workers, 1))))
    return min(by_memory, by_balance)


# ---------------------------------------------------------------------------------------------- worker side
_OPEN: dict[tuple[str, str], Zoo] = {}


def _open_zoo(path: str, fingerprint: str) -> Zoo:
    """The zoo at ``path``, opened once per worker process and checked against the run's fingerprint."""
    key = (path, fingerprint)
    if key not in _OPEN:
        zoo = load_zoo(path, cache=False)
        if zoo.fingerprint != fingerprint:
            raise CacheError(f"{path} changed since the precompute started (fingerprint {zoo.fingerprint}, "
                             f"expected {fingerprint})")
        _OPEN.clear()  # one zoo at a time: a worker's memory holds one memory map and metadata table
        _OPEN[key] = zoo
    return _OPEN[key]


def _table(rows: np.ndarray, values: np.ndarray, names: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(values, columns=names)
    df.insert(0, "row", rows)
    return df


def compute_chunk(zoo: Zoo, params: dict[str, Any], start: int, stop: int,
                  device: Device = None) -> dict[str, pd.DataFrame | torch.Tensor]:
    """Results of rows ``start:stop`` of ``zoo`` for ``params`` (see :func:`cache_parameters`):
    ``{kind: DataFrame}`` for tables, ``{"aligned": Tensor [rows, P]}``, ``{"evaluation": DataFrame}``;
    evaluations run on ``device`` (None: the CPU)."""
    rows = np.arange(start, stop)
    part = zoo.subset(rows)
    part.cache = None  # compute, never read back from a cache
    out: dict[str, pd.DataFrame | torch.Tensor] = {}
    for feature in params["features"]:
        if feature == "aligned":
            ref = zoo.weights[params["reference"]].float()
            out[feature] = align_zoo(zoo.arch, part.weights.float(), ref, method=params["method"], task=zoo.task,
                                  seed=params["align_seed"])
            continue
        options = {"spectral": {"min_singular_values": params["min_singular_values"]},
                   "functional": {"n_probe": params["n_probe"], "seed": params["probe_seed"]}}.get(feature, {})
        fs = feature_set(part, feature, **options)
        out[feature] = _table(rows, fs.values, fs.names)
    if params["evaluate"]:
        table = pd.DataFrame({"row": rows})
        for split in params["splits"]:
            result = evaluate(zoo.arch, zoo.task, part.weights, split, device=device)
            table[f"{split}_loss"] = result["loss"].numpy()
            table[f"{split}_acc"] = result["accuracy"].numpy()
        out["evaluation"] = table
    return out


def _run_chunk(zoo_path: str, fingerprint: str, params: dict[str, Any], cache: str, start: int, stop: int,
               device: str = "cpu") -> int:
    """Dask task: compute rows ``start:stop`` and write each result file atomically; returns the row count."""
    zoo = _open_zoo(zoo_path, fingerprint)
    results = compute_chunk(zoo, params, start, stop, device)
    for name, value in results.items():
        path = chunk_file(Path(cache), name, start, stop)
        if name == "aligned":
            _write_weights(path, [value], tuple(value.shape))
        else:
            _write_table(path, value)
    return stop - start


# ---------------------------------------------------------------------------------------------- driver
def _prepare(cache: Path, manifest: dict[str, Any], chunk_size: int | None) -> dict[str, Any]:
    """Check an existing cache folder against the run's manifest; returns the manifest to use."""
    if (cache / MANIFEST).is_file():
        old = read_manifest(cache)
        if old["zoo_fingerprint"] != manifest["zoo_fingerprint"]:
            raise CacheError(f"{cache} holds a cache of another zoo (fingerprint {old['zoo_fingerprint']}, this zoo "
                             f"{manifest['zoo_fingerprint']}); choose another --out or delete that folder")
        if old["parameters"] != manifest["parameters"]:
            diff = _describe_difference(old["parameters"], manifest["parameters"])
            raise CacheError(f"{cache} was made with other parameters ({diff}); choose another --out or delete "
                             "that folder")
        if chunk_size is not None and old["chunk_size"] != chunk_size:
            raise CacheError(f"{cache} is cut into chunks of {old['chunk_size']} rows, asked {chunk_size}: "
                             "resume without --chunk-size, or choose another --out")
        return old
    if cache.exists() and (not cache.is_dir() or any(cache.iterdir())):
        raise CacheError(f"{cache} exists and is not a precompute cache; refusing to write into it")
    return manifest


def _merged_valid(cache: Path, manifest: dict[str, Any]) -> bool:
    n = manifest["n_checkpoints"]
    return manifest.get("complete", False) and all(
        valid_file(merged_file(cache, name), n) for name in result_names(manifest["parameters"]))


def _merge(cache: Path, manifest: dict[str, Any]) -> None:
    """Concatenate the chunk files into one file per result, check row order, then drop the chunks."""
    n, chunks = manifest["n_checkpoints"], manifest["chunks"]
    for name in result_names(manifest["parameters"]):
        files = [chunk_file(cache, name, a, b) for a, b in chunks]
        if name == "aligned":
            _write_weights(merged_file(cache, name), lambda files=files: (read_weights(f) for f in files),
                           (n, manifest["n_params"]))
            continue
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        if not np.array_equal(df["row"].to_numpy(), np.arange(n)):
            raise CacheError(f"{cache}: the chunks of {name} do not cover rows 0..{n - 1} in order")
        _write_table(merged_file(cache, name), df)
    _write_json(cache / MANIFEST, {**manifest, "complete": True})
    for a, b in chunks:
        for name in result_names(manifest["parameters"]):
            chunk_file(cache, name, a, b).unlink(missing_ok=True)
    for stale in (cache / "chunks").glob(".*.tmp-*"):  # left by tasks killed mid-write
        stale.unlink(missing_ok=True)


def precompute_zoo(
    zoo: str | Path,
    out: str | Path | None = None,
    features: Sequence[str] = ("stats", "spectral"),
    align_to: int | None = None,
    evaluate: bool = False,
    scheduler: str | None = None,
    n_workers: int = 2,
    chunk_size: int | None = None,
    client: Any = None,
    progress: Progress = None,
    max_chunks: int | None = None,
    device: Device = None,
    **options: Any,
) -> PrecomputeReport:
    """Precompute per-checkpoint results of the zoo at path ``zoo`` into the cache folder ``out``
    (default: the zoo's per-user cache folder, :func:`~wslviz.scale.cache.user_cache_path`; nothing is written
    beside the zoo unless ``out`` says so), in parallel with ``dask.distributed``.

    ``features``: kinds of :data:`KINDS`; ``align_to``: reference row for ``aligned`` (default the best
    final checkpoint); ``evaluate``: loss and accuracy on the train and test splits. Where it runs:
    ``client`` (a ``distributed.Client``), else ``scheduler`` (address of an existing cluster, whose workers
    must see the zoo and cache paths), else a ``LocalCluster`` of ``n_workers`` single-threaded processes.
    ``chunk_size``: rows per task (default :func:`default_chunk_size`). ``max_chunks``: compute at most this
    many pending chunks and stop before merging (time-boxed runs; rerun to continue). ``device``: where the
    evaluations run (None: the CPU; ``"cuda"`` needs a CUDA device on every worker). ``options``:
    ``method``, ``n_probe``, ``min_singular_values`` (see :func:`cache_parameters`). ``progress(done, total)``
    counts chunks. Raises :class:`CacheError` for a cache of another zoo or other parameters, ``ValueError``
    for a device this machine does not have."""
    from distributed import Client, LocalCluster, as_completed

    started = time.perf_counter()
    device = str(resolve_device(device))  # fails here, before a cluster starts, for a device this machine lacks
    zoo_path = Path(zoo.path if isinstance(zoo, Zoo) else zoo).expanduser().resolve()
    opened = load_zoo(zoo_path, cache=False)
    cache = Path(out if out is not None else user_cache_path(opened.fingerprint)).expanduser().resolve()
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    params = cache_parameters(opened, features, align_to, evaluate, **options)
    fresh = {"version": CACHE_VERSION, "zoo_fingerprint": opened.fingerprint, "zoo_path": str(zoo_path),
             "n_checkpoints": opened.n_checkpoints, "n_params": opened.n_params, "parameters": params,
             "architecture": opened.arch.spec, "complete": False}
    manifest = _prepare(cache, fresh, chunk_size)
    if manifest is not fresh and _merged_valid(cache, manifest):
        return PrecomputeReport(cache, len(manifest["chunks"]), 0, len(manifest["chunks"]), True,
                                time.perf_counter() - started)
    if manifest.get("complete"):  # merged files damaged or missing: recompute, and say so on disk at once
        manifest = {**manifest, "complete": False}
        _write_json(cache / MANIFEST, manifest)

    own, futures = [], []  # cluster and client this call started, closed at the end
    try:
        if client is None:
            if scheduler:
                client = Client(scheduler)
            else:
                cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
                own.append(cluster)
                client = Client(cluster)
            own.insert(0, client)
        if manifest is fresh:
            workers = max(1, sum(client.nthreads().values()))
            size = chunk_size or default_chunk_size(opened.n_checkpoints, opened.n_params, workers)
            manifest.update(chunk_size=size, chunks=_chunk_bounds(opened.n_checkpoints, size))
            (cache / "chunks").mkdir(parents=True, exist_ok=True)
            _write_json(cache / MANIFEST, manifest)
        (cache / "chunks").mkdir(parents=True, exist_ok=True)
        names = result_names(manifest["parameters"])
        pending = [(a, b) for a, b in manifest["chunks"]
                   if not all(valid_file(chunk_file(cache, name, a, b), b - a) for name in names)]
        skipped = len(manifest["chunks"]) - len(pending)
        todo = pending[:max_chunks] if max_chunks is not None else pending
        futures = [client.submit(_run_chunk, str(zoo_path), manifest["zoo_fingerprint"], manifest["parameters"],
                                 str(cache), a, b, device,
                                 key=f"wslviz-precompute-{manifest['zoo_fingerprint']}-{a}-{b}", pure=False)
                   for a, b in todo]
        done = 0
        for future in as_completed(futures):
            future.result()  # re-raises a worker's error here
            done += 1
            if progress:
                progress(done, len(todo))
    finally:
        if futures and not own:  # on a failure, leave no orphaned work on a cluster we do not own
            client.cancel(futures)
        for thing in own:
            thing.close()
    complete = len(todo) == len(pending)
    merge_started = time.perf_counter()
    if complete:
        _merge(cache, manifest)
    return PrecomputeReport(cache, len(manifest["chunks"]), len(todo), skipped, complete,
                            time.perf_counter() - started, time.perf_counter() - merge_started)
