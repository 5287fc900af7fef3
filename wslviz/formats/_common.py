"""Helpers shared by the readers: checked JSON/CSV reading, stacking many state dicts into one
float32 matrix, NaN/Inf checks, and picking one activation out of a zoo that mixes several."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wslviz.core.arch import Architecture, ArchitectureError, infer_architecture
from wslviz.core.protocol import as_architecture
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.safeio import load_state_dict

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def require_dir(path: Path, layout: str) -> Path:
    """``path`` as a Path if it is a folder, else :class:`ZooFormatError` (every layout but archives is one)."""
    path = Path(path)
    if not path.is_dir():
        raise ZooFormatError(path, f"not a folder; a {layout} zoo is a folder")
    return path


def read_json(path: Path) -> Any:
    """Parsed JSON, or :class:`ZooFormatError` naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ZooFormatError(path, f"not valid JSON ({str(e)[:200]})") from None


def read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """A CSV (``.csv`` or ``.csv.gz``) as a DataFrame, or :class:`ZooFormatError` naming the file."""
    try:
        df = pd.read_csv(path, **kwargs)
    except Exception as e:  # pandas/gzip/zlib raise many types for truncated or corrupt files
        raise ZooFormatError(path, f"not a readable CSV ({str(e).strip().splitlines()[0][:200] if str(e) else e})") \
            from None
    if df.columns.duplicated().any():
        raise ZooFormatError(path, f"duplicate column names {sorted(set(df.columns[df.columns.duplicated()]))}")
    return df


def numeric_column(df: pd.DataFrame, column: str, path: Path, required: bool = True) -> pd.Series | None:
    """``df[column]`` as float64; :class:`ZooFormatError` if it is missing (when ``required``) or holds
    something that is not a number."""
    if column not in df:
        if required:
            raise ZooFormatError(path, f"missing column {column!r}")
        return None
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ZooFormatError(path, f"column {column!r} row {row}: {df[column].iloc[row]!r} is not a number")
    return values.astype(float)


def put_first(df: pd.DataFrame, columns: Mapping[str, Any]) -> pd.DataFrame:
    """``df`` with ``columns`` (name -> values) set, replacing same-named ones, and moved to the front."""
    out = df.assign(**{name: values for name, values in columns.items()})
    return out[list(columns) + [c for c in out.columns if c not in columns]]


def require_finite(weights: torch.Tensor, name_of: Callable[[int], object], what: str = "checkpoint") -> None:
    """Raise :class:`ZooFormatError` naming ``name_of(row)`` for the first row with NaN/Inf weights."""
    if torch.isfinite(weights.sum(1)).all():  # NaN/Inf propagate into the row sum; overflow only re-checks
        return
    bad = (~torch.isfinite(weights)).any(1).nonzero().flatten()
    if len(bad):
        raise ZooFormatError(name_of(int(bad[0])), f"{what} contains NaN/Inf weights ({len(bad)} of "
                             f"{len(weights)} are affected); pass check_finite=False to open anyway")


def architecture_from(state_dict: Mapping[str, torch.Tensor], path: Path, arch: Any = None,
                      activation: str = "relu", input_shape: Sequence[int] | None = None) -> Architecture:
    """``arch`` (an :class:`Architecture` or spec) when given, else one inferred from ``state_dict``."""
    try:
        if arch is not None:
            return as_architecture(arch)  # any kind: a spec dict, an Architecture, a ModuleArchitecture
        return infer_architecture(state_dict, activation=activation, input_shape=input_shape)
    except (ArchitectureError, KeyError, TypeError, ValueError, OverflowError) as e:
        raise ZooFormatError(path, f"cannot work out the architecture: {e}. State it: in the app, in the home "
                             "page's form (a built-in architecture, the input shape); in Python, arch=<spec> (and "
                             "input_shape=[C, H, W] for CNNs)") from None


