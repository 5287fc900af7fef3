"""Folders of checkpoints as people keep them::

    <root>/a.safetensors, <root>/b.pt, <root>/lr=0.01_seed=3_epoch=20.pth, <root>/last.ckpt, ...
                            one checkpoint per file (.safetensors, .pt, .pth, .bin, .ckpt)
    <root>/run3/epoch_10.pt, <root>/run3/epoch_20.pt, <root>/run4/...
                            one model per sub-folder, one checkpoint per epoch (every sub-folder's
                            file names give their epoch or step: epoch_10, epoch=10, step-500, ep10)
    <root>/metadata.csv     optional: a column file|filename|name|path (file name, or path below the root)
    <root>/metadata.json    [{"file": "a.pt", ...}, ...]  or  {"a.pt": {...}, ...}

Each file's state dict is found wherever it was saved (:func:`wslviz.formats.safeio.read_checkpoint`: nested,
Lightning, legacy, GPU, half precision), files are grouped by architecture signature and the largest group
opens (``group=`` picks another; :mod:`wslviz.formats.groups`). Its architecture is ``arch=`` when given,
else inferred from the key names and shapes (a sequential stack, ``stack=`` choosing one of several, with
``activation`` / ``input_shape`` where the state dict cannot tell), else a weights-only layout. The groups,
the files that could not be used (with the reason) and notes on what was converted are kept in
``zoo.extra["groups"]``, ``["skipped"]`` and ``["notes"]``.

Metadata: the metadata file's columns when there is one; otherwise columns parsed from file and folder names
(``key=value`` / ``key_value``, :mod:`wslviz.formats.names`), an ``epoch`` column where names give one, and
checkpoints whose names differ only in their epoch grouped into one model. Always: ``file``, ``file_size``
(bytes) and ``modified`` (UTC, ISO 8601).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.layout import ArchitectureError
from wslviz.core.protocol import ArchitectureBase, ArchitectureLike, as_architecture
from wslviz.core.zoo import FILE_COLUMNS, Zoo
from wslviz.formats._common import CHECKPOINT_SUFFIXES, put_first, read_csv, read_json, require_dir
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.groups import GroupedCheckpoints, Loader, read_groups
from wslviz.formats.names import epoch_of, has_epoch, parse_name, without_epoch
from wslviz.formats.safeio import read_checkpoint, sniff
from wslviz.formats.served import serve_again, serve_inferred

KEY_COLUMNS = ("file", "filename", "name", "path")
"""Columns that describe the files rather than the models (not hyper-parameters)."""
RESERVED = ("model_id", *FILE_COLUMNS)


NOT_CHECKPOINTS = (".json", ".csv", ".txt", ".md", ".yaml", ".yml", ".py", ".npy", ".npz", ".zip", ".tar", ".gz",
                   ".tgz", ".png", ".jpg", ".log", ".html", ".gitignore")
"""Suffixes of files a checkpoint folder holds beside its checkpoints (read as metadata or left alone)."""


def _is_checkpoint(p: Path) -> bool:
    """A checkpoint by its suffix, or by its content (:func:`~wslviz.formats.safeio.sniff`) when the suffix says
    nothing (``resnet20-12fca82f.th``, ``final.1.0.3.v2``, no suffix at all)."""
    if not p.is_file() or p.name.startswith("."):
        return False
    if p.suffix in CHECKPOINT_SUFFIXES:
        return True
    return p.suffix.lower() not in NOT_CHECKPOINTS and sniff(p) is not None


def checkpoint_files(path: Path) -> list[Path]:
    """The checkpoint files directly inside ``path``, sorted by name."""
    return sorted(p for p in path.iterdir() if _is_checkpoint(p))


def run_folders(path: Path) -> list[Path]:
    """The sub-folders of ``path`` that directly hold checkpoint files, sorted by name."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and any(_is_checkpoint(f) for f in p.iterdir()))


def is_runs(path: Path) -> bool:
    """A folder of runs: no checkpoint at the top, sub-folders that hold checkpoints, and in each of them
    file names that give the epoch or step, or a single checkpoint (one folder per agent or environment:
    ``ppo-CartPole-v1/policy.pth``)."""
    if not path.is_dir() or checkpoint_files(path):
        return False
    runs = run_folders(path)
    files = [checkpoint_files(r) for r in runs]
    return bool(runs) and (all(has_epoch(f.stem for f in fs) for fs in files) or all(len(fs) == 1 for fs in files))


def detect(path: Path) -> bool:
    return path.is_dir() and (bool(checkpoint_files(path)) or is_runs(path))


