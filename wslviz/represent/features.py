"""Per-checkpoint feature sets: one row of numbers per model, to project, predict from and search with.

Kinds (:data:`KINDS`), all ``zoo -> numpy [n_checkpoints, n_features]``:

``flat``
    The raw weight vector. Not invariant to the network's symmetries: two models computing the same
    function can lie far apart (a permuted copy is a different point).
``aligned``
    The weight vector after aligning every model to one reference (weight matching, Git Re-Basin;
    :func:`wslviz.understand.align.align_zoo`); by default the reference is the final checkpoint with the best test
    accuracy. Removes most of the permutation (and scale) freedom.
``stats``
    Per weight and bias tensor: mean, standard deviation and the 0/25/50/75/100 % quantiles
    (Unterthiner et al., "Predicting Neural Network Accuracy from Weights", 2020). Invariant to
    permutations by construction.
``spectral``
    Per linear/conv layer, from the singular values of the weight matrix ``[out, in*k*k]``: spectral
    norm, stable rank ``sum(s^2) / max(s)^2`` and the power-law exponent ``alpha`` of the tail of the
    eigenvalue spectrum ``s^2`` (Martin & Mahoney, "Implicit Self-Regularization in Deep Neural
    Networks", JMLR 2021). ``alpha`` is only fitted where a layer has at least
    :data:`MIN_SINGULAR_VALUES` singular values: with fewer, a tail fit is meaningless, so the value is
    NaN and the layer's ``alpha_fitted`` flag column is 0. Invariant to permutations.
``functional``
    Class probabilities (softmax outputs; raw outputs for regression) on a fixed probe set drawn from
    the task's test inputs: two models computing the same function get the same features, whatever
    their weights. Needs a task.
``invariant``
    What the architecture's own continuous symmetry leaves unchanged, where it has one
    (``arch.has_invariants``): for LoRA adapters, per module the singular values of ``delta_W = B A``, its norm,
    its share of the adapter's energy and its canonical factors
    (:meth:`wslviz.core.lora.LoraArchitecture.invariant_features`; the spectra are the DSiRe features of Salama
    et al. 2024), which no GL(r) element moves, where raw ``A`` and ``B`` move freely.
``learned``
    The latent code of a hyper-representation (:class:`wslviz.represent.hyperrep.HyperRepresentation`): an
    autoencoder over weights trained with permutation augmentation and a contrastive loss (Schürholt et
    al., NeurIPS 2021).

Everything is batched over checkpoints (chunks of ``[B, numel]`` tensors); ``progress(done, total)``
is called after each chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wslviz.core.evaluation import model_outputs
from wslviz.core.memory import is_file_mapped, release
from wslviz.core.protocol import ArchitectureLike, knows_symmetries
from wslviz.core.zoo import Zoo, reference_row
from wslviz.represent.hyperrep import HyperRepresentation
from wslviz.understand.align import align_zoo

Progress = Callable[[int, int], None] | None

KINDS = ("flat", "aligned", "stats", "spectral", "functional", "invariant", "learned")
DESCRIPTIONS = {
    "flat": "raw weight vector",
    "aligned": "weights aligned to a reference model (weight matching)",
    "stats": "per-tensor mean, std and quantiles (Unterthiner et al. 2020)",
    "spectral": "per-layer spectral norm, stable rank, power-law alpha",
    "functional": "probabilities on a fixed probe set",
    "invariant": "invariants of the architecture's symmetry (LoRA: singular values of delta_W = B A)",
    "learned": "hyper-representation latent code (Schürholt et al. 2021)",
}
STAT_NAMES = ("mean", "std", "q0", "q25", "q50", "q75", "q100")
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
MIN_SINGULAR_VALUES = 50
"""Layers with fewer singular values get no power-law fit (NaN, flagged)."""
CHUNK_ELEMENTS = 2**22
"""Elements of the weight matrix processed per chunk (16 MiB of float32)."""


class FeatureError(ValueError):
    """A feature set that cannot be computed for this zoo (e.g. ``functional`` without a task)."""


@dataclass
class FeatureSet:
    """A feature matrix with its column names: ``values`` float ``[n_checkpoints, n_features]`` (float32 for
    ``flat`` and ``aligned``, read-only for ``flat``: the zoo's own weights)."""

    kind: str
    values: np.ndarray
    names: Sequence[str]


class ParameterNames(Sequence[str]):
    """The names ``"{tensor}[{i}]"`` of an architecture's parameters in layout order, each made when asked (as a
    list, GPT-2-small's would be 124M strings)."""

    def __init__(self, arch: ArchitectureLike):
        self.tensors = [p.name for p in arch.layout]
        self.starts = np.cumsum([0] + [p.numel for p in arch.layout])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index):  # an int or a slice, as for a list
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError(f"parameter {index} of {len(self)}")
        t = int(np.searchsorted(self.starts, i, side="right")) - 1
        return f"{self.tensors[t]}[{i - int(self.starts[t])}]"

    def __eq__(self, other: object) -> bool:  # equal to the list of the same names, as a list would be
        if isinstance(other, ParameterNames):
            return self.tensors == other.tensors and np.array_equal(self.starts, other.starts)
        return isinstance(other, Sequence) and len(other) == len(self) and all(
            a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  (mutable-sequence semantics, as a list)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise FeatureError(f"unknown feature kind {kind!r}; known: {', '.join(KINDS)}")


def _chunks(n_rows: int, row_elements: int) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of about :data:`CHUNK_ELEMENTS` elements each."""
    step = max(1, CHUNK_ELEMENTS // max(row_elements, 1))
    return [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


def _passes(weights: torch.Tensor, row_elements: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, stop, rows as float32)`` per chunk of :func:`_chunks`; the pages of a memory-mapped matrix are
    handed back after each chunk (:func:`wslviz.core.memory.release`), so that a pass holds one chunk."""
    mapped = is_file_mapped(weights)
    for start, stop in _chunks(len(weights), row_elements):
        yield start, stop, weights[start:stop].float()
        if mapped:
            release(weights[start:stop])


def _report(progress: Progress, done: int, total: int) -> None:
    if progress:
        progress(min(done, total), total)


# ---------------------------------------------------------------------------------------------- stats
def stats_names(arch: ArchitectureLike) -> list[str]:
    """Column names of the ``stats`` features: ``"{tensor}.{stat}"`` per trainable tensor."""
    return [f"{p.name}.{s}" for p in arch.layout if p.trainable for s in STAT_NAMES]


def row_quantiles(t: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Quantiles ``q`` [K] of every row of ``t`` [B, n] -> ``[B, K]``, interpolated linearly between order statistics
    (numpy's default), exactly. Selects the order statistics needed (``np.partition``, linear time: 4x faster than a
    sort on a GPT-2 embedding's 38.6M values) instead of calling ``torch.quantile``, which refuses rows of more than
    2^24 values."""
    pos = q.double() * (t.shape[1] - 1)
    lo, hi = pos.floor().long(), pos.ceil().long()
    ranks = torch.cat([lo, hi]).unique()
    picked = torch.from_numpy(np.partition(t.detach().cpu().numpy(), ranks.numpy(), axis=1)[:, ranks.numpy()])
    at = {int(r): i for i, r in enumerate(ranks)}
    low = picked[:, [at[int(r)] for r in lo]]
    high = picked[:, [at[int(r)] for r in hi]]
    return (low + (high - low) * (pos - lo).to(low.dtype)).to(t.dtype)


def weight_stats(arch: ArchitectureLike, weights: torch.Tensor, progress: Progress = None) -> np.ndarray:
    """``stats`` features of ``weights`` [B, P] -> float64 ``[B, 7 * n_tensors]`` (see :func:`stats_names`).

    Per trainable tensor: mean, standard deviation (population) and the 0/25/50/75/100 % quantiles,
    computed for a chunk of models at once on its ``[B, numel]`` slice."""
    tensors = [p for p in arch.layout if p.trainable]
    out = np.empty((len(weights), len(tensors) * len(STAT_NAMES)))
    q = torch.tensor(QUANTILES, dtype=torch.float32)
    for start, stop, w in _passes(weights, arch.n_params):
        cols = []
        for p in tensors:
            t = w[:, p.slice]
            mean = t.mean(1, keepdim=True)
            std = t.std(1, correction=0, keepdim=True)
            quant = row_quantiles(t, q)
            cols.append(torch.cat([mean, std, quant], 1))
        out[start:stop] = torch.cat(cols, 1).double().numpy()
        _report(progress, stop, len(weights))
    return out


# ---------------------------------------------------------------------------------------------- spectral
def _matrices(arch: ArchitectureLike) -> list[Any]:
    return [p for p in arch.layout if p.role == "weight" and len(p.shape) in (2, 4)]


def spectral_names(arch: ArchitectureLike) -> list[str]:
    """Column names of the ``spectral`` features, per linear/conv weight matrix."""
    names = []
    for p in _matrices(arch):
        names += [f"{p.name}.spectral_norm", f"{p.name}.stable_rank", f"{p.name}.alpha", f"{p.name}.alpha_fitted"]
    return names


def powerlaw_alpha(eigenvalues: torch.Tensor) -> torch.Tensor:
    """Maximum-likelihood power-law exponent of the upper half of each row of ``eigenvalues`` [B, n].

    With ``x_min`` the median eigenvalue, ``alpha = 1 + m / sum(log(x_i / x_min))`` over the ``m``
    eigenvalues ``>= x_min`` (the continuous power-law MLE of Clauset, Shalizi & Newman, SIAM Review
    2009, at a fixed ``x_min``; WeightWatcher fits ``x_min`` too, which costs a search per layer)."""
    ev = eigenvalues.sort(dim=1, descending=True).values.double()
    m = (ev.shape[1] + 1) // 2
    tail = ev[:, :m]
    xmin = tail[:, -1:].clamp_min(1e-30)
    logs = torch.log(tail.clamp_min(1e-30) / xmin).sum(1)
    return torch.where(logs > 0, 1 + m / logs.clamp_min(1e-30), torch.full_like(logs, float("nan")))


def singular_values(matrices: torch.Tensor) -> torch.Tensor:
    """Singular values ``[B, min(m, n)]`` (float64, descending) of ``matrices`` [B, m, n].

    Computed as square roots of the eigenvalues of the smaller Gram matrix in float64: for the small,
    wide layers of model zoos a batched ``eigvalsh`` of ``[B, m, m]`` ran 2-6x faster here than
    ``torch.linalg.svdvals`` of ``[B, m, n]``; float64 keeps the squared spectrum accurate."""
    a = matrices.double()
    gram = a @ a.transpose(1, 2) if a.shape[1] <= a.shape[2] else a.transpose(1, 2) @ a
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().flip(1)


def spectral_features(arch: ArchitectureLike, weights: torch.Tensor, progress: Progress = None,
                      min_singular_values: int = MIN_SINGULAR_VALUES) -> np.ndarray:
    """``spectral`` features of ``weights`` [B, P] -> float64 ``[B, 4 * n_layers]`` (see :func:`spectral_names`).

    One batched :func:`singular_values` per layer and chunk on ``[B, out, in*k*k]``."""
    mats = _matrices(arch)
    out = np.empty((len(weights), 4 * len(mats)))
    for start, stop, w in _passes(weights, arch.n_params):
        cols = []
        for p in mats:
            s = singular_values(w[:, p.slice].reshape(len(w), p.shape[0], -1))
            top = s[:, 0]
            norm = top.clamp_min(1e-30)
            stable = (s**2).sum(1) / norm**2
            fitted = s.shape[1] >= min_singular_values
            alpha = powerlaw_alpha(s**2) if fitted else torch.full_like(top, float("nan"))
            cols.append(torch.stack([top, stable, alpha, torch.full_like(top, float(fitted))], 1))
        out[start:stop] = torch.cat(cols, 1).numpy()
        _report(progress, stop, len(weights))
    return out


# ---------------------------------------------------------------------------------------------- functional
def probe_set(zoo: Zoo, n_probe: int = 128, seed: int = 0) -> torch.Tensor:
    """A fixed sample of ``n_probe`` test inputs of the zoo's task (deterministic for ``seed``)."""
    if zoo.task is None:
        raise FeatureError("functional features need evaluation data, and this zoo has no task: attach one "
                           "(zoo.with_task(...)) or use a weight-based feature kind (stats, spectral, flat)")
    x = zoo.task.x_test
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(x), generator=g)[: min(int(n_probe), len(x))].sort().values
    return x[idx]


def functional_features(zoo: Zoo, n_probe: int = 128, seed: int = 0, progress: Progress = None) -> np.ndarray:
    """Outputs on :func:`probe_set` -> ``[B, n_probe * n_outputs]``: class probabilities for classification,
    raw outputs for regression."""
    x = probe_set(zoo, n_probe, seed)
    out = model_outputs(zoo.arch, zoo.weights, x, progress=progress)
    if zoo.task.is_classification:
        out = torch.softmax(out, -1)
    return out.reshape(len(out), -1).double().numpy()


# ---------------------------------------------------------------------------------------------- aligned
def default_reference(zoo: Zoo) -> int:
    """The alignment reference row: the final checkpoint with the best test accuracy."""
    return reference_row(zoo)


def aligned_weights(zoo: Zoo, reference: int | None = None, method: str = "weight",
                    progress: Progress = None) -> torch.Tensor:
    """All checkpoints aligned to row ``reference`` (default :func:`default_reference`) -> ``[B, P]``."""
    if not knows_symmetries(zoo.arch):
        raise FeatureError(f"aligned features need the architecture's permutation symmetries, and "
                           f"{zoo.arch.describe()} has none derived: state the architecture to align")
    ref = default_reference(zoo) if reference is None else int(reference)
    if not 0 <= ref < zoo.n_checkpoints:
        raise FeatureError(f"reference row {ref} is outside the zoo's {zoo.n_checkpoints} checkpoints")
    return align_zoo(zoo.arch, zoo.weights.float(), zoo.weights[ref].float(), method=method, progress=progress,
                     task=zoo.task)


def _invariant_features(zoo: Zoo) -> np.ndarray:
    if not zoo.arch.has_invariants:
        raise FeatureError(f"{zoo.arch.describe()} has no continuous symmetry with invariant features")
    rows = [zoo.arch.invariant_features(zoo.weights[s:e].float())
            for s, e in _chunks(zoo.n_checkpoints, max(zoo.n_params, 1))]
    return np.concatenate(rows) if rows else np.zeros((0, len(zoo.arch.invariant_names())))


# ---------------------------------------------------------------------------------------------- dispatch
def available_kinds(zoo: Zoo) -> list[str]:
    """The kinds of :data:`KINDS` this zoo can compute: ``functional`` needs a task (and so a forward),
    ``aligned`` and ``learned`` need derivable permutation symmetries (not a weights-only layout)."""
    symmetric = knows_symmetries(zoo.arch)
    return [k for k in KINDS if (k != "functional" or zoo.task is not None)
            and (k not in ("aligned", "learned") or symmetric) and (k != "invariant" or zoo.arch.has_invariants)]


def feature_set(zoo: Zoo, kind: str = "stats", progress: Progress = None, **options: Any) -> FeatureSet:
    """Features of every checkpoint with their column names (see the module docstring for the kinds).

    Options: ``aligned``: ``reference`` (row), ``method`` ("weight"/"activation"); ``functional``:
    ``n_probe``, ``seed``; ``spectral``: ``min_singular_values``; ``learned``: any
    :class:`~wslviz.represent.hyperrep.HyperRepresentation` parameter (``latent_dim``, ``epochs``, ``random_state``)."""
    _check_kind(kind)
    if zoo.n_checkpoints == 0:
        raise FeatureError("the zoo has no checkpoints")
    if zoo.cache is not None:  # precomputed results attached by the layer above (wslviz.scale.cache)
        cached = zoo.cache.feature_set(zoo, kind, **options)
        if cached is not None:
            _report(progress, zoo.n_checkpoints, zoo.n_checkpoints)
            return cached
    arch = zoo.arch
    match kind:
        case "flat":
            values = zoo.weights.float().numpy().view()  # no copy: GPT-2's 124M columns stay in the zoo's matrix
            values.flags.writeable = False
            names = ParameterNames(arch)
            _report(progress, zoo.n_checkpoints, zoo.n_checkpoints)
        case "aligned":
            values = aligned_weights(zoo, progress=progress, **options).float().numpy()
            names = ParameterNames(arch)
        case "stats":
            values, names = weight_stats(arch, zoo.weights, progress), stats_names(arch)
        case "spectral":
            values, names = spectral_features(arch, zoo.weights, progress, **options), spectral_names(arch)
        case "invariant":
            values, names = _invariant_features(zoo), arch.invariant_names()
            _report(progress, zoo.n_checkpoints, zoo.n_checkpoints)
        case "functional":
            values = functional_features(zoo, progress=progress, **options)
            n_probe = len(probe_set(zoo, **{k: v for k, v in options.items() if k in ("n_probe", "seed")}))
            names = [f"probe{i}.out{j}" for i in range(n_probe) for j in range(values.shape[1] // n_probe)]
        case _:
            model = HyperRepresentation(**options).fit(zoo, progress=progress)
            values = np.asarray(model.transform(zoo.weights), dtype=float)
            names = [f"z{i}" for i in range(values.shape[1])]
    return FeatureSet(kind, values if values.dtype == np.float32 else np.asarray(values, dtype=float), names)


def compute_features(zoo: Zoo, kind: str = "stats", progress: Progress = None, **options: Any) -> np.ndarray:
    """Features of every checkpoint -> numpy ``[n_checkpoints, n_features]``.

    ``kind`` is one of :data:`KINDS` (``flat``, ``aligned``, ``stats``, ``spectral``, ``functional``,
    ``learned``; see the module docstring). Column names: :func:`feature_names` or :func:`feature_set`.
    Raises :class:`FeatureError` for an unknown kind or a ``functional`` request on a zoo without a task."""
    return feature_set(zoo, kind, progress, **options).values


def feature_names(zoo: Zoo, kind: str = "stats", **options: Any) -> Sequence[str]:
    """Column names of ``compute_features(zoo, kind)`` (cheap for every kind but ``learned``)."""
    _check_kind(kind)
    match kind:
        case "flat" | "aligned":
            return ParameterNames(zoo.arch)
        case "stats":
            return stats_names(zoo.arch)
        case "spectral":
            return spectral_names(zoo.arch)
        case "functional":
            return feature_set(zoo.subset([0]), kind, **options).names
        case "invariant":
            return zoo.arch.invariant_names()
        case _:
            return feature_set(zoo, kind, **options).names
