"""Evaluation data sets and their losses.

A task is described by a JSON-able spec (stored in ``zoo.json``) and rebuilt deterministically from
it: ``{"name": "moons", "n_samples": 1000, "noise": 0.2, "seed": 0, "test_fraction": 0.3}``.
Built-in names: ``moons``, ``circles``, ``spirals`` (2D, so decision boundaries can be drawn),
``digits`` (scikit-learn's 8x8 handwritten digits, shipped with the package, as ``[1, 8, 8]`` images
scaled to [0, 1]), ``modadd`` (``a + b mod p`` as three tokens, for small transformers; half the ``p^2``
problems are held out by default), ``tokenmax`` (``max(a, b)`` on the same tokens) and ``npz`` (user data: a
``.npz`` file with arrays ``x`` and ``y``; integer ``y`` means classification, float ``y`` regression).

Digits come in related variants for fine-tuning and merging (:data:`DIGITS_VARIANTS`):
``{"name": "digits", "variant": "rotate90"}`` is the same split of the same images, each rotated; a list of
variants (``"variant": ["original", "rotate90"]``) concatenates them, so accuracy on it is the average
accuracy over those tasks (every variant has the same number of test images). ``"holdout": 0.2`` turns the
last fifth of the training split into the test split: a validation split that never touches the test data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

TASK_NAMES = ("moons", "circles", "spirals", "digits", "modadd", "tokenmax", "npz")
DIGITS_VARIANTS = ("original", "rotate90", "mirror", "invert", "noise")
"""Related digit tasks: the images as they are, rotated by 90 degrees, mirrored left to right, inverted
(``1 - x``), and with Gaussian noise (std 0.3, fixed draw, clipped to [0, 1]). Labels are unchanged."""


class TaskError(ValueError):
    """A task spec or data file that cannot be used."""


@dataclass
class Task:
    """Train/test tensors and the loss. ``x_*``: float32 ``[N, *input_shape]``; ``y_*``: int64 ``[N]``
    for classification, float32 ``[N, out]`` for regression."""

    name: str
    spec: dict[str, Any]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    kind: str = "classification"
    n_classes: int = 0
    class_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    @property
    def is_2d(self) -> bool:
        return self.input_shape == (2,)

    def split(self, which: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        if which not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {which!r}")
        return (self.x_train, self.y_train) if which == "train" else (self.x_test, self.y_test)

    def loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss per model: ``outputs [B, N, out]``, ``y [N]`` -> ``[B]``."""
        if self.kind == "classification":
            # cross-entropy as logsumexp minus the true class's logit: equal to F.cross_entropy and ~4x
            # faster on [B*N, 10] logits (its log_softmax kernel is slow for few classes)
            target = outputs.gather(-1, y.view(1, -1, 1).expand(outputs.shape[0], -1, 1)).squeeze(-1)
            return (torch.logsumexp(outputs, -1) - target).mean(1)
        return ((outputs - y.view(1, *y.shape).to(outputs.dtype)) ** 2).flatten(1).mean(1)

    def loss_and_correct(self, outputs: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(self.loss(outputs, y), self.correct(outputs, y))`` sharing one max over the classes.

        A prediction is correct when the true class's logit is the maximum and no earlier class ties
        with it, which is exactly ``argmax == y`` (argmax returns the first maximum) without argmax's
        slow kernel for few classes."""
        if self.kind != "classification":
            return self.loss(outputs, y), self.correct(outputs, y)
        b = outputs.shape[0]
        top = outputs.amax(-1, keepdim=True)  # [B, N, 1]
        target = outputs.gather(-1, y.view(1, -1, 1).expand(b, -1, 1))
        shifted = torch.sub(outputs, top)  # exactly 0 where a logit equals its row's (finite) maximum
        n_top = int(torch.count_nonzero(shifted == 0))
        lse = shifted.exp_().sum(-1, keepdim=True).log_().add_(top)
        loss = (lse - target).squeeze(-1).mean(1)
        right = (target == top).squeeze(-1)
        # Ties are rare, so the test for an earlier tied class runs only when one is possible: when the maxima
        # do not number exactly one per row, or when a row's maximum is not finite (the loss is then NaN).
        if n_top != b * outputs.shape[1] or not bool(torch.isfinite(loss).all()):
            earlier = torch.arange(outputs.shape[-1]).view(1, 1, -1) < y.view(1, -1, 1)
            right &= ~((outputs == top) & earlier).any(-1)
        return loss, right.sum(1, dtype=torch.float32)

    def correct(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Number of correct predictions per model (classification), ``[B]``; zeros for regression."""
        if self.kind != "classification":
            return torch.zeros(outputs.shape[0])
        return (outputs.argmax(-1) == y.view(1, -1)).sum(1).to(torch.float32)


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _spirals(n: int, noise: float, n_classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    per = n // n_classes
    xs, ys = [], []
    for c in range(n_classes):
        r = np.linspace(0.05, 1.0, per)
        t = 3.5 * r + 2 * np.pi * c / n_classes + rng.normal(0, noise, per)
        xs.append(np.stack([r * np.cos(t), r * np.sin(t)], 1))
        ys.append(np.full(per, c))
    return np.concatenate(xs), np.concatenate(ys)


DEFAULTS: dict[str, dict[str, Any]] = {
    "moons": {"n_samples": 1000, "noise": 0.2},
    "circles": {"n_samples": 1000, "noise": 0.1, "factor": 0.5},
    "spirals": {"n_samples": 1200, "noise": 0.15, "n_classes": 3},
    "digits": {},
    "modadd": {"p": 23, "test_fraction": 0.5},
    "tokenmax": {"p": 23, "test_fraction": 0.5},
    "npz": {},
}


def make_task(spec: dict[str, Any] | str) -> Task:
    """Build a task from its spec (or just its name, with defaults). Deterministic for a spec."""
    if isinstance(spec, str):
        spec = {"name": spec}
    name = spec.get("name")
    if name not in TASK_NAMES:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}")
    spec = {"seed": 0, "test_fraction": 0.3, **DEFAULTS[name], **spec}
    seed, tf = int(spec["seed"]), float(spec["test_fraction"])
    rng = np.random.default_rng(seed)
    kind, class_names = "classification", []
    if name == "moons":
        from sklearn.datasets import make_moons

        x, y = make_moons(int(spec["n_samples"]), noise=float(spec["noise"]), random_state=seed)
    elif name == "circles":
        from sklearn.datasets import make_circles

        x, y = make_circles(int(spec["n_samples"]), noise=float(spec["noise"]), factor=float(spec["factor"]),
                            random_state=seed)
    elif name == "spirals":
        x, y = _spirals(int(spec["n_samples"]), float(spec["noise"]), int(spec["n_classes"]), rng)
    elif name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = (d.data / 16.0).reshape(-1, 1, 8, 8), d.target
        class_names = [str(c) for c in range(10)]
    elif name in ("modadd", "tokenmax"):
        x, y = _two_token_problems(int(spec["p"]), name)
    else:
        x, y = load_npz(spec.get("path", ""))
        if y.dtype.kind == "f":
            kind = "regression"
    variants = spec.get("variant", "original")
    variants = [variants] if isinstance(variants, str) else list(variants)
    if name != "digits" and variants != ["original"]:
        raise TaskError(f"task variants exist for digits only, not {name!r}")
    parts = [_split(_digits_variant(np.asarray(x), v, seed), np.asarray(y), tf, seed) for v in variants]
    if "holdout" in spec:
        parts = [_holdout(p[0], p[1], float(spec["holdout"])) for p in parts]
    x_tr, y_tr, x_te, y_te = (np.concatenate([p[i] for p in parts]) for i in range(4))
    ydt = torch.float32 if kind == "regression" else torch.int64
    n_classes = int(np.max(y)) + 1 if kind == "classification" else 0
    return Task(
        name=name, spec=spec,
        x_train=torch.as_tensor(x_tr, dtype=torch.float32), y_train=torch.as_tensor(y_tr, dtype=ydt),
        x_test=torch.as_tensor(x_te, dtype=torch.float32), y_test=torch.as_tensor(y_te, dtype=ydt),
        kind=kind, n_classes=n_classes, class_names=class_names or [str(c) for c in range(n_classes)],
    )


def validation_split(task: Task, fraction: float = 0.2) -> Task:
    """``task`` with its training split cut in two: the first part for training, the last ``fraction`` as the
    "test" split. Use it to choose options (merge coefficients, generator settings, soup ingredients)
    without ever looking at the real test split."""
    return make_task({**task.spec, "holdout": fraction})


def _digits_variant(x: np.ndarray, variant: str, seed: int) -> np.ndarray:
    """Images ``x [N, 1, 8, 8]`` (in [0, 1]) as the digits ``variant`` shows them (see :data:`DIGITS_VARIANTS`)."""
    if variant == "original":
        return x
    if variant == "rotate90":
        return np.ascontiguousarray(np.rot90(x, 1, axes=(2, 3)))
    if variant == "mirror":
        return np.ascontiguousarray(x[..., ::-1])
    if variant == "invert":
        return 1.0 - x
    if variant == "noise":
        return np.clip(x + np.random.default_rng([seed, 1]).normal(0.0, 0.3, x.shape), 0.0, 1.0)
    raise TaskError(f"unknown digits variant {variant!r}; known: {', '.join(DIGITS_VARIANTS)}")


def _holdout(x: np.ndarray, y: np.ndarray, fraction: float):
    """A train split cut into (first part, last ``fraction``) as (train, test): a validation split."""
    if not 0 < fraction < 1:
        raise TaskError(f"holdout must be in (0, 1), got {fraction}")
    n = len(x) - int(round(len(x) * fraction))
    return x[:n], y[:n], x[n:], y[n:]


def _two_token_problems(p: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """All ``p * p`` problems on two tokens ``a, b < p`` as sequences ``[a, b, p]`` (``p`` is the "=" token;
    floats holding integers, ``[N, 3]``) with labels ``(a + b) mod p`` for ``modadd`` (Power et al., "Grokking",
    2022) or ``max(a, b)`` for ``tokenmax``."""
    if p < 2:
        raise TaskError(f"{name} needs p >= 2, got {p}")
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    x = np.stack([a.ravel(), b.ravel(), np.full(p * p, p)], 1).astype(np.float32)
    return x, (a.ravel() + b.ravel()) % p if name == "modadd" else np.maximum(a.ravel(), b.ravel())


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read user data ``x``, ``y`` from a ``.npz`` (no pickles). Raises :class:`TaskError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: no such data file")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data or "y" not in data:
                raise TaskError(f"{path}: a task .npz needs arrays 'x' and 'y', found {sorted(data.files)}")
            x, y = np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"])
    except TaskError:
        raise
    except Exception as e:  # numpy raises several types for a corrupt archive
        raise TaskError(f"{path}: not a readable .npz ({e})") from None
    if len(x) != len(y) or len(x) < 2:
        raise TaskError(f"{path}: x has {len(x)} rows and y {len(y)}; they must match and be at least 2")
    if y.dtype.kind in "iub":
        if y.min() < 0:
            raise TaskError(f"{path}: class labels must be >= 0")
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":
        y = y.astype(np.float32)
    else:
        raise TaskError(f"{path}: y has dtype {y.dtype}; use integers (classes) or floats (regression)")
    if not np.isfinite(x).all():
        raise TaskError(f"{path}: x contains NaN or Inf")
    return x, y
