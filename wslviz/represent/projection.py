"""Low-dimensional projections of feature matrices: PCA, t-SNE and UMAP, in 2D or 3D.

Features are standardised first: missing values (e.g. the NaN ``alpha`` of small layers in the
``spectral`` set) are replaced by the column mean, constant columns are dropped, and every remaining
column is scaled to zero mean and unit variance, so that no feature dominates the distances by its
units alone. A fitted :class:`Projector` remembers this preprocessing, so new points (generated models)
can be placed in an existing PCA or UMAP map with :meth:`Projector.transform`; t-SNE places new
points only with openTSNE (Poličar et al., "openTSNE: a modular Python library for t-SNE dimensionality
reduction and embedding", JSS 2024), used when installed, with PCA initialisation; otherwise
scikit-learn's t-SNE (also PCA-initialised) fits, without an out-of-sample transform.

Fits are worth keeping: a t-SNE of a thousand checkpoints costs seconds on two cores.
:func:`load_or_fit` reads a fit back from a :class:`ProjectionStore` (one ``.npz`` per feature set,
method, parameters and rows, keyed by :func:`cache_key`) or fits and stores it.

UMAP's first fit in a process compiles numba code (measured, not assumed: :func:`umap_warm_up_seconds`;
tens of seconds on a busy two-core machine); :func:`warm_up_umap` does that on a tiny input, e.g. from
a background thread when a page loads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wslviz.core.zoo import Zoo

METHODS = ("pca", "tsne", "umap")
LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
TSNE_ITERATIONS = 500
"""Optimisation steps of scikit-learn's t-SNE (its default is 1,000): from a PCA initialisation the map no
longer changes visibly after a few hundred, and the fit costs half as much."""


def tsne_backend() -> str:
    """``"openTSNE"`` when that package is installed (it can place new points), else ``"scikit-learn"``."""
    return "openTSNE" if importlib.util.find_spec("openTSNE") is not None else "scikit-learn"


class Standardiser:
    """Mean-impute NaNs, drop constant columns, scale to unit variance (statistics from ``fit``)."""

    def fit(self, x: np.ndarray) -> Standardiser:
        x = _as_matrix(x)
        with warnings.catch_warnings():  # an all-NaN column warns; it becomes 0 below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(x, 0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        filled = np.where(np.isfinite(x), x, mean)
        std = filled.std(0)
        self.mean_, self.keep_ = mean, std > 1e-12 * np.maximum(1.0, np.abs(mean))
        self.scale_ = np.where(self.keep_, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = _as_matrix(x)
        if x.shape[1] != len(self.mean_):
            raise ValueError(f"expected {len(self.mean_)} features, got {x.shape[1]}")
        filled = np.where(np.isfinite(x), x, self.mean_)
        return ((filled - self.mean_) / self.scale_)[:, self.keep_]

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)


def standardise(x: np.ndarray) -> np.ndarray:
    """``x`` [n, d] standardised as described in the module docstring -> ``[n, d']`` (constant columns dropped)."""
    return Standardiser().fit_transform(x)


def _as_matrix(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2D array [n, d], got shape {list(x.shape)}")
    return x


class Projector:
    """A projection of feature rows to ``dim`` (2 or 3) coordinates, sklearn style.

    ``Projector("umap", 2, seed=0).fit(features).transform(new_features)``. ``params`` go to the
    underlying estimator (``n_neighbors``, ``min_dist`` for UMAP; ``perplexity`` for t-SNE). Small
    inputs are handled: PCA of ``n`` points has at most ``min(n, d)`` axes (missing ones are zero),
    t-SNE's perplexity and UMAP's ``n_neighbors`` are capped below ``n``.
    """

    def __init__(self, method: str = "umap", dim: int = 2, seed: int = 0, **params: Any):
        if method not in METHODS:
            raise ValueError(f"unknown projection method {method!r}; known: {', '.join(METHODS)}")
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        self.method, self.dim, self.seed, self.params = method, int(dim), int(seed), params

    def fit(self, features: np.ndarray) -> Projector:
        self.fit_transform(features)
        return self

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        """Fit on ``features`` [n, d] and return their coordinates ``[n, dim]``; ``fit_seconds_`` is the
        measured wall time of the fit."""
        start = time.perf_counter()
        try:
            return self._fit_transform(features)
        finally:
            self.fit_seconds_ = time.perf_counter() - start

    def _fit_transform(self, features: np.ndarray) -> np.ndarray:
        x = _as_matrix(features)
        if len(x) < 2:
            raise ValueError(f"a projection needs at least 2 points, got {len(x)}")
        self.scaler_ = Standardiser().fit(x)
        z = self.scaler_.transform(x)
        n, d = z.shape
        if d == 0:  # every feature constant: all points coincide
            self.model_, self.embedding_ = None, np.zeros((n, self.dim))
            return self.embedding_
        if self.method == "pca":
            from sklearn.decomposition import PCA

            self.model_ = PCA(n_components=min(self.dim, n, d), random_state=self.seed, **self.params)
            self.embedding_ = self._pad(self.model_.fit_transform(z))
        elif self.method == "tsne":
            self.model_, self.embedding_ = _tsne(z, self.dim, self.seed, self.params)
        else:
            self.model_ = _umap(self.dim, self.seed, n, self.params)
            self.embedding_ = self.model_.fit_transform(z)
        return self.embedding_

    def _pad(self, y: np.ndarray) -> np.ndarray:
        return np.pad(y, ((0, 0), (0, self.dim - y.shape[1]))) if y.shape[1] < self.dim else y

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Coordinates ``[m, dim]`` of new rows in the fitted map (PCA, UMAP, openTSNE's t-SNE).
        scikit-learn's t-SNE raises ``NotImplementedError``: it has no out-of-sample mapping (refit on all
        points instead, or install openTSNE)."""
        if not hasattr(self, "scaler_"):
            raise ValueError("fit the projector before transforming")
        if self.method == "tsne" and not hasattr(self.model_, "transform"):
            raise NotImplementedError("scikit-learn's t-SNE cannot place new points in an existing map; fit on "
                                      "all points, or install openTSNE")
        z = self.scaler_.transform(features)
        if self.model_ is None:
            return np.zeros((len(z), self.dim))
        return self._pad(self.model_.transform(z)) if self.method == "pca" else np.asarray(self.model_.transform(z))

    @property
    def explained_variance_ratio(self) -> np.ndarray | None:
        """PCA only: the fraction of (standardised) variance each axis explains."""
        return getattr(self.model_, "explained_variance_ratio_", None) if self.method == "pca" else None


def _tsne(z: np.ndarray, dim: int, seed: int, params: dict[str, Any]) -> tuple[Any, np.ndarray]:
    """A t-SNE fit of the standardised ``z`` [n, d]: (the fitted model, its coordinates [n, dim])."""
    perplexity = min(30.0, (len(z) - 1) / 3)
    if tsne_backend() == "openTSNE":
        from openTSNE import TSNE

        # FFT-interpolated gradients cost about the same at any size (worth it from ~10,000 points, in 1-2
        # dimensions only); Barnes-Hut serves smaller and 3-D maps
        fft = dim <= 2 and len(z) >= 10_000
        options = {"perplexity": perplexity, "initialization": "pca", "n_jobs": 1,
                   "negative_gradient_method": "fft" if fft else "bh", **params}
        embedding = TSNE(n_components=dim, random_state=seed, **options).fit(z)
        return embedding, np.asarray(embedding)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    options = {"perplexity": perplexity, "init": "pca", "max_iter": TSNE_ITERATIONS, **params}
    model = TSNE(n_components=dim, random_state=seed, **options)
    # one OpenMP thread: on a busy two-core machine its threads spin-wait on each other (moons-mlp stats,
    # 1,120 points, load 13: 17-18 s, against 97-101 s with every thread and 1,000 iterations;
    # benchmarks/bench_projection.py)
    with threadpool_limits(1):
        return model, model.fit_transform(z)


def _umap(dim: int, seed: int, n: int, params: dict[str, Any]):
    import umap

    params = {"n_neighbors": min(15, n - 1), **params}
    # n_jobs=1: a fixed random_state makes UMAP single-threaded anyway, and says so in a warning otherwise.
    return umap.UMAP(n_components=dim, random_state=seed, n_jobs=1, **params)


def project(features: np.ndarray, method: str = "umap", dim: int = 2, seed: int = 0, **params: Any) -> np.ndarray:
    """Coordinates ``[n, dim]`` of the rows of ``features`` [n, d] by ``method`` (``pca``, ``tsne``,
    ``umap``), after standardisation (see the module docstring). Deterministic for a ``seed``."""
    return Projector(method, dim, seed, **params).fit_transform(features)


def cache_key(fingerprint: str, kind: str, method: str, dim: int, seed: int, **params: Any) -> str:
    """A short stable key for one projection of one zoo's feature set (for on-disk or page caches); the
    t-SNE backend is part of it, since openTSNE and scikit-learn draw different maps."""
    backend = tsne_backend() if method == "tsne" else ""
    text = repr((fingerprint, kind, method, int(dim), int(seed), backend, sorted(params.items())))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


SUBSAMPLE_THRESHOLD = 5000
"""Zoos with more checkpoints than this are projected on a subsample by default (:func:`subsample_rows`)."""


def subsample_rows(zoo: Zoo, n_keep: int, seed: int = 0) -> np.ndarray:
    """Sorted rows of at most about ``n_keep`` checkpoints to project: every model's final checkpoint (the map's
    anchors), the rest drawn at random with ``seed``. Projecting tens of thousands of points takes long."""
    rows = np.arange(zoo.n_checkpoints)
    final = np.sort(zoo.final_index())
    rest = np.setdiff1d(rows, final)
    extra = np.random.default_rng(seed).choice(rest, max(0, min(len(rest), n_keep - len(final))), replace=False)
    return np.sort(np.concatenate([final, extra]))


def rows_digest(rows: np.ndarray) -> str:
    """A short digest of a set of row indices (which checkpoints a projection was fitted on)."""
    return hashlib.sha1(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Projection:
    """A fitted map: ``coords`` [n, dim], PCA's explained variance ratios (None for t-SNE, UMAP), the
    measured seconds of the fit, and whether it was read back from disk rather than fitted now."""

    coords: np.ndarray
    explained_variance_ratio: np.ndarray | None
    fit_seconds: float
    from_disk: bool = False


class ProjectionStore:
    """Fitted projections kept on disk, one ``<key>.npz`` per projection in ``folder`` (created when the
    first is saved). A store that cannot be written (a read-only disk) keeps nothing and says so through
    :meth:`save`'s return value; a damaged file reads as missing."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def load(self, key: str) -> Projection | None:
        """The projection stored under ``key``, or None."""
        path = self.folder / f"{key}.npz"
        try:
            with np.load(path) as data:
                evr = data["explained_variance_ratio"]
                return Projection(data["coords"], evr if evr.size else None, float(data["fit_seconds"]), True)
        except (OSError, KeyError, ValueError):
            return None

    def save(self, key: str, projection: Projection) -> bool:
        """Store ``projection`` under ``key`` (written to a temporary file, then renamed, so that a reader
        never sees half a file); False when the folder is not writable."""
        evr = projection.explained_variance_ratio
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.{threading.get_ident()}.npz"
            np.savez(tmp, coords=projection.coords, fit_seconds=projection.fit_seconds,
                     explained_variance_ratio=np.asarray([] if evr is None else evr, dtype=float))
            tmp.replace(self.folder / f"{key}.npz")
        except OSError:
            return False
        return True


def load_or_fit(features: Callable[[], np.ndarray], method: str, dim: int, seed: int,
                store: ProjectionStore | None = None, key: str | None = None, **params: Any) -> Projection:
    """The projection stored under ``key`` in ``store``, or one fitted now on ``features()`` [n, d] (called
    only when needed: computing features may itself be slow) and stored there."""
    if store is not None and key is not None:
        hit = store.load(key)
        if hit is not None:
            return hit
    proj = Projector(method, dim, seed, **params)
    coords = proj.fit_transform(features())
    out = Projection(coords, proj.explained_variance_ratio, proj.fit_seconds_)
    if store is not None and key is not None:
        store.save(key, out)
    return out


_WARM = threading.Event()
_WARM_LOCK = threading.Lock()


_WARM_TIMES: dict[str, float] = {}


def warm_up_umap() -> None:
    """Fit UMAP once on a tiny random input so numba compiles its kernels now (once per process; how long
    it took is measured: :func:`umap_warm_up_seconds`)."""
    with _WARM_LOCK:
        if _WARM.is_set():
            return
        _WARM_TIMES["start"] = time.perf_counter()
        x = np.random.default_rng(0).normal(size=(64, 4))
        _umap(2, 0, len(x), {}).fit_transform(x)
        _WARM_TIMES["seconds"] = time.perf_counter() - _WARM_TIMES["start"]
        _WARM.set()


def umap_ready() -> bool:
    """Whether :func:`warm_up_umap` has finished in this process."""
    return _WARM.is_set()


def umap_warm_up_seconds() -> tuple[float | None, float | None]:
    """``(seconds the warm-up took, seconds it has been running)``: the first once it finished, the
    second while it runs (None where not applicable)."""
    if "seconds" in _WARM_TIMES:
        return _WARM_TIMES["seconds"], None
    if "start" in _WARM_TIMES:
        return None, time.perf_counter() - _WARM_TIMES["start"]
    return None, None


def warm_up_umap_in_background() -> threading.Thread | None:
    """Start :func:`warm_up_umap` in a daemon thread (once per process); returns the thread or None."""
    if _WARM.is_set() or _WARM_LOCK.locked():
        return None
    thread = threading.Thread(target=warm_up_umap, name="wslviz-umap-warmup", daemon=True)
    thread.start()
    return thread
