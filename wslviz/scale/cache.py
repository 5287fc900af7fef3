"""Precompute caches: where they live, how a zoo finds its own, and reading results back.

A cache is a folder made by :func:`wslviz.scale.precompute.precompute_zoo` (layout in that module). The
public :func:`load_zoo` reads a zoo (:func:`wslviz.formats.read_zoo`) and attaches a matching cache as
``Zoo.cache`` (a :class:`CacheLink`); :func:`wslviz.represent.features.compute_features` then returns
cached values whenever the cache's fingerprint and parameters match the zoo and the request, and computes
as usual otherwise.

Where caches live (nothing is ever written into the zoo's folder unless asked): ``wslviz precompute``
writes to ``--out`` when given, else to the per-user cache folder of the zoo, ``<root>/<fingerprint>``
(:func:`user_cache_path`), where ``<root>`` is ``$WSLVIZ_CACHE`` when set, else the platform cache folder
(``~/.cache/wslviz`` or ``$XDG_CACHE_HOME/wslviz`` on Linux, ``~/Library/Caches/wslviz`` on macOS,
``%LOCALAPPDATA%\\wslviz\\Cache`` on Windows); see :func:`cache_root`. ``$WSLVIZ_CACHE`` therefore names the
*root* holding one cache per zoo, never one cache folder. Reading, :func:`find_cache` looks at ``cache=``
when given, else at a cache beside the zoo (``<zoo>/.wslviz-cache`` for a folder, ``<zoo>.wslviz-cache``
for a file, as earlier versions wrote) and at the per-user folder, preferring a complete cache made for
this very zoo.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from wslviz.core.layout import ArchitectureError
from wslviz.core.protocol import ArchitectureLike, from_spec
from wslviz.core.zoo import Zoo, reference_row
from wslviz.formats import read_zoo
from wslviz.formats.native import mmap_safetensor
from wslviz.represent.features import FeatureSet
from wslviz.represent.projection import ProjectionStore
from wslviz.scale.opened import FOLDER, open_stored

CACHE_VERSION = 1
CACHE_DIR = ".wslviz-cache"
CACHE_ENV = "WSLVIZ_CACHE"
"""Environment variable naming the root of the per-user caches (one sub-folder per zoo fingerprint)."""
MANIFEST = "manifest.json"
KINDS = ("stats", "spectral", "functional", "aligned")
"""Feature kinds that can be precomputed (per-row computations)."""
SPLITS = ("train", "test")
DEFAULTS: dict[str, Any] = {"n_probe": 128, "probe_seed": 0, "min_singular_values": 50, "method": "weight",
                            "align_seed": 0}


class CacheError(ValueError):
    """A cache that cannot be used or written: another zoo or other parameters, or a foreign folder."""



def cache_root() -> Path:
    """The folder holding the per-user caches: ``$WSLVIZ_CACHE`` when set, else the platform's cache folder
    for wslviz (``$XDG_CACHE_HOME/wslviz``, default ``~/.cache/wslviz``; ``~/Library/Caches/wslviz`` on
    macOS; ``%LOCALAPPDATA%\\wslviz\\Cache`` on Windows)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "wslviz" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "wslviz"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "wslviz"


def projection_store(zoo: Zoo) -> ProjectionStore:
    """Where the app keeps ``zoo``'s fitted projections, so that slow fits (t-SNE, UMAP) outlive the server
    process: ``<cache root>/projections/<zoo fingerprint>``."""
    return ProjectionStore(cache_root() / "projections" / zoo.fingerprint)


def user_cache_path(fingerprint: str) -> Path:
    """The per-user cache folder of the zoo with this fingerprint: ``cache_root() / fingerprint``."""
    return cache_root() / fingerprint


def beside_cache_path(zoo_path: str | Path) -> Path:
    """Where a cache beside the zoo lives: ``<zoo>/.wslviz-cache`` (folder) or ``<zoo>.wslviz-cache`` (file).
    Read when present; written only when asked for (``--out``)."""
    zoo_path = Path(zoo_path)
    return zoo_path / CACHE_DIR if zoo_path.is_dir() else zoo_path.with_name(zoo_path.name + CACHE_DIR)


def cache_stamp() -> float:
    """The newest modification time of a manifest under :func:`cache_root` (0 when there is none): changes
    whenever a per-user cache is started or finished, so that loaders cached by time notice new caches."""
    root = cache_root()
    if not root.is_dir():
        return 0.0
    return max((m.stat().st_mtime for m in root.glob(f"*/{MANIFEST}")), default=0.0)