def parse_arch(given: Any, allow_code: bool = False) -> ArchitectureLike | None:
    """An ``arch=`` option as the readers take it: an architecture, a spec, JSON text, or a ``.json`` file (a
    relative factory path in it is resolved against the file's folder). ``allow_code`` lets a module spec with a
    factory run it (user code: only when the caller says so)."""
    if given is None or isinstance(given, ArchitectureBase):
        return given
    arch, base = given, None
    if isinstance(given, str | Path):
        text = str(given).strip()
        where = Path(text).expanduser() if not text.startswith("{") else None
        if where is not None:
            if not where.is_file():
                raise ZooFormatError(where, "arch= is neither a JSON spec nor a .json file")
            text, base = where.read_text(), where.parent
        try:
            arch = json.loads(text)
        except json.JSONDecodeError as e:
            raise ZooFormatError(where, f"arch= is not valid JSON ({e})") from None
    try:
        return as_architecture(arch, allow_code=allow_code, base=base)
    except (ArchitectureError, KeyError, TypeError, ValueError) as e:
        raise ZooFormatError(None, f"arch= is not a usable architecture: {e}") from None


def read_metadata(path: Path, names: Sequence[str]) -> pd.DataFrame | None:
    """The rows of ``metadata.csv`` / ``metadata.json`` in ``names`` order (None when there is none), keyed by
    path below ``path`` or by file name where that is unique. A row for a file that does not exist, a repeated
    file or a missing key column is an error."""
    if (path / "metadata.csv").is_file():
        where = path / "metadata.csv"
        df = read_csv(where)
    elif (path / "metadata.json").is_file():
        where = path / "metadata.json"
        data = read_json(where)
        if isinstance(data, Mapping):
            if not all(isinstance(v, Mapping) for v in data.values()):
                raise ZooFormatError(where, "expected {file name: {column: value}} or a list of records")
            df = pd.DataFrame([{"file": k, **v} for k, v in data.items()])
        elif isinstance(data, list) and all(isinstance(r, Mapping) for r in data):
            df = pd.DataFrame(list(data))
        else:
            raise ZooFormatError(where, "expected {file name: {column: value}} or a list of records")
    else:
        return None
    key = next((c for c in KEY_COLUMNS if c in df), None)
    if key is None:
        raise ZooFormatError(where, f"needs a column naming the checkpoint file (one of {', '.join(KEY_COLUMNS)})")
    if df[key].isna().any():
        raise ZooFormatError(where, f"row {int(df[key].isna().to_numpy().argmax())} has no {key!r}")
    base = pd.Series([Path(n).name for n in names])
    by_name = {b: n for b, n in zip(base, names, strict=True) if (base == b).sum() == 1}
    keys = df[key].map(lambda v: str(v) if str(v) in names else by_name.get(Path(str(v)).name, str(v)))
    dup = keys.duplicated()
    if dup.any():
        raise ZooFormatError(where, f"file {keys[dup].iloc[0]!r} has more than one row")
    unknown = sorted(set(keys) - set(names))
    if unknown:
        raise ZooFormatError(where, f"rows for files that are not in the folder: {unknown[:5]}")
    df = df.drop(columns=[key]).assign(file=keys.to_numpy()).set_index("file")
    return df.reindex(list(names)).reset_index()


def _file_facts(f: Path) -> tuple[int, str]:
    """Size in bytes and modification time (UTC, ISO 8601) of a file, or of the files of a folder."""
    parts = [f] if f.is_file() else [p for p in f.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in parts)
    mtime = max((p.stat().st_mtime for p in parts), default=0.0)
    return size, datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def name_columns(names: Sequence[str], runs: bool) -> pd.DataFrame:
    """Columns parsed from each name's folder and file stem, plus ``epoch`` and ``model_id``: one model per
    run folder (``runs``), else one per name once its epoch is removed."""
    rows, models = [], []
    for name in names:
        parts = Path(name).parts
        stem = Path(parts[-1]).stem
        fields: dict[str, Any] = {}
        for folder in parts[:-1]:
            fields.update(parse_name(folder))
        fields.update(parse_name(stem))
        epoch = epoch_of(parse_name(stem), stem)
        fields = {k: v for k, v in fields.items() if k not in RESERVED}
        if epoch is not None and (runs or not stem.isdigit()):
            fields["epoch"] = epoch
        rows.append(fields)
        models.append(str(Path(*parts[:-1])) if runs else str(Path(*parts[:-1], without_epoch(stem))))
    df = pd.DataFrame(rows, index=range(len(names)))
    df.insert(0, "model_id", pd.factorize(pd.Series(models))[0])
    if runs:
        df.insert(1, "run", [Path(n).parts[0] for n in names])
    return df


