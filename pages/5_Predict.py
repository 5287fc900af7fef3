"""Predict: what do the weights say about a model? Cross-validated property prediction from each feature
set, a leaderboard of feature sets x predictors, and retrieval of similar models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from wslviz import ui
from wslviz.plots import predict as pplots
from wslviz.represent import features, predict, retrieval

FIT_KEY = "predict_fit"
BOARD_KEY = "predict_board"
RETRIEVAL_KEY = "predict_retrieval"
CHEAP_KINDS = ("flat", "stats", "spectral", "functional")

st.title("Predict")
ui.teaching(
    "reading properties off the weights",
    "Can we tell how good a network is **without running it**, just from its weights? Each checkpoint's "
    "features (see Projections) go into a regressor or classifier, scored by **cross-validation grouped by "
    "model**: all checkpoints of one training run sit in the same fold, so the predictor never sees an "
    "earlier epoch of the very model it is tested on.\n\n"
    "**What to look for:** simple per-layer statistics of the weights (mean, spread, quantiles) predict "
    "test accuracy remarkably well with gradient-boosted trees, while the raw weight vector does poorly "
    "(it is scrambled by permutation symmetry). The importance bars show which statistics matter. Below, "
    "**retrieval** asks whether models that are close in a feature space also behave alike.",
    "Unterthiner et al., *Predicting Neural Network Accuracy from Weights*, 2020; Eilertsen et al., "
    "*Classifying the classifier: dissecting the weight space of neural networks*, ECAI 2020; Schürholt et "
    "al., *Model Zoos*, NeurIPS 2022; Kornblith et al., *Similarity of Neural Network Representations "
    "Revisited*, ICML 2019 (CKA).",
)

zoo = ui.require_zoo()
path = ui.current_zoo_path()
fp = zoo.fingerprint
meta = zoo.metadata
targets = predict.target_columns(meta)
if not targets or zoo.n_models < 4:
    st.warning("Nothing to predict here: property prediction needs at least 4 models and a metadata column "
               "that varies (accuracy, a hyper-parameter, ...).")
    st.stop()
kinds = [k for k in CHEAP_KINDS + ("aligned",) if k != "functional" or zoo.task is not None]
if zoo.task is None:
    st.caption("This zoo has no task: `functional` features and function-space retrieval are unavailable.")


@st.cache_data(show_spinner=False, max_entries=16)
def cached_features(zoo_path: str, fingerprint: str, kind: str) -> features.FeatureSet:
    return features.feature_set(ui.open_zoo(zoo_path), kind)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_fit(zoo_path: str, fingerprint: str, target: str, kind: str, model: str, rows: str,
               transform: str) -> dict:
    fs = cached_features(zoo_path, fingerprint, kind)
    return predict.predict_property(ui.open_zoo(zoo_path), target, fs.values, model, rows=rows,
                                    feature_names=fs.names, target_transform=transform)


c1, c2, c3, c4 = st.columns(4)
target = c1.selectbox("target", targets, index=targets.index("test_acc") if "test_acc" in targets else 0,
                      key="predict_target")
kind = c2.selectbox("features", kinds, index=kinds.index("stats"), key="predict_kind",
                    format_func=lambda k: f"{k}: {features.DESCRIPTIONS[k]}")
model = c3.selectbox("predictor", predict.MODELS, index=predict.MODELS.index("gbm"), key="predict_model",
                     format_func=predict.MODEL_LABELS.get)
row_sets = [r for r in predict.ROW_SETS if r != "trained" or "epoch" in meta]
rows = c4.radio("checkpoints", row_sets, horizontal=True, key="predict_rows",
                help="All checkpoints, the trained ones (epoch > 0: an untrained network's accuracy is chance plus "
                     "noise, nothing to rank), or each model's last one. Folds are grouped by model either way.")
numeric = not predict.is_categorical(meta[target])
transform = "rank" if numeric and st.toggle(
    "fit to ranks", value=False, key="predict_rank",
    help="Fit the predictor to the targets' ranks, mapped back through their quantiles: every pair of models "
         "counts alike, as in Kendall's τ, instead of the widest gaps dominating the squared error.") else "none"

# ------------------------------------------------------------------ one predictor
st.subheader("Cross-validated prediction")
params = (target, kind, model, rows, transform)
if st.button("Fit predictor", key="predict_fit_go", type="primary"):
    with st.spinner(f"Fitting {predict.MODEL_LABELS[model]} on {kind} features (5 grouped folds) ..."):
        st.session_state[FIT_KEY] = (params, cached_fit(path, fp, *params))
fit = st.session_state.get(FIT_KEY)
if fit is None or fit[0] != params:
    st.info("Press **Fit predictor** to score this feature set and predictor with grouped 5-fold cross-validation.")
else:
    r = fit[1]
    if r["kind"] == "regression":
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("R²", f"{r['r2']:.3f}")
        m2.metric("Kendall τ", f"{r['kendall_tau']:.3f}")
        m3.metric("mean abs. error", f"{r['mae']:.4f}")
        m4.metric("checkpoints / models", f"{r['n_rows']} / {r['n_models']}")
        color = meta["epoch"].to_numpy(dtype=float)[r["rows"]] if "epoch" in meta else None
        fig = pplots.predicted_vs_true(r["truth"], r["predictions"], target, color=color, color_label="epoch",
                                       rows=r["rows"], title=f"Out-of-fold predictions of {target}")
    else:
        m1, m2, m3 = st.columns(3)
        m1.metric("accuracy", f"{r['accuracy']:.3f}")
        m2.metric("balanced accuracy", f"{r['balanced_accuracy']:.3f}")
        m3.metric("checkpoints / models", f"{r['n_rows']} / {r['n_models']}")
        fig = pplots.confusion_figure(r["truth"], r["predictions"], target,
                                      title=f"Out-of-fold predictions of {target}")
    left, right = st.columns([3, 2])
    left.plotly_chart(fig, key="predict_scatter", width="stretch")
    if r["importances"] is not None:
        right.plotly_chart(pplots.importance_figure(r["importances"], title="Which features matter"),
                           key="predict_importance", width="stretch")
    else:
        right.caption(f"Importances are computed for feature sets of at most {predict.MAX_IMPORTANCE_FEATURES} "
                      "columns (e.g. `stats`, `spectral`).")
    ui.download_csv(pd.DataFrame({"row": r["rows"], "true": r["truth"], "predicted": r["predictions"]}),
                    f"{zoo.name}-{target}-{kind}-{model}-predictions")

# ------------------------------------------------------------------ leaderboard
st.subheader("Leaderboard: feature sets x predictors")
with_aligned = st.toggle("include aligned weights (aligns every checkpoint first; slow on big zoos)", value=False,
                         key="predict_board_aligned")
board_kinds = [k for k in kinds if k != "aligned" or with_aligned]
board_params = (target, rows, transform, tuple(board_kinds))
if st.button("Compute leaderboard", key="predict_board_go"):
    progress = ui.progress_callback("Scoring feature sets x predictors")
    feats = {}
    for k in board_kinds:
        with st.spinner(f"Computing {k} features ..."):
            feats[k] = cached_features(path, fp, k).values
    board = predict.leaderboard(zoo, target, board_kinds, rows=rows, features=feats, progress=progress,
                                target_transform=transform)
    st.session_state[BOARD_KEY] = (board_params, board)
saved = st.session_state.get(BOARD_KEY)
if saved is None or saved[0] != board_params:
    st.info(f"Press **Compute leaderboard** to score {len(board_kinds)} feature sets x {len(predict.MODELS)} "
            "predictors for this target (a few minutes on the sample CNN zoo: gradient boosting on the raw weights "
            "dominates).")
else:
    board = saved[1]
    metric = "accuracy" if "accuracy" in board else "r2"
    st.plotly_chart(pplots.leaderboard_figure(board, metric, title=f"{metric} of {target}, grouped 5-fold CV"),
                    key="predict_board_fig", width="stretch")
    st.dataframe(board, hide_index=True, width="stretch")
    ui.download_csv(board, f"{zoo.name}-{target}-leaderboard")

# ------------------------------------------------------------------ retrieval
st.subheader("Similar models")
picked = ui.selection_picker(zoo, "Query checkpoint", key="predict_query", max_selections=1)
if picked:
    row = picked[0]
    k = st.slider("neighbours", 3, min(20, zoo.n_checkpoints - 1), min(8, zoo.n_checkpoints - 1), key="predict_k")
    cols = st.columns(2)
    for col, space in zip(cols, [kind, "functional" if zoo.task is not None else "flat"], strict=True):
        nn = retrieval.nearest_neighbours(cached_features(path, fp, space).values, row, k)
        table = pd.concat([nn.reset_index(drop=True), meta.iloc[nn["row"]].reset_index(drop=True)], axis=1)
        col.markdown(f"**Nearest in `{space}` space** to {ui.checkpoint_label(zoo, row)}")
        col.dataframe(table, hide_index=True, width="stretch")

if zoo.task is not None and zoo.n_models >= 4:
    st.markdown("**Do weight-space neighbours behave alike?** Precision@k of each feature space's neighbours "
                "against function-space neighbours (prediction agreement and linear CKA on test inputs), final "
                "checkpoints only.")
    if st.button("Compare feature spaces", key="predict_retrieval_go"):
        feats = {k: cached_features(path, fp, k).values for k in kinds if k != "aligned"}
        table = retrieval.retrieval_benchmark(zoo, list(feats), k=min(10, zoo.n_models - 1), features=feats,
                                              progress=ui.progress_callback("Comparing feature spaces"))
        st.session_state[RETRIEVAL_KEY] = (fp, table)
    saved = st.session_state.get(RETRIEVAL_KEY)
    if saved is not None and saved[0] == fp:
        table = saved[1]
        st.plotly_chart(pplots.retrieval_figure(table, title=f"precision@{int(table['k'].iloc[0])}"),
                        key="predict_retrieval_fig", width="stretch")
        st.dataframe(table.pivot_table(index="features", columns="function", values="precision_at_k")
                     .sort_values(by=list(np.unique(table["function"]))[0], ascending=False), width="stretch")
