"""Retrieval: nearest neighbours of a checkpoint in a feature space, and whether weight-space
neighbours are also function-space neighbours.

Function-space similarity of two models is measured on test inputs, two ways:

* **prediction agreement**: the fraction of test inputs on which both predict the same class;
* **linear CKA** of their last hidden representations (Kornblith et al., "Similarity of Neural Network
  Representations Revisited", ICML 2019): ``<K_a, K_b>_F / (||K_a||_F ||K_b||_F)`` with ``K = X X^T``
  the Gram matrix of the centred activations ``X`` [n_inputs, n_units]. Invariant to permutations
  (and any orthogonal transform) of the units, so it compares what two models compute, not their bases.

:func:`retrieval_benchmark` scores each feature space by precision@k: for each query model, the share
of its k nearest neighbours in that feature space that are also among its k most similar models in
function space. Raw flat weights do poorly (a permuted copy of a model is far from it); aligned and
symmetry-invariant features do better.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import forward
from wslviz.core.layout import ACTIVATIONS
from wslviz.core.memory import is_file_mapped, release
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.zoo import Zoo
from wslviz.represent.features import FeatureError, compute_features
from wslviz.represent.projection import standardise

Progress = Callable[[int, int], None] | None
FUNCTIONS = ("agreement", "cka")


def distance_matrix(features: np.ndarray) -> np.ndarray:
    """Euclidean distances ``[n, n]`` between rows of ``features`` [n, d] after standardisation
    (:func:`wslviz.represent.projection.standardise`)."""
    z = torch.as_tensor(standardise(features))
    return torch.cdist(z, z).numpy()


BLOCK_VALUES = 2**22
"""Feature values standardised at once by :func:`nearest_neighbours` (the ``flat`` features of 16 ResNet-18s are
187M: a float64 copy of them all, and its temporaries, took gigabytes; a block of 4M takes tens of megabytes)."""


def nearest_neighbours(features: np.ndarray, row: int, k: int = 10, groups: Sequence | np.ndarray | None = None
                       ) -> pd.DataFrame:
    """The ``k`` rows of ``features`` [n, d] closest to row ``row`` (itself excluded), nearest first:
    DataFrame with columns ``row``, ``distance`` (standardised Euclidean). With ``groups`` (one label per
    row, e.g. the model id), rows of the query's own group are excluded too: other epochs of the same
    training run are trivially close and would crowd out the other models."""
    if not 0 <= row < len(features):
        raise ValueError(f"row {row} is outside the {len(features)} feature rows")
    d = np.zeros(len(features))
    block = max(1, BLOCK_VALUES // len(features))  # columns standardised at a time: statistics are per column
    mapped = isinstance(features, np.ndarray) and is_file_mapped(features)  # flat features of a mapped zoo
    for start in range(0, features.shape[1], block):
        z = standardise(features[:, start:start + block])
        d += ((z - z[row]) ** 2).sum(1)
        for r in range(len(features)) if mapped else ():  # each row's part of the block handed back
            release(features[r, start:start + block])
    d = np.sqrt(d)
    excluded = np.zeros(len(features), dtype=bool)
    excluded[row] = True
    if groups is not None:
        groups = np.asarray(groups)
        excluded |= groups == groups[row]
    d[excluded] = np.inf
    order = np.argsort(d, kind="stable")[: min(k, int((~excluded).sum()))]
    return pd.DataFrame({"row": order, "distance": d[order]})


def neighbour_table(features: np.ndarray, meta: pd.DataFrame, row: int, k: int = 10,
                    exclude_same_model: bool = True, model_col: str = "model_id") -> pd.DataFrame:
    """The ``k`` nearest checkpoints to ``row`` in the feature space ``features`` [n, d] with their metadata
    (``meta``: one row per feature row): columns ``row``, ``distance`` and ``meta``'s, nearest first.

    ``exclude_same_model`` (the default) leaves out the other checkpoints of the query's training run
    (same ``model_col``): they are trivially close and would fill the table."""
    groups = meta[model_col].to_numpy() if exclude_same_model and model_col in meta else None
    found = nearest_neighbours(features, row, k, groups)
    rest = meta.iloc[found["row"].to_numpy()].reset_index(drop=True)
    return pd.concat([found, rest.drop(columns=[c for c in ("row", "distance") if c in rest])], axis=1)


def hidden_layer(arch: ArchitectureLike) -> int | None:
    """Index of the last activation layer before the last parametric layer (the penultimate
    representation), or None for a network without one."""
    last = max((i for i, layer in enumerate(arch.layers) if layer["type"] in ("linear", "conv2d")), default=None)
    if last is None:
        return None
    acts = [i for i, layer in enumerate(arch.layers[:last]) if layer["type"] in ACTIVATIONS]
    return acts[-1] if acts else None


@torch.no_grad()
def function_similarity(zoo: Zoo, rows: Sequence[int] | np.ndarray, measure: str = "agreement", n_inputs: int = 256,
                        chunk: int = 64, progress: Progress = None) -> np.ndarray:
    """Function-space similarity ``[n, n]`` of the checkpoints ``rows`` on the task's test inputs (the first
    ``n_inputs``): ``"agreement"`` (fraction of equal predictions) or ``"cka"`` (linear CKA of the last hidden
    layer; of the outputs when there is none)."""
    if measure not in FUNCTIONS:
        raise ValueError(f"unknown function similarity {measure!r}; known: {', '.join(FUNCTIONS)}")
    if zoo.task is None:
        raise ValueError("function-space similarity needs test data, and this zoo has no task")
    rows = np.asarray(rows, dtype=np.int64)
    x = zoo.task.x_test[:n_inputs]
    layer = hidden_layer(zoo.arch) if measure == "cka" else None
    parts = []
    for start in range(0, len(rows), chunk):
        w = zoo.weights[torch.as_tensor(rows[start:start + chunk])].float()
        out, captured = forward(zoo.arch, w, x, capture={layer} if layer is not None else frozenset())
        if measure == "agreement":
            parts.append(out.argmax(-1))
        else:
            h = (captured[layer] if layer is not None else out).flatten(2).double()  # [B, N, F]
            h = h - h.mean(1, keepdim=True)
            gram = h @ h.transpose(1, 2)  # [B, N, N]
            gram = gram.flatten(1)
            parts.append(gram / gram.norm(dim=1, keepdim=True).clamp_min(1e-30))
        if progress:
            progress(min(start + chunk, len(rows)), len(rows))
    if measure == "agreement":
        pred = torch.cat(parts)  # [n, N]
        n_classes = int(pred.max()) + 1
        onehot = torch.nn.functional.one_hot(pred, n_classes).flatten(1).float()
        return (onehot @ onehot.T / len(x)).numpy()
    g = torch.cat(parts)
    return (g @ g.T).numpy()


def _neighbour_sets(order_key: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of its ``k`` smallest entries of ``order_key`` [n, n], the diagonal excluded."""
    key = order_key.astype(float).copy()
    np.fill_diagonal(key, np.inf)
    return np.argsort(key, axis=1, kind="stable")[:, :k]


