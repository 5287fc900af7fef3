"""Scikit-learn-style estimators around the metanetworks: ``fit`` / ``predict`` / ``score``.

``MetanetClassifier(arch, model="nfn_np").fit(weights, labels)`` trains on CPU with AdamW and early
stopping on a held-out part of the training rows (grouped by ``groups`` when given, so checkpoints of one
model never sit on both sides), keeping the epoch with the best validation score. Models:

- ``nfn_np``: :class:`EquivariantMetanet` on NP objects (NFN's NP layers; Zhou et al., NeurIPS 2023);
- ``dws``: :class:`EquivariantMetanet` on HNP objects (DWSNets-style blocks; Navon et al., ICML 2023);
- ``flat_mlp``: :class:`FlatMLP` on the flat weights; ``flat_mlp_aug``: the same with permutation
  augmentation (every training batch sees each model under a fresh random permutation of its units).

Inputs are divided by one scale per parameter tensor (the tensor's standard deviation over the
training rows): a scalar per tensor commutes with every permutation, so equivariance is kept, and
layers whose weights differ by orders of magnitude (a SIREN's first and later layers) become
comparable. ``augment`` (``None``, ``"permutation"`` or ``"all"``: also the ReLU scale and odd-activation
sign symmetries) draws group elements with :func:`wslviz.understand.symmetry.random_symmetry` and
applies them with :func:`wslviz.understand.symmetry.apply_symmetry`: a no-op in distribution for
permutations under an invariant model, but it teaches it the scale/sign symmetries it is not built for.
``canonicalize`` instead removes those symmetries before the network sees the weights: each hidden unit is
sign-flipped so that its largest incoming weight is positive (odd activations: sin, tanh) and/or rescaled
to unit incoming norm (ReLU), with :func:`wslviz.understand.symmetry.canonicalize` (no sorting: the order
of units is left to the equivariant layers). Both rules read only a unit's own incoming weights, so they
commute with permutations: an equivariant metanetwork on canonicalised weights is invariant to the whole
group. ``"auto"`` canonicalises signs for the equivariant models (a SIREN's units start with random signs)
and nothing for the flat baselines. ``coordinate_augment`` (INRs only) also moves each training INR's image by
a random small rotation, zoom and shift, in weight space (:mod:`wslviz.represent.metanet.augment`).

Further levers (off by default): ``stats`` feeds the invariant head the per-tensor statistics as well (the
hybrid "metanetwork + stats"; :func:`wslviz.represent.metanet.models.tensor_stats`); ``schedule="cosine"``
anneals the learning rate to 0 over ``max_epochs``; ``n_ensemble`` trains that many networks from seeds
``random_state + k`` on the same early-stopping split and averages their outputs; ``rank_targets``
(regression) fits the ranks of the training targets and maps predictions back through their quantiles.
``val_rows_`` after ``fit`` are the rows held out for early stopping (for choosing settings on them).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from torch import nn

from wslviz.core.protocol import ArchitectureLike
from wslviz.represent.metanet.augment import coordinate_affine
from wslviz.represent.metanet.models import EquivariantMetanet, FlatMLP, tensor_stats
from wslviz.represent.metanet.weightspace import WeightSpace
from wslviz.understand.symmetry import SymmetryElement, apply_symmetry, canonicalize, random_symmetry

Progress = Callable[[int, int], None] | None
MODELS = ("nfn_np", "dws", "flat_mlp", "flat_mlp_aug")
MODEL_LABELS = {"nfn_np": "NFN-NP metanetwork", "dws": "DWSNets-style metanetwork", "flat_mlp": "MLP on flat weights",
                "flat_mlp_aug": "MLP on flat weights + permutation augmentation"}
AUGMENTS = (None, "permutation", "all")
SCHEDULES = ("constant", "cosine")
CANONICAL_KINDS = ("scale", "sign")
POOL_SIZE = 1024
"""Group elements drawn once per fit; each training row of each batch gets one of them at random."""


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the duration: a metanetwork's steps are many small kernels, and on a
    busy 2-core machine two threads made a fit of a tiny NP network 5x slower than one."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        yield
    finally:
        torch.set_num_threads(before)


def _as_tensor(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()


class _SymmetryPool:
    """:data:`POOL_SIZE` random group elements stacked per permutation group, to apply one per row."""

    def __init__(self, arch: ArchitectureLike, kinds: tuple[str, ...], seed: int):
        elements = [random_symmetry(arch, seed=seed * 1_000_003 + k, kinds=kinds) for k in range(POOL_SIZE)]
        self.arch = arch
        self.perms = [torch.stack([g.perms[i] for g in elements]) for i in range(len(arch.perm_spec.groups))]
        self.scales = [torch.stack([g.scales[i] for g in elements]) for i in range(len(arch.perm_spec.groups))]

    def apply(self, weights: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        pick = torch.randint(POOL_SIZE, (len(weights),), generator=gen)
        g = SymmetryElement([p[pick] for p in self.perms], [s[pick] for s in self.scales])
        return apply_symmetry(self.arch, weights, g)


class _Ensemble(nn.Module):
    """The mean output of ``members`` (each ``[B, P] -> [B, out_dim]``)."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(weights) for m in self.members]).mean(0)