def _usable(cache: Path, fingerprint: str | None) -> bool:
    """Whether the cache folder is complete and made for the zoo with ``fingerprint``."""
    try:
        manifest = read_manifest(cache)
    except CacheError:
        return False
    return bool(manifest.get("complete")) and manifest.get("zoo_fingerprint") == fingerprint


def find_cache(zoo_path: str | Path, cache: str | Path | bool | None = None,
               fingerprint: str | None = None) -> Path | None:
    """The cache folder for a zoo: ``cache`` if given (``False``: none; a folder without a manifest raises
    :class:`CacheError`), else the cache beside the zoo or the per-user one of ``fingerprint``
    (:func:`user_cache_path`); a complete cache made for this zoo is preferred, and only a folder holding
    a manifest counts."""
    if cache is False:
        return None
    if cache not in (None, True):
        if not (Path(cache) / MANIFEST).is_file():
            raise CacheError(f"{cache}: no precompute cache there (no {MANIFEST})")
        return Path(cache)
    candidates = [beside_cache_path(zoo_path)] + ([user_cache_path(fingerprint)] if fingerprint else [])
    present = [c for c in candidates if (c / MANIFEST).is_file()]
    return next((c for c in present if _usable(c, fingerprint)), present[0] if present else None)


def read_manifest(cache: str | Path) -> dict[str, Any]:
    """The manifest of a cache folder (raises :class:`CacheError` when missing or unreadable)."""
    path = Path(cache) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CacheError(f"{cache}: not a precompute cache (no {MANIFEST})") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CacheError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("version") != CACHE_VERSION:
        raise CacheError(f"{path}: not a version-{CACHE_VERSION} wslviz precompute manifest")
    return manifest


def read_weights(path: Path) -> torch.Tensor:
    """A cached float32 weight matrix, memory-mapped."""
    return mmap_safetensor(path)


def valid_file(path: Path, n_rows: int) -> bool:
    """Whether ``path`` is a complete result file of ``n_rows`` rows (cheap: footer or header only)."""
    if not path.is_file():
        return False
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_metadata(path).num_rows == n_rows
        return read_weights(path).shape[0] == n_rows
    except Exception:  # noqa: BLE001 - any unreadable file is simply recomputed
        return False


def result_names(params: dict[str, Any]) -> list[str]:
    """Result names of a run: feature kinds, plus ``evaluation`` when evaluating."""
    return list(params["features"]) + (["evaluation"] if params["evaluate"] else [])


def result_suffix(name: str) -> str:
    """File suffix of a result: safetensors for aligned weights, parquet for tables."""
    return ".safetensors" if name == "aligned" else ".parquet"


def chunk_file(cache: Path, name: str, start: int, stop: int) -> Path:
    """Where rows ``start:stop`` of result ``name`` are written while a run is in progress."""
    return cache / "chunks" / f"{name}-{start:010d}-{stop:010d}{result_suffix(name)}"


def merged_file(cache: Path, name: str) -> Path:
    """Where the merged result ``name`` of a complete cache lives."""
    return cache / f"{name}{result_suffix(name)}"


