"""Metanetworks against the baselines, on this machine's CPU.

1. **INR classification** on ``sample_zoo/digits-inr``: which digit does an INR draw? Fitted on the INRs of the
   training and validation images, scored on the INRs of the held-out test images (the zoo's ``split``: a split by
   image). Methods: MLP on flat weights, the same with permutation augmentation, per-layer statistics + gradient
   boosting (the ``stats`` features with the Predict page's ``gbm``), NFN-NP, DWSNets-style.
2. **Property prediction** on a larger digits-cnn zoo that this script trains itself (the ``digits-cnn`` recipe
   with more models, fewer epochs; cached under ``--cnn-cache``, never committed): Kendall's τ (and R²) of each
   method's out-of-fold predictions of test accuracy and generalisation gap, under the same model-grouped 5-fold
   cross-validation (:func:`wslviz.represent.predict.predict_property`).
3. **Metanetwork variants** on the same zoo and folds (``--parts variants``): the levers of the literature
   (rank-transformed targets, cosine schedule, wider layers, the hybrid head that also reads per-tensor
   statistics, seed ensembles), each scored by Kendall's τ on the held-out folds *and* on each fit's own
   early-stopping rows inside the training folds. Settings are chosen on the latter only ("selected" in the
   output: the best mean inner-validation τ, separately for pure and hybrid metanetworks); the test folds
   never choose anything.

Training time is wall-clock seconds of each fit on this machine (torch and sklearn on one thread each).
Writes ``benchmarks/results/bench_metanet.json`` and prints the README's tables. Usage::

    .venv/bin/python benchmarks/bench_metanet.py [--parts inr cnn variants] [--cnn-models 1008] [--cnn-epochs 8]
        [--cnn-cache /tmp/wslviz-bench/digits-cnn-large] [--out benchmarks/results/bench_metanet.json]
        [--variants dws dws_rank ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import wslviz as wv
from wslviz.core.training import RECIPES
from wslviz.represent.features import weight_stats
from wslviz.represent.metanet.estimator import MODEL_LABELS, MetanetClassifier, MetanetRegressor
from wslviz.represent.predict import METANET_OPTIONS, predict_property

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", category=ImportWarning)
NEURAL = ("flat_mlp", "flat_mlp_aug", "nfn_np", "dws")
GBM = "stats_gbm"
LABELS = {**MODEL_LABELS, GBM: "stats + gradient boosting"}
INR_OPTIONS: dict[str, dict[str, Any]] = {
    "flat_mlp": {"hidden": 64, "max_epochs": 150, "patience": 25, "lr": 1e-3, "dropout": 0.2},
    "flat_mlp_aug": {"hidden": 64, "max_epochs": 150, "patience": 25, "lr": 1e-3, "dropout": 0.2},
    "nfn_np": {"hidden": 64, "depth": 3, "max_epochs": 150, "patience": 25, "lr": 3e-3, "coordinate_augment": True},
    "dws": {"hidden": 64, "depth": 3, "max_epochs": 150, "patience": 25, "lr": 3e-3, "coordinate_augment": True},
}
"""Settings per method on digits-inr; the metanetworks also see each training INR's image under a random small
rotation, zoom and shift (weight-space augmentation, :mod:`wslviz.represent.metanet.augment`)."""
CNN_OPTIONS: dict[str, dict[str, Any]] = {name: dict(METANET_OPTIONS) for name in NEURAL}
"""Settings per method on the digits-cnn zoo: the Predict page's defaults."""
LONG = {"schedule": "cosine", "max_epochs": 200, "patience": 40}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "dws_stats": ("dws", {"stats": True}),
    "dws": ("dws", {}),
    "dws_rank": ("dws", {"rank_targets": True}),
    "dws_stats_ens3": ("dws", {"stats": True, "n_ensemble": 3}),
    "dws_long": ("dws", LONG),
    "dws_wide": ("dws", {"hidden": 64}),
    "dws_stats_rank": ("dws", {"stats": True, "rank_targets": True}),
    "nfn_np_stats": ("nfn_np", {"stats": True}),
    "nfn_np": ("nfn_np", {}),
}
"""Metanetwork variants on the digits-cnn zoo: (model, settings over the Predict page's defaults), in the order
they run (the likeliest gains first: the machine is shared). Names with ``stats`` are hybrids (the head also
reads per-tensor statistics); ``ens3`` ones average three seeds."""