def precision_at_k(distances: np.ndarray, similarity: np.ndarray, k: int = 10) -> float:
    """Mean over rows of ``|kNN by distances ∩ kNN by similarity| / k`` (both ``[n, n]``, self excluded)."""
    n = len(distances)
    k = min(k, n - 1)
    if k < 1:
        raise ValueError("precision@k needs at least 2 models")
    a, b = _neighbour_sets(distances, k), _neighbour_sets(-similarity, k)
    hits = [len(np.intersect1d(a[i], b[i], assume_unique=True)) for i in range(n)]
    return float(np.mean(hits) / k)


def retrieval_benchmark(
    zoo: Zoo,
    kinds: Sequence[str] = ("flat", "aligned", "stats", "spectral", "functional"),
    k: int = 10,
    rows: str | Sequence[int] | np.ndarray = "final",
    functions: Sequence[str] = FUNCTIONS,
    features: dict[str, np.ndarray] | None = None,
    progress: Progress = None,
) -> pd.DataFrame:
    """Precision@k of each feature space's neighbours against each function-space similarity.

    ``rows``: ``"final"`` (each model's last checkpoint, the default: checkpoints of one run would be
    trivially near each other) or row indices. ``features``: optional precomputed ``kind -> [n_checkpoints, d]``.
    Returns a DataFrame with columns ``features, function, precision_at_k, k, n`` and, per function,
    a ``random`` row: the expected precision of random neighbours, ``k / (n - 1)``."""
    index = np.sort(zoo.final_index()) if isinstance(rows, str) and rows == "final" else np.asarray(rows, np.int64)
    n = len(index)
    if n < 3:
        raise ValueError(f"retrieval needs at least 3 models, got {n}")
    k = min(k, n - 1)
    sims = {fn: function_similarity(zoo, index, fn) for fn in functions}
    records = []
    for i, kind in enumerate(kinds):
        try:
            x = features[kind] if features is not None and kind in features else compute_features(zoo, kind)
        except FeatureError:
            continue
        dist = distance_matrix(np.asarray(x, dtype=float)[index])
        for fn, sim in sims.items():
            records.append({"features": kind, "function": fn, "precision_at_k": precision_at_k(dist, sim, k),
                            "k": k, "n": n})
        if progress:
            progress(i + 1, len(kinds))
    for fn in sims:
        records.append({"features": "random", "function": fn, "precision_at_k": k / (n - 1), "k": k, "n": n})
    return pd.DataFrame(records)