# ---------------------------------------------------------------------------------------------- reading
class PrecomputeCache:
    """A complete precompute cache folder: its manifest and merged results (tables and aligned weights)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        if not self.manifest.get("complete"):
            raise CacheError(f"{self.path}: the precompute did not finish; rerun `wslviz precompute` to complete it")

    @property
    def fingerprint(self) -> str:
        return self.manifest["zoo_fingerprint"]

    @property
    def parameters(self) -> dict[str, Any]:
        return self.manifest["parameters"]

    def matches(self, zoo: Zoo) -> bool:
        """Whether this cache was made for exactly this zoo (same fingerprint)."""
        return zoo.fingerprint == self.fingerprint

    def features(self, feature: str, arch: ArchitectureLike | None = None) -> FeatureSet:
        """The cached feature set ``feature`` ([n_checkpoints, n_features] float64 with column names). The aligned
        weights' column names come from ``arch`` (the open zoo's), else from the architecture spec stored with the
        cache (any kind; a spec that runs user code needs ``arch``)."""
        if feature not in self.parameters["features"]:
            raise CacheError(f"{self.path} has no {feature!r} features (it has "
                             f"{', '.join(self.parameters['features'])})")
        if feature == "aligned":
            values = read_weights(merged_file(self.path, feature)).double().numpy()
            try:
                layout = (arch or from_spec(self.manifest["architecture"])).layout
            except ArchitectureError as e:
                raise CacheError(f"{self.path}: cannot name the aligned weights' columns ({e}); pass the open zoo's "
                                 "architecture (arch=zoo.arch)") from None
            return FeatureSet(feature, values, [f"{p.name}[{i}]" for p in layout for i in range(p.numel)])
        df = pd.read_parquet(merged_file(self.path, feature))
        names = [c for c in df.columns if c != "row"]
        return FeatureSet(feature, df[names].to_numpy(dtype=float), names)

    def aligned(self) -> torch.Tensor:
        """The aligned weights, float32 ``[n_checkpoints, n_params]`` (memory-mapped)."""
        if "aligned" not in self.parameters["features"]:
            raise CacheError(f"{self.path} has no aligned weights")
        return read_weights(merged_file(self.path, "aligned"))

    def evaluation(self) -> pd.DataFrame:
        """Loss and accuracy per checkpoint: columns ``row``, ``<split>_loss``, ``<split>_acc`` per split."""
        if not self.parameters["evaluate"]:
            raise CacheError(f"{self.path} holds no evaluations (precompute with --evaluate)")
        return pd.read_parquet(merged_file(self.path, "evaluation"))


def open_cache(zoo: Zoo) -> PrecomputeCache | None:
    """The complete cache attached to ``zoo`` (``zoo.cache``) when it was made for this very zoo, else None."""
    link = getattr(zoo, "cache", None)
    if link is None:
        return None
    try:
        cache = PrecomputeCache(link.path)
    except CacheError:
        return None
    return cache if cache.matches(zoo) else None


def _requested(zoo: Zoo, feature: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """The cache parameters a ``compute_features(zoo, feature, **options)`` call corresponds to (None: unknown)."""
    allowed = {"stats": {}, "spectral": {"min_singular_values": "min_singular_values"},
               "functional": {"n_probe": "n_probe", "seed": "probe_seed"},
               "aligned": {"reference": "reference", "method": "method"}}[feature]
    if set(options) - set(allowed):
        return None
    want = {allowed[k]: v for k, v in options.items()}
    if feature == "aligned" and want.get("reference") is None:
        want["reference"] = reference_row(zoo)
    return {k: want.get(k, DEFAULTS.get(k)) for k in allowed.values()}


def cached_feature_set(zoo: Zoo, feature: str, **options: Any) -> FeatureSet | None:
    """``feature_set(zoo, feature, **options)`` from the zoo's cache when it holds exactly that, else None."""
    if feature not in KINDS:
        return None
    cache = open_cache(zoo)
    if cache is None or feature not in cache.parameters["features"]:
        return None
    want = _requested(zoo, feature, options)
    if want is None or any(cache.parameters.get(k) != v for k, v in want.items()):
        return None
    return cache.features(feature, zoo.arch)


@dataclass(frozen=True)
class CacheLink:
    """The precompute cache folder attached to a zoo (``Zoo.cache``): answers feature requests from it
    where it holds exactly what is asked for this very zoo (see :func:`cached_feature_set`)."""

    path: Path

    def feature_set(self, zoo: Zoo, kind: str, **options: Any) -> FeatureSet | None:
        return cached_feature_set(zoo, kind, **options)


def load_zoo(path: str | Path, format: str | None = None, cache: str | Path | bool | None = None,
             **options: Any) -> Zoo:
    """Open a zoo in any supported layout (auto-detected, or ``format=`` one of
    :data:`wslviz.formats.READERS`). Raises :class:`~wslviz.formats.ZooFormatError` naming the file and
    the problem.

    ``cache``: a precompute cache folder to attach (``False``: none); by default the cache beside the zoo
    or the zoo's per-user cache (see :func:`find_cache`) is attached when there is one; with ``cache=False``
    nothing is written either. ``options`` go to the reader. A folder of large checkpoint files is read once
    into a row store in the per-user cache and reopened from it while unchanged (:mod:`wslviz.scale.opened`)."""
    root = cache_root()
    task = options.pop("task", None)
    zoo = open_stored(Path(path).expanduser(), root, format, **options) if cache is not False else None
    if zoo is None:
        zoo = read_zoo(path, format, **options)
    if task is not None:
        zoo = zoo.with_task(task)
    # the fingerprint costs a pass over sampled weights: only worth it when a per-user cache may exist
    # (row stores of opened folders are not such caches)
    caches = root.is_dir() and any(p.name != FOLDER for p in root.iterdir())
    fingerprint = zoo.fingerprint if cache in (None, True) and caches else None
    found = find_cache(Path(path).expanduser(), cache, fingerprint)
    zoo.cache = CacheLink(found) if found is not None else None
    return zoo