def gbm_classifier(random_state: int = 0):
    """The Predict page's ``gbm`` for a categorical target (see :mod:`wslviz.represent.predict`)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, early_stopping=False,
                                          random_state=random_state, min_samples_leaf=20)


def inr_part(zoo_path: Path) -> dict[str, Any]:
    zoo = wv.load_zoo(zoo_path)
    meta = zoo.metadata
    train = np.flatnonzero(meta["split"].isin(["train", "val"]).to_numpy())
    test = np.flatnonzero((meta["split"] == "test").to_numpy())
    y = meta["label"].to_numpy()
    groups = zoo.model_ids
    w = zoo.weights.float()
    out: dict[str, Any] = {"zoo": zoo.name, "n_train": len(train), "n_test": len(test),
                           "n_train_images": int(len(np.unique(groups[train]))),
                           "n_test_images": int(len(np.unique(groups[test]))), "methods": {}}
    start = time.perf_counter()
    x = weight_stats(zoo.arch, w)
    with threadpool_limits(1):
        clf = gbm_classifier().fit(x[train], y[train])
    acc = float((clf.predict(x[test]) == y[test]).mean())
    out["methods"][GBM] = {"accuracy": acc, "seconds": time.perf_counter() - start}
    print(f"  {LABELS[GBM]:>48}: accuracy {acc:.3f} ({out['methods'][GBM]['seconds']:.0f} s)", flush=True)
    for name in NEURAL:
        start = time.perf_counter()
        est = MetanetClassifier(zoo.arch, model=name, random_state=0, **INR_OPTIONS[name])
        est.fit(w[train], y[train], groups=groups[train])
        acc = float(est.score(w[test], y[test]))
        out["methods"][name] = {"accuracy": acc, "seconds": time.perf_counter() - start, "epochs": est.n_epochs_,
                                "best_epoch": est.best_epoch_, "options": INR_OPTIONS[name]}
        print(f"  {LABELS[name]:>48}: accuracy {acc:.3f} ({out['methods'][name]['seconds']:.0f} s, "
              f"{est.n_epochs_} epochs)", flush=True)
    return out


def cnn_zoo(n_models: int, epochs: int, cache: Path):
    """The digits-cnn recipe with ``n_models`` models and checkpoints halfway and at the end of ``epochs``;
    trained once and kept in ``cache``."""
    if (cache / "zoo.json").is_file():
        return wv.load_zoo(cache), None
    recipe = dataclasses.replace(RECIPES["digits-cnn"], name="digits-cnn-large", n_models=n_models, epochs=epochs,
                                 checkpoints=tuple(sorted({max(1, epochs // 2), epochs})),
                                 description=f"digits-cnn recipe, {n_models} models (bench_metanet.py)")
    start = time.perf_counter()
    zoo = wv.train_zoo(recipe, seed=1)
    seconds = time.perf_counter() - start
    wv.save_zoo(zoo, cache, overwrite=True)
    return wv.load_zoo(cache), seconds


def cnn_part(n_models: int, epochs: int, cache: Path, targets: list[str]) -> dict[str, Any]:
    zoo, train_seconds = cnn_zoo(n_models, epochs, cache)
    out: dict[str, Any] = {"n_models": zoo.n_models, "n_checkpoints": zoo.n_checkpoints, "epochs": epochs,
                           "zoo_training_seconds": train_seconds, "targets": {}}
    print(f"  zoo: {zoo.n_models} models, {zoo.n_checkpoints} checkpoints"
          + (f", trained in {train_seconds:.0f} s" if train_seconds else " (cached)"), flush=True)
    for target in targets:
        res: dict[str, Any] = {}
        start = time.perf_counter()
        r = predict_property(zoo, target, "stats", "gbm", importances=False)
        res[GBM] = {"kendall_tau": r["kendall_tau"], "r2": r["r2"], "seconds": time.perf_counter() - start}
        for name in NEURAL:
            start = time.perf_counter()
            r = predict_property(zoo, target, model=name, metanet_options=CNN_OPTIONS[name])
            res[name] = {"kendall_tau": r["kendall_tau"], "r2": r["r2"], "seconds": time.perf_counter() - start,
                         "options": {**METANET_OPTIONS, **CNN_OPTIONS[name]}}
        for name, v in res.items():
            print(f"  {target:>8} {LABELS[name]:>48}: tau {v['kendall_tau']:.3f}  R² {v['r2']:.3f}  "
                  f"({v['seconds']:.0f} s)", flush=True)
        out["targets"][target] = res
    return out


def variant_cv(zoo, target: str, model: str, options: dict[str, Any]) -> dict[str, Any]:
    """Model-grouped 5-fold CV of one metanetwork variant on every checkpoint with a known ``target``, on
    :func:`predict_property`'s folds: τ and R² of the out-of-fold predictions, and the mean τ of each fit on
    its own early-stopping rows (inside the training folds: what settings are chosen by)."""
    from scipy.stats import kendalltau
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold

    y_all = zoo.metadata[target].to_numpy(dtype=float)
    index = np.flatnonzero(~np.isnan(y_all))
    x, y, groups = zoo.weights[torch.as_tensor(index)].float(), y_all[index], zoo.model_ids[index]
    pred, inner = np.empty(len(y)), []
    folds = GroupKFold(n_splits=5, shuffle=True, random_state=0).split(np.zeros(len(y)), y, groups)
    start = time.perf_counter()
    with threadpool_limits(1):
        for train, test in folds:
            est = MetanetRegressor(zoo.arch, model=model, random_state=0, **{**METANET_OPTIONS, **options})
            est.fit(x[train], y[train], groups=groups[train])
            val = train[est.val_rows_]
            inner.append(float(kendalltau(y[val], est.predict(x[val])).statistic))
            pred[test] = est.predict(x[test])
    return {"kendall_tau": float(kendalltau(y, pred).statistic), "r2": float(r2_score(y, pred)),
            "inner_val_tau": float(np.mean(inner)), "inner_val_taus": inner, "seconds": time.perf_counter() - start,
            "model": model, "options": {**METANET_OPTIONS, **options}}


def variants_part(cache: Path, target: str, names: list[str], previous: dict[str, Any],
                  save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """:func:`variant_cv` for each of ``names`` (kept beside the ``previous`` variants), and the selection by
    inner-validation τ among pure and among hybrid (``stats``) metanetworks; ``save(part)`` after each variant."""
    zoo = wv.load_zoo(cache)
    part: dict[str, Any] = {"target": target, "runs": dict(previous.get("runs", {})), "selected": {}}
    for name in names:
        model, options = VARIANTS[name]
        v = part["runs"][name] = variant_cv(zoo, target, model, options)
        print(f"  {name:>24}: test tau {v['kendall_tau']:.3f}  R² {v['r2']:.3f}  inner-val tau "
              f"{v['inner_val_tau']:.3f}  ({v['seconds']:.0f} s)", flush=True)
        for kind in ("pure", "hybrid"):
            pool = {n: r for n, r in part["runs"].items() if r["options"].get("stats", False) == (kind == "hybrid")}
            if pool:
                part["selected"][kind] = max(pool, key=lambda n: pool[n]["inner_val_tau"])
        save(part)
    return part


def tables(result: dict[str, Any]) -> str:
    lines = []
    if "inr" in result:
        inr = result["inr"]
        lines += [f"digits-inr: {inr['n_train']} training INRs ({inr['n_train_images']} images), {inr['n_test']} "
                  f"test INRs ({inr['n_test_images']} held-out images)", "",
                  "| method | held-out accuracy | training time (s) |", "|---|---|---|"]
        for name, v in inr["methods"].items():
            lines.append(f"| {LABELS[name]} | {v['accuracy']:.3f} | {v['seconds']:.0f} |")
        lines.append("")
    if "cnn" in result:
        cnn = result["cnn"]
        targets = list(cnn["targets"])
        lines += [f"digits-cnn, {cnn['n_models']} models x {cnn['n_checkpoints'] // cnn['n_models']} checkpoints, "
                  "model-grouped 5-fold CV", "",
                  "| method | " + " | ".join(f"τ {t} | R² {t} | time {t} (s)" for t in targets) + " |",
                  "|---|" + "---|---|---|" * len(targets)]
        for name in cnn["targets"][targets[0]]:
            cells = [f"{cnn['targets'][t][name]['kendall_tau']:.3f} | {cnn['targets'][t][name]['r2']:.3f} | "
                     f"{cnn['targets'][t][name]['seconds']:.0f}" for t in targets]
            lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
        lines.append("")
    if "cnn_variants" in result:
        var = result["cnn_variants"]
        chosen = set(var["selected"].values())
        lines += [f"digits-cnn metanetwork variants, target {var['target']}, same folds "
                  "(* chosen by inner-validation τ)", "",
                  "| variant | τ test folds | R² test folds | inner-validation τ | time (s) |", "|---|---|---|---|---|"]
        for name, v in var["runs"].items():
            lines.append(f"| {name}{' *' if name in chosen else ''} | {v['kendall_tau']:.3f} | {v['r2']:.3f} | "
                         f"{v['inner_val_tau']:.3f} | {v['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["inr", "cnn"], choices=["inr", "cnn", "variants"])
    ap.add_argument("--inr-zoo", default=str(ROOT / "sample_zoo" / "digits-inr"))
    ap.add_argument("--cnn-models", type=int, default=1008)
    ap.add_argument("--cnn-epochs", type=int, default=8)
    ap.add_argument("--cnn-cache", default="/tmp/wslviz-bench/digits-cnn-large")
    ap.add_argument("--targets", nargs="+", default=["test_acc", "ggap"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_metanet.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out_path = Path(args.out)
    result: dict[str, Any] = json.loads(out_path.read_text()) if out_path.is_file() else {}
    result["machine"] = {"processor": platform.processor() or platform.machine(), "torch_threads": 1}
    if "inr" in args.parts:
        print("INR classification (digits-inr)", flush=True)
        result["inr"] = inr_part(Path(args.inr_zoo))
    if "cnn" in args.parts:
        print("property prediction (larger digits-cnn zoo)", flush=True)
        result["cnn"] = cnn_part(args.cnn_models, args.cnn_epochs, Path(args.cnn_cache), args.targets)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def save(part: dict[str, Any]) -> None:
        result["cnn_variants"] = part
        out_path.write_text(json.dumps(result, indent=2) + "\n")

    if "variants" in args.parts:
        print("metanetwork variants (larger digits-cnn zoo, test_acc)", flush=True)
        cnn_zoo(args.cnn_models, args.cnn_epochs, Path(args.cnn_cache))
        variants_part(Path(args.cnn_cache), "test_acc", args.variants, result.get("cnn_variants", {}), save)
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(tables(result))


if __name__ == "__main__":
    main()