def read_files(path: Path, files: Sequence[Path], fmt: str, arch: Any = None, activation: str | None = None,
               input_shape: Sequence[int] | None = None, check_finite: bool = True, loader: Loader = read_checkpoint,
               description: str = "", progress: Callable[[int, int], None] | None = None,
               stack: int | str | None = None, group: int | None = None, names: Sequence[str] | None = None,
               parse_names: bool = True, runs: bool = False, store: Path | None = None,
               serve: Callable[[Sequence[Path], Sequence[str]], GroupedCheckpoints | None] | None = None) -> Zoo:
    """Stack ``files`` (grouped by signature, see :mod:`wslviz.formats.groups`) into a zoo; its metadata has
    ``model_id``, ``file``, the metadata file's columns or those parsed from names (``parse_names``),
    ``file_size`` and ``modified``. ``names``: how files are shown (default: their path below ``path``).
    ``store``: a file to write the weight matrix into, memory-mapped afterwards (see
    :func:`wslviz.formats.groups.read_groups`). ``serve(files, names)``: the rows read in place from the files
    (:mod:`wslviz.formats.served`), tried first; where it gives None the files are read."""
    if not files:
        raise ZooFormatError(path, f"no checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})")
    if names is None:
        names = [f.relative_to(path).as_posix() if f.is_relative_to(path) and f != path else f.name for f in files]
    meta = read_metadata(path, names)  # checked before any checkpoint is read
    if meta is None:
        meta = pd.DataFrame({"file": names})
        if parse_names:
            meta = pd.concat([meta, name_columns(names, runs)], axis=1)
    if "model_id" not in meta or not meta["model_id"].notna().all():
        meta = meta.assign(model_id=range(len(files)))
    facts = [_file_facts(f) for f in files]
    meta = meta.assign(file_size=[s for s, _ in facts], modified=[m for _, m in facts])
    meta = put_first(meta, {"model_id": meta["model_id"], "file": meta["file"]})
    found = serve(files, names) if serve is not None else None
    if found is None:
        found = read_groups(files, names, loader, parse_arch(arch), activation, input_shape, stack, group,
                            check_finite, progress, store)
    meta = meta.iloc[found.rows].reset_index(drop=True)
    saved = pd.DataFrame([found.scalars.get(i, {}) for i in found.rows])  # numbers saved beside the weights
    new = [c for c in saved.columns if c not in meta.columns and c not in RESERVED]
    if new:
        meta = pd.concat([meta, saved[new]], axis=1)
    weights = found.weights
    if "epoch" in meta and pd.api.types.is_numeric_dtype(meta["epoch"]):  # each run's checkpoints in epoch order
        order = np.lexsort((meta["epoch"].fillna(-np.inf).to_numpy(), meta["model_id"].to_numpy()))
        if (order != np.arange(len(order))).any():
            meta, weights = meta.iloc[order].reset_index(drop=True), _reordered(found, weights, order)
    extra = {"groups": [g.summary() for g in found.groups], "group": found.chosen, "skipped": found.skipped,
             "notes": found.notes}
    if found.served is not None:
        extra["served"] = found.served
        extra["notes"] = {**found.notes, "read in place: rows mapped from the files, no copy": len(found.rows)}
    parts = [description or f"{len(files)} checkpoint files"]
    if len(found.groups) > 1:
        parts.append(f"{len(found.groups)} architectures, group {found.chosen} opened ({len(found.rows)} files)")
    if found.skipped:
        parts.append(f"{len(found.skipped)} file(s) skipped")
    return Zoo(name=path.name, metadata=meta, weights=weights, arch=found.arch, task=None, path=path,
               format=fmt, description="; ".join(parts), extra=extra)


def _reordered(found: GroupedCheckpoints, weights: torch.Tensor, order: np.ndarray) -> torch.Tensor:
    """The rows in ``order``: served files mapped again in that order (no copy; ``found.served`` says so), else
    gathered."""
    if found.served is not None:
        again = serve_again(found.served, order)
        if again is not None:
            found.served = {**found.served, "files": [found.served["files"][i] for i in order]}
            return again
        found.served = None
    return weights[torch.as_tensor(order)]


def read(path: Path, arch: Any = None, activation: str | None = None, input_shape: Sequence[int] | None = None,
         stack: int | str | None = None, group: int | None = None, check_finite: bool = True,
         progress: Callable[[int, int], None] | None = None, store: Path | None = None, **_: Any) -> Zoo:
    """Read a folder of checkpoints (see the module docstring). ``arch`` (an architecture, a spec, JSON text or
    a ``.json`` file), ``activation``, ``input_shape`` and ``stack`` state what the state dicts cannot tell;
    ``group`` picks a group of checkpoints; ``progress(done, total)`` is called while files are read; ``store``:
    a file to write the weight matrix into (memory-mapped afterwards)."""
    path = require_dir(path, "checkpoint folder")
    runs = is_runs(path)
    files = [f for r in run_folders(path) for f in checkpoint_files(r)] if runs else checkpoint_files(path)
    serve = (partial(serve_inferred, arch=parse_arch(arch), activation=activation, input_shape=input_shape,
                     check_finite=check_finite, progress=progress)
             if stack is None and group is None and all(f.suffix == ".safetensors" for f in files) else None)
    return read_files(path, files, "folder", arch, activation, input_shape, check_finite, progress=progress,
                      stack=stack, group=group, runs=runs, store=store, serve=serve)