def flatten_into(arch: Architecture, state_dict: Mapping[str, torch.Tensor], path: Path,
                 reference: Path) -> torch.Tensor:
    """``arch.flatten(state_dict, by_order=True)``; a mismatch is reported as mixed architectures."""
    try:
        return arch.flatten(state_dict, by_order=True)
    except ArchitectureError as e:
        raise ZooFormatError(path, f"mixed architectures: this file does not match the architecture of "
                             f"{reference.name} ({arch.describe()}): {e}") from None


def stack_files(files: Sequence[Path], arch: Any = None, activation: str = "relu",
                input_shape: Sequence[int] | None = None,
                loader: Callable[[Path], Mapping[str, torch.Tensor]] = load_state_dict,
                progress: Callable[[int, int], None] | None = None) -> tuple[Architecture, torch.Tensor]:
    """Load each file's state dict and write it into one preallocated float32 ``[len(files), P]``
    matrix (one state dict alive at a time). The first file fixes the architecture unless ``arch``."""
    if not files:
        raise ZooFormatError(None, "no checkpoint files found")
    first = loader(files[0])
    architecture = architecture_from(first, files[0], arch, activation, input_shape)
    weights = torch.empty(len(files), architecture.n_params, dtype=torch.float32)
    weights[0] = flatten_into(architecture, first, files[0], files[0])
    for i in range(1, len(files)):
        weights[i] = flatten_into(architecture, loader(files[i]), files[i], files[0])
        if progress is not None and i % 100 == 0:
            progress(i + 1, len(files))
    if progress is not None:
        progress(len(files), len(files))
    return architecture, weights


def set_sin_w0(arch: Architecture, w0: float) -> Architecture:
    """The same architecture with every ``sin`` activation's frequency set to ``w0``."""
    spec = {"input_shape": list(arch.input_shape),
            "layers": [{**layer, "w0": float(w0)} if layer["type"] == "sin" else layer for layer in arch.layers]}
    return Architecture(spec)


ACTIVATION_NAMES = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu", "sin": "sin",
                    "leakyrelu": "leaky_relu", "leaky_relu": "leaky_relu", "lrelu": "leaky_relu"}


def activation_name(value: Any, path: Path) -> str:
    """Our name for an activation as zoos spell it (``leakyrelu`` -> ``leaky_relu``)."""
    key = str(value).strip().lower().replace("-", "").replace(" ", "")
    if key not in ACTIVATION_NAMES:
        known = ", ".join(sorted(ACTIVATION_NAMES))
        raise ZooFormatError(path, f"activation {value!r} is not supported (known: {known})")
    return ACTIVATION_NAMES[key]


def pick_activation(per_row: Sequence[str], requested: str | None, where: Path) -> tuple[str, np.ndarray, str]:
    """One zoo has one architecture, so a zoo mixing activations is opened one activation at a time.

    Returns (activation, boolean mask of the rows kept, a note for the description). Without
    ``requested`` the most common activation is kept and a warning says how to open the others.
    """
    values = np.asarray(per_row, dtype=object)
    names, counts = np.unique(values.astype(str), return_counts=True)
    if requested is not None:
        if requested not in names:
            raise ZooFormatError(where, f"no models with activation {requested!r}; found {list(names)}")
        chosen = requested
    else:
        chosen = str(names[int(np.argmax(counts))])
    mask = values.astype(str) == chosen
    note = ""
    if len(names) > 1:
        others = ", ".join(f"{n} ({c})" for n, c in zip(names, counts, strict=True) if n != chosen)
        note = (f"kept the {int(mask.sum())} checkpoints with activation {chosen}; others: {others} "
                "(open them with activation=...)")
        if requested is None:
            warnings.warn(f"{where}: the zoo mixes activations; {note}", stacklevel=3)
    return chosen, mask, note


def scalar_items(params: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar entries of a config (numbers, strings, bools, None); lists/dicts become JSON text."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or isinstance(value, bool | int | str):
            out[str(key)] = value
        elif isinstance(value, float):
            out[str(key)] = value if math.isfinite(value) else None
        else:
            out[str(key)] = json.dumps(value, sort_keys=True, default=str)
    return out