class _MetanetBase(BaseEstimator):
    """Shared fitting loop; subclasses say how targets are encoded, what the loss is and what "better" means."""

    def __init__(self, arch: ArchitectureLike, model: str = "nfn_np", hidden: int = 32, depth: int = 3,
                 head_hidden: int = 64, augment: str | None = None, max_epochs: int = 100, patience: int = 15,
                 batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4, dropout: float = 0.0,
                 validation_fraction: float = 0.15, max_seconds: float | None = None,
                 canonicalize: str | tuple[str, ...] = "auto", coordinate_augment: bool = False,
                 stats: bool = False, schedule: str = "constant", n_ensemble: int = 1, rank_targets: bool = False,
                 random_state: int = 0, progress: Progress = None):
        self.arch = arch
        self.model = model
        self.hidden = hidden
        self.depth = depth
        self.head_hidden = head_hidden
        self.augment = augment
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.validation_fraction = validation_fraction
        self.max_seconds = max_seconds
        self.canonicalize = canonicalize
        self.coordinate_augment = coordinate_augment
        self.stats = stats
        self.schedule = schedule
        self.n_ensemble = n_ensemble
        self.rank_targets = rank_targets
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------ subclass hooks
    def _encode(self, y: np.ndarray) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _val_score(self, out: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
        """(primary, secondary) validation scores, larger is better."""
        raise NotImplementedError

    # ------------------------------------------------------------ fitting
    def _network(self, out_dim: int) -> nn.Module:
        if self.stats and self.model not in ("nfn_np", "dws"):
            raise ValueError("stats (the hybrid head) needs an equivariant metanetwork: nfn_np or dws")
        if self.model in ("nfn_np", "dws"):
            return EquivariantMetanet(WeightSpace(self.arch), "np" if self.model == "nfn_np" else "hnp", out_dim,
                                      hidden=self.hidden, depth=self.depth, head_hidden=self.head_hidden,
                                      dropout=self.dropout, stats=self.stats)
        if self.model in ("flat_mlp", "flat_mlp_aug"):
            return FlatMLP(self.arch.n_params, out_dim, hidden=8 * self.hidden, depth=2, dropout=self.dropout)
        raise ValueError(f"unknown metanetwork {self.model!r}; known: {', '.join(MODELS)}")

    def _augment_kinds(self) -> tuple[str, ...] | None:
        augment = "permutation" if self.model == "flat_mlp_aug" and self.augment is None else self.augment
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        if augment is None:
            return None
        return ("permutation",) if augment == "permutation" else ("permutation", "scale", "sign")

    def _canonical_kinds(self) -> tuple[str, ...]:
        if self.canonicalize == "auto":
            return ("sign",) if self.model in ("nfn_np", "dws") else ()
        kinds = (self.canonicalize,) if isinstance(self.canonicalize, str) else tuple(self.canonicalize)
        if not set(kinds) <= set(CANONICAL_KINDS):
            raise ValueError(f"canonicalize must be 'auto' or kinds among {CANONICAL_KINDS}, got {self.canonicalize!r}")
        return kinds

    def _canonical(self, x: torch.Tensor) -> torch.Tensor:
        """Weights ``x`` ``[N, P]`` with the ``canonicalize`` symmetries removed."""
        kinds = self._canonical_kinds()
        return canonicalize(self.arch, x, kinds=kinds) if kinds and self.arch.perm_spec.groups else x

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The network's input for weights ``x`` ``[N, P]``: canonicalised, divided by the tensor scales, and with
        the per-tensor statistics appended for a hybrid head (``stats``)."""
        x = self._canonical(x) / self.scale_
        return torch.cat([x, tensor_stats(WeightSpace(self.arch), x)], 1) if self.stats else x

    def _scale_of(self, x: torch.Tensor) -> torch.Tensor:
        """One divisor per parameter tensor, broadcast to ``[P]``: the tensor's std over the rows."""
        scale = torch.ones(x.shape[1])
        for p in self.arch.layout:
            s = float(x[:, p.slice].std()) if x.shape[0] * p.numel > 1 else 1.0
            scale[p.slice] = s if s > 1e-12 else 1.0
        return scale

    def fit(self, X: Any, y: Any, groups: Any = None) -> _MetanetBase:
        """Train on weights ``X`` ``[N, P]`` and targets ``y`` ``[N]``; ``groups`` ``[N]`` keeps rows of one group
        on one side of the early-stopping split. Returns ``self``."""
        from sklearn.model_selection import GroupShuffleSplit

        x = _as_tensor(X)
        if x.ndim != 2 or x.shape[1] != self.arch.n_params:
            raise ValueError(f"X must be [n, {self.arch.n_params}] weights of {self.arch.describe()}, "
                             f"got {list(x.shape)}")
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"{len(x)} weight rows but {len(y)} targets")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if int(self.n_ensemble) < 1:
            raise ValueError(f"n_ensemble must be at least 1, got {self.n_ensemble}")
        target, out_dim = self._encode(y)
        groups = np.arange(len(x)) if groups is None else np.asarray(groups)
        n_groups = len(np.unique(groups))
        if self.validation_fraction > 0 and n_groups >= 5:
            split = GroupShuffleSplit(n_splits=1, test_size=self.validation_fraction, random_state=self.random_state)
            train, val = next(split.split(np.zeros(len(x)), groups=groups))
        else:
            train, val = np.arange(len(x)), np.arange(0)
        self.val_rows_ = val
        self.scale_ = self._scale_of(self._canonical(x[train]))
        kinds = self._augment_kinds()
        n_members = int(self.n_ensemble)
        members, runs = [], []
        with torch.random.fork_rng(devices=[]), _one_thread():
            for k in range(n_members):
                seed = self.random_state + k
                pool = _SymmetryPool(self.arch, kinds, seed) if kinds else None
                gen = torch.Generator().manual_seed(seed)
                torch.manual_seed(seed)
                net = self._network(out_dim)
                if isinstance(net, EquivariantMetanet):
                    net.fit_stats(self._prepare(x[train]))
                if pool is None and not self.coordinate_augment:  # inputs never change: prepare them once
                    prepared = self._prepare(x)
                    inputs = prepared.__getitem__
                else:
                    prepared = None

                    def inputs(rows: torch.Tensor, gen=gen, pool=pool) -> torch.Tensor:
                        xb = coordinate_affine(self.arch, x[rows], gen) if self.coordinate_augment else x[rows]
                        return self._prepare(xb if pool is None else pool.apply(xb, gen))
                val_x = prepared[val] if prepared is not None else self._prepare(x[val])
                progress = None if self.progress is None else (
                    lambda done, total, k=k: self.progress(k * total + done, n_members * total))
                members.append(self._train(net, inputs, target, torch.as_tensor(train), val_x, target[val], gen,
                                           progress))
                runs.append((self.history_, self.best_epoch_, self.n_epochs_))
        self.net_ = members[0] if n_members == 1 else _Ensemble(members).eval()
        # the first member's run, so that one network's epochs read the same with or without an ensemble
        self.history_, self.best_epoch_, self.n_epochs_ = runs[0]
        return self

    def _train(self, net: nn.Module, inputs: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
               train: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, gen: torch.Generator,
               progress: Progress) -> nn.Module:
        """Minibatch AdamW on rows ``train`` (``inputs(rows)`` gives the prepared batch), early stopping on the
        prepared validation set; returns the network at its best validation epoch."""
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.max_epochs)
                 if self.schedule == "cosine" else None)
        start = time.perf_counter()
        best_score, best_state, best_epoch, stale = None, copy.deepcopy(net.state_dict()), 0, 0
        history = []
        epoch = 0
        for epoch in range(1, self.max_epochs + 1):
            net.train()
            order = train[torch.randperm(len(train), generator=gen)]
            total = 0.0
            for s in range(0, len(order), self.batch_size):
                rows = order[s:s + self.batch_size]
                loss = self._loss(net(inputs(rows)), target[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(rows)
            if sched is not None:
                sched.step()
            record = {"epoch": epoch, "train_loss": total / max(len(train), 1)}
            if len(val_x):
                score = self._val_score(self._forward(net, val_x), val_y)
                record["val_score"] = score[0]
                if best_score is None or score > best_score:
                    best_score, best_state, best_epoch, stale = score, copy.deepcopy(net.state_dict()), epoch, 0
                else:
                    stale += 1
            history.append(record)
            if progress:
                progress(epoch, self.max_epochs)
            out_of_time = self.max_seconds is not None and time.perf_counter() - start > self.max_seconds
            if (len(val_x) and stale >= self.patience) or out_of_time:
                break
        if len(val_x):
            net.load_state_dict(best_state)
        else:
            best_epoch = epoch
        if progress:
            progress(self.max_epochs, self.max_epochs)
        self.history_, self.best_epoch_, self.n_epochs_ = history, best_epoch, epoch
        self.fit_seconds_ = time.perf_counter() - start
        return net.eval()

    @staticmethod
    @torch.no_grad()
    def _forward(net: nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
        """Outputs of ``net`` in eval mode on prepared inputs ``x``, in batches."""
        net.eval()
        return torch.cat([net(x[s:s + batch]) for s in range(0, len(x), batch)])

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw network outputs ``[N, out_dim]`` for weights ``X`` ``[N, P]``."""
        with _one_thread():
            return self._forward(self.net_, self._prepare(_as_tensor(X))).numpy()


class MetanetClassifier(ClassifierMixin, _MetanetBase):
    """Classify networks from their weights (e.g. which digit an INR draws). ``classes_`` after ``fit``;
    cross-entropy loss; early stopping on validation accuracy (ties: lower loss). See the module docstring."""

    def _encode(self, y: np.ndarray) -> tuple[torch.Tensor, int]:
        if self.rank_targets:
            raise ValueError("rank_targets needs a numeric target (MetanetRegressor)")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("a classifier needs at least two classes")
        return torch.as_tensor(codes, dtype=torch.long), len(self.classes_)

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target)

    def _val_score(self, out: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
        return float((out.argmax(1) == target).float().mean()), -float(F.cross_entropy(out, target))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` (columns in ``classes_`` order)."""
        return torch.softmax(torch.as_tensor(self.decision_function(X)), 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class of each row of ``X`` ``[N, P]``."""
        return self.classes_[self.decision_function(X).argmax(1)]


class MetanetRegressor(RegressorMixin, _MetanetBase):
    """Predict a number from a network's weights (e.g. its test accuracy). Targets are standardised;
    mean squared error; early stopping on validation MSE. ``score`` is R². With ``rank_targets`` the network
    fits the training targets' ranks (``(rank - 0.5) / n``: every pair of models weighs the same, as in
    Kendall's τ) and :meth:`predict` maps its outputs back through the training targets' quantiles.
    See the module docstring."""

    def _encode(self, y: np.ndarray) -> tuple[torch.Tensor, int]:
        from scipy.stats import rankdata

        y = y.astype(np.float64)
        self.y_train_ = np.sort(y) if self.rank_targets else None
        if self.rank_targets:
            y = (rankdata(y) - 0.5) / len(y)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0
        return torch.as_tensor((y - self.y_mean_) / self.y_std_, dtype=torch.float32).view(-1, 1), 1

    def _loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, target)

    def _val_score(self, out: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
        mse = -float(F.mse_loss(out, target))
        return mse, mse

    def predict(self, X: Any) -> np.ndarray:
        """Predicted target of each row of ``X`` ``[N, P]``."""
        out = self.decision_function(X)[:, 0] * self.y_std_ + self.y_mean_
        return out if self.y_train_ is None else np.quantile(self.y_train_, np.clip(out, 0.0, 1.0))
