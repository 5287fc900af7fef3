"""Property prediction from weight features, under cross-validation grouped by model.

``predict_property(zoo, target="test_acc", features="stats", model="gbm")`` predicts a metadata column
(test accuracy, generalisation gap, epoch, learning rate, ... or a categorical one such as the
optimizer) from a feature set (:mod:`wslviz.represent.features`), out of fold: the checkpoints of one model
always fall in the same fold (``GroupKFold`` on ``model_id``), since checkpoints of one training run
are near-duplicates and would otherwise leak the answer into the training folds.

Numeric targets are scored by R² and Kendall's τ of the out-of-fold predictions, categorical ones by
accuracy (and balanced accuracy). Predictors: ``linear`` (ridge / logistic regression on standardised
features), ``gbm`` (histogram gradient-boosted trees, which take NaN natively; on sets wider than
:data:`MAX_TREE_FEATURES` columns, such as raw weights, boosted on the training fold's leading principal components)
and ``knn`` (k nearest neighbours on standardised features). Unterthiner et al., "Predicting Neural Network
Accuracy from Weights" (2020) report R² of about 0.98 with gradient boosting on per-layer weight statistics.

Metanetworks (:data:`METANETS`: NFN-NP, DWSNets-style, and MLPs on flat weights with and without permutation
augmentation; :mod:`wslviz.represent.metanet`) are predictors too: they read the weights themselves
instead of a feature set, and are scored under the same grouped folds (their early-stopping split is
grouped by model as well). An integer column named ``label`` (INR zoos: the class an INR draws) is a
class label, not a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from wslviz.core.report import Report
from wslviz.core.zoo import Zoo
from wslviz.represent.features import FeatureError, feature_set

Progress = Callable[[int, int], None] | None
MODELS = ("linear", "gbm", "knn")
METANETS = ("nfn_np", "dws", "flat_mlp", "flat_mlp_aug")
"""Predictors that read the weights directly (see :mod:`wslviz.represent.metanet.estimator`)."""
PREDICTORS = MODELS + METANETS
MODEL_LABELS = {"linear": "linear (ridge/logistic)", "gbm": "gradient boosting", "knn": "k nearest neighbours",
                "nfn_np": "NFN-NP metanetwork", "dws": "DWSNets-style metanetwork",
                "flat_mlp": "MLP on flat weights", "flat_mlp_aug": "MLP on flat weights + permutation augmentation"}
METANET_OPTIONS: dict[str, Any] = {"hidden": 32, "depth": 3, "max_epochs": 100, "patience": 15, "lr": 3e-3}
"""Default settings of the metanetwork predictors (override with ``metanet_options``)."""
CLASS_LABEL_COLUMNS = ("label",)
MAX_IMPORTANCE_FEATURES = 200
MAX_TREE_FEATURES = 256
"""Gradient boosting on a wider feature set fits its first :data:`TREE_COMPONENTS` principal components."""
TREE_COMPONENTS = 64
"""Permutation importances are computed for feature sets up to this width (cost grows with it)."""
MAX_CATEGORIES = 20


def is_categorical(values: pd.Series) -> bool:
    """A target is categorical when it is not numeric (strings, booleans, categories), or when it is an
    integer column named in :data:`CLASS_LABEL_COLUMNS` (an INR zoo's ``label``)."""
    if values.name in CLASS_LABEL_COLUMNS and pd.api.types.is_integer_dtype(values):
        return True
    return not (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def target_columns(meta: pd.DataFrame, model_col: str = "model_id") -> list[str]:
    """Metadata columns worth predicting: numeric columns that vary, and categorical ones with 2 to
    :data:`MAX_CATEGORIES` values (identifiers and the model id excluded)."""
    out = []
    for col in meta.columns:
        if col in (model_col, "seed", "row") or col.endswith(("_id", "_index")) or col == "checkpoint":
            continue
        values = meta[col].dropna()
        n = values.nunique()
        if n < 2:
            continue
        if is_categorical(values) and n > MAX_CATEGORIES:
            continue
        out.append(col)
    return out


def _estimator(model: str, categorical: bool, random_state: int, n_rows: int, n_features: int):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    prep = [SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler()]
    if model == "gbm":
        from sklearn.decomposition import PCA
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if categorical else HistGradientBoostingRegressor
        # No early stopping: it would hold out an ungrouped validation split (checkpoints of one model
        # on both sides) and make results depend on it.
        # Leaves of at most 20 rows, fewer on small training sets (sklearn's fixed 20 cannot split 30 rows).
        est = cls(max_iter=200, learning_rate=0.05, early_stopping=False, random_state=random_state,
                  min_samples_leaf=max(2, min(20, n_rows // 20)))
        if n_features <= MAX_TREE_FEATURES:
            return est
        # Trees cost time in proportion to the columns: on 14k raw weights one leaderboard took over 10
        # minutes. Wide sets are boosted on their leading principal components (fitted on the training fold).
        pca = PCA(min(TREE_COMPONENTS, n_rows - 1, n_features), random_state=random_state)
        return make_pipeline(*prep, pca, est)
    if model == "linear":
        from sklearn.linear_model import LogisticRegression, RidgeCV

        est = LogisticRegression(max_iter=2000) if categorical else RidgeCV(alphas=np.logspace(-3, 3, 13))
    else:
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

        k = max(1, min(10, n_rows // 5))
        est = (KNeighborsClassifier if categorical else KNeighborsRegressor)(n_neighbors=k, weights="distance")
    return make_pipeline(*prep, est)


ROW_SETS = ("all", "trained", "final")
"""Named row selections: every checkpoint, the trained ones (epoch > 0), each model's last one."""
TARGET_TRANSFORMS = ("none", "rank")


def _rows(zoo: Zoo, rows: str | Sequence[int] | np.ndarray | None) -> np.ndarray:
    if rows is None or (isinstance(rows, str) and rows == "all"):
        return np.arange(zoo.n_checkpoints)
    if isinstance(rows, str):
        if rows == "final":
            return np.sort(zoo.final_index())
        if rows != "trained":
            raise ValueError(f"rows must be None, one of {', '.join(ROW_SETS)}, or row indices, got {rows!r}")
        if "epoch" not in zoo.metadata:
            raise ValueError("rows='trained' needs an 'epoch' metadata column to tell untrained checkpoints apart")
        epoch = pd.to_numeric(zoo.metadata["epoch"], errors="coerce").to_numpy()
        return np.flatnonzero(epoch > 0)
    index = np.asarray(rows)
    index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
    if len(index) and (index.min() < 0 or index.max() >= zoo.n_checkpoints):
        raise ValueError(f"row indices must lie in [0, {zoo.n_checkpoints})")
    return index


def _features(zoo: Zoo, features: str | np.ndarray, names: Sequence[str] | None,
              progress: Progress) -> tuple[np.ndarray, list[str], str]:
    if isinstance(features, str):
        fs = feature_set(zoo, features, progress=progress)
        return fs.values, fs.names, features
    x = np.asarray(features, dtype=float)
    if x.ndim != 2 or len(x) != zoo.n_checkpoints:
        raise ValueError(f"a feature matrix must be [n_checkpoints={zoo.n_checkpoints}, d], got {list(x.shape)}")
    return x, list(names) if names is not None else [f"f{i}" for i in range(x.shape[1])], "custom"


def _rank_fit(est, x: np.ndarray, y: np.ndarray, **fit_kw: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Fit ``est`` to the ranks of ``y`` scaled to (0, 1) and return a predict function that maps rank
    predictions back through the training targets' quantiles (monotone, so orderings are kept)."""
    from scipy.stats import rankdata

    est.fit(x, (rankdata(y) - 0.5) / len(y), **fit_kw)
    return lambda z: np.quantile(y, np.clip(est.predict(z), 0.0, 1.0))


def _scorer(predict: Callable, categorical: bool) -> Callable:
    """A permutation-importance scorer that goes through ``predict``, so a rank-fitted model is judged on
    the target's own scale (accuracy for categorical targets, R² for numeric ones)."""
    from sklearn.metrics import accuracy_score, r2_score

    score = accuracy_score if categorical else r2_score
    return lambda _estimator, x, y: score(y, predict(x))


@dataclass(frozen=True, eq=False)
class PropertyPrediction(Report):
    """Cross-validated prediction of one metadata column (:func:`predict_property`); the scores of the other
    ``kind`` are None and left out of the key view."""

    OPTIONAL = ("r2", "kendall_tau", "mae", "accuracy", "balanced_accuracy")

    target: str
    features: str
    model: str
    target_transform: str
    n_rows: int
    n_models: int
    n_splits: int
    rows: np.ndarray
    truth: np.ndarray
    importances: pd.Series | None
    kind: str
    """``"regression"`` or ``"classification"``."""
    predictions: np.ndarray
    """Out-of-fold predictions ``[n_rows]``, in ``rows`` order."""
    r2: float | None = None
    kendall_tau: float | None = None
    mae: float | None = None
    accuracy: float | None = None
    balanced_accuracy: float | None = None


def predict_property(
    zoo: Zoo,
    target: str = "test_acc",
    features: str | np.ndarray = "stats",
    model: str = "gbm",
    n_splits: int = 5,
    random_state: int = 0,
    rows: str | Sequence[int] | np.ndarray | None = None,
    feature_names: Sequence[str] | None = None,
    importances: bool = True,
    progress: Progress = None,
    target_transform: str = "none",
    metanet_options: dict[str, Any] | None = None,
) -> PropertyPrediction:
    """Cross-validated prediction of metadata column ``target`` from a feature set, or from the weights.

    ``features``: a kind of :func:`wslviz.represent.features.compute_features` or a precomputed matrix
    ``[n_checkpoints, d]`` (with optional ``feature_names``). ``model``: ``linear``, ``gbm`` or ``knn``, or a
    metanetwork of :data:`METANETS`, which reads ``zoo.weights`` and ignores ``features`` (settings:
    :data:`METANET_OPTIONS` updated by ``metanet_options``; ``progress`` then counts training epochs
    over all folds).
    ``rows``: None/``"all"`` (every checkpoint), ``"trained"`` (checkpoints after epoch 0: an untrained
    network's accuracy is chance plus sampling noise, with no order to predict), ``"final"`` (each model's
    last checkpoint) or row indices; rows whose target is missing are skipped.
    ``target_transform``: ``"none"``, or ``"rank"`` for numeric targets: the predictor is fitted to the
    ranks of the training fold's targets (every pair of models weighs the same, as in Kendall's τ, instead
    of squared error being dominated by the widest gaps) and its outputs are mapped back through the
    training targets' quantiles. Folds: ``GroupKFold(n_splits)`` over ``model_id``, shuffled
    by ``random_state``.

    Returns a :class:`PropertyPrediction` (readable by key too, as the dict it replaced): ``kind``
    ("regression"/"classification"), ``r2``, ``kendall_tau``, ``mae`` (numeric) or
    ``accuracy``, ``balanced_accuracy`` (categorical), ``predictions`` (out-of-fold, ``[n_rows]``),
    ``truth``, ``rows`` (the checkpoint rows scored), ``importances`` (a ``pandas.Series`` of mean
    permutation importances on the held-out folds, by feature name, or None for sets wider than
    :data:`MAX_IMPORTANCE_FEATURES` or ``importances=False``), ``n_rows``, ``n_models``, ``n_splits``,
    ``target``, ``features``, ``model``.
    """
    from scipy.stats import kendalltau
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, mean_absolute_error, r2_score
    from sklearn.model_selection import GroupKFold
    from threadpoolctl import threadpool_limits

    if model not in PREDICTORS:
        raise ValueError(f"unknown predictor {model!r}; known: {', '.join(PREDICTORS)}")
    if target_transform not in TARGET_TRANSFORMS:
        raise ValueError(f"unknown target_transform {target_transform!r}; known: {', '.join(TARGET_TRANSFORMS)}")
    if target not in zoo.metadata:
        raise ValueError(f"the zoo's metadata has no column {target!r}; columns: {', '.join(zoo.metadata.columns)}")
    index = _rows(zoo, rows)
    y_all = zoo.metadata[target]
    categorical = is_categorical(y_all)
    index = index[y_all.iloc[index].notna().to_numpy()]
    groups = zoo.model_ids[index]
    n_groups = len(pd.unique(groups))
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 models with a known {target!r}, got {n_groups}")
    n_splits = min(int(n_splits), n_groups)
    if n_splits < 2:
        raise ValueError("n_splits must be at least 2")

    metanet = model in METANETS
    if metanet:
        import torch

        x, names, kind = zoo.weights[torch.as_tensor(index)].float(), [], "weights"
    else:
        x_all, names, kind = _features(zoo, features, feature_names, progress)
        # Columns missing on every row (the spectral alpha of small layers) carry nothing; the tree
        # models' binning cannot take them.
        present = ~np.isnan(x_all[index]).all(0)
        x, names = x_all[index][:, present], [n for n, keep in zip(names, present, strict=True) if keep]
    y = y_all.iloc[index].to_numpy()
    if categorical:
        y = y.astype(str)
        if len(np.unique(y)) < 2:
            raise ValueError(f"target {target!r} takes a single value on these rows; nothing to predict")
    else:
        y = y.astype(float)
    if categorical and target_transform != "none":
        raise ValueError(f"target_transform={target_transform!r} needs a numeric target; {target!r} is categorical")
    want_importances = importances and not metanet and x.shape[1] <= MAX_IMPORTANCE_FEATURES
    pred = np.empty(len(y), dtype=object if categorical else float)
    imp = np.zeros(x.shape[1])
    folds = GroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state).split(np.zeros(len(y)), y, groups)
    # One thread: on a busy 2-core machine OpenMP-parallel tree fitting ran 50x slower than serial.
    with threadpool_limits(1):
        for i, (train, test) in enumerate(folds):
            if metanet:
                est = _metanet(zoo, model, categorical, random_state, metanet_options, progress, i, n_splits)
                fit_kw = {"groups": groups[train]}
            else:
                est, fit_kw = _estimator(model, categorical, random_state, len(train), x.shape[1]), {}
            if categorical and len(np.unique(y[train])) < 2:  # a fold that sees one class can only predict it
                pred[test] = y[train][0]
            else:
                if target_transform == "rank":
                    predict = _rank_fit(est, x[train], y[train], **fit_kw)
                else:
                    predict = est.fit(x[train], y[train], **fit_kw).predict
                pred[test] = predict(x[test])
                if want_importances:
                    imp += permutation_importance(est, x[test], y[test], n_repeats=3, random_state=random_state,
                                                  n_jobs=1, scoring=_scorer(predict, categorical)
                                                  ).importances_mean / n_splits
            if progress and not metanet:
                progress(i + 1, n_splits)
    common = {"target": target, "features": kind, "model": model, "target_transform": target_transform,
              "n_rows": len(y), "n_models": n_groups, "n_splits": n_splits, "rows": index, "truth": y,
              "importances": pd.Series(imp, index=names).sort_values(ascending=False) if want_importances else None}
    if categorical:
        pred = pred.astype(str)
        return PropertyPrediction(**common, kind="classification", predictions=pred,
                                  accuracy=float(accuracy_score(y, pred)),
                                  balanced_accuracy=float(balanced_accuracy_score(y, pred)))
    pred = pred.astype(float)
    tau = kendalltau(y, pred).statistic if np.ptp(pred) > 0 else float("nan")
    return PropertyPrediction(**common, kind="regression", predictions=pred, r2=float(r2_score(y, pred)),
                              kendall_tau=float(tau), mae=float(mean_absolute_error(y, pred)))


def _metanet(zoo: Zoo, model: str, categorical: bool, random_state: int, options: dict[str, Any] | None,
             progress: Progress, fold: int, n_splits: int):
    """A metanetwork estimator for one fold; its epoch progress is reported as progress over all folds."""
    from wslviz.represent.metanet.estimator import MetanetClassifier, MetanetRegressor

    settings = {**METANET_OPTIONS, **(options or {})}
    total = int(settings["max_epochs"]) * n_splits
    fold_progress = None if progress is None else (
        lambda done, _total: progress(fold * int(settings["max_epochs"]) + done, total))
    cls = MetanetClassifier if categorical else MetanetRegressor
    return cls(zoo.arch, model=model, random_state=random_state, progress=fold_progress, **settings)


def leaderboard(
    zoo: Zoo,
    target: str = "test_acc",
    kinds: Sequence[str] = ("flat", "aligned", "stats", "spectral", "functional"),
    models: Sequence[str] = MODELS,
    rows: str | Sequence[int] | np.ndarray | None = None,
    n_splits: int = 5,
    random_state: int = 0,
    features: dict[str, np.ndarray] | None = None,
    progress: Progress = None,
    target_transform: str = "none",
    metanets: Sequence[str] = (),
    metanet_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Scores of every (feature set, predictor) pair for one target -> DataFrame with columns
    ``features, model, r2, kendall_tau, mae`` (numeric target) or ``features, model, accuracy,
    balanced_accuracy`` (categorical), sorted best first.

    Each feature set is computed once (or taken from ``features``, a dict kind -> ``[n_checkpoints, d]``);
    kinds that cannot be computed for this zoo (``functional`` without a task) are skipped. Each of
    ``metanets`` (names in :data:`METANETS`) adds a row with features ``"weights"``, scored on the same folds.
    ``rows``, ``target_transform`` and ``metanet_options`` as in :func:`predict_property`.
    ``progress(done, total)`` counts (feature set, predictor) pairs and metanetworks."""
    unknown = [m for m in metanets if m not in METANETS]
    if unknown:
        raise ValueError(f"unknown metanetwork(s) {unknown}; known: {', '.join(METANETS)}")
    records = []
    total, done = len(kinds) * len(models) + len(metanets), 0
    for kind in kinds:
        try:
            if features is not None and kind in features:
                x, names = np.asarray(features[kind], dtype=float), None
            else:
                fs = feature_set(zoo, kind)
                x, names = fs.values, fs.names
        except FeatureError:
            done += len(models)
            continue
        for model in models:
            r = predict_property(zoo, target, x, model, n_splits, random_state, rows, feature_names=names,
                                 importances=False, target_transform=target_transform)
            keys = ("accuracy", "balanced_accuracy") if r["kind"] == "classification" else ("r2", "kendall_tau", "mae")
            records.append({"features": kind, "model": model, **{k: r[k] for k in keys},
                            "n_rows": r["n_rows"], "n_features": x.shape[1]})
            done += 1
            if progress:
                progress(done, total)
    for model in metanets:
        r = predict_property(zoo, target, model=model, n_splits=n_splits, random_state=random_state, rows=rows,
                             target_transform=target_transform, metanet_options=metanet_options)
        keys = ("accuracy", "balanced_accuracy") if r["kind"] == "classification" else ("r2", "kendall_tau", "mae")
        records.append({"features": "weights", "model": model, **{k: r[k] for k in keys}, "n_rows": r["n_rows"],
                        "n_features": zoo.n_params})
        done += 1
        if progress:
            progress(done, total)
    df = pd.DataFrame(records)
    if len(df):
        df = df.sort_values("accuracy" if "accuracy" in df else "r2", ascending=False).reset_index(drop=True)
    return df
