"""Predict: what do the weights say about a model? Cross-validated property prediction from each feature
set, a leaderboard of feature sets x predictors, and retrieval of similar models."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from wslviz import ui
from wslviz.plots import predict as pplots
from wslviz.represent import features, predict, retrieval

CHEAP_KINDS = ("flat", "stats", "spectral", "functional")

st.title("Predict")
ui.teaching("predict")

zoo = ui.require_zoo()
meta = zoo.metadata
targets = predict.target_columns(meta)
if not targets or zoo.n_models < 4:
    st.warning("Nothing to predict here: property prediction needs at least 4 models and a metadata column "
               "that varies (accuracy, a hyper-parameter, ...).")
    st.stop()
kinds = [k for k in CHEAP_KINDS + ("aligned",) if k in features.available_kinds(zoo)]
if zoo.task is None:
    st.caption("This zoo has no task: `functional` features and function-space retrieval are unavailable.")


def cached_features(kind: str) -> features.FeatureSet:
    """The ``kind`` feature set, from the one result cache (a progress bar while computing)."""
    return ui.result(zoo, ("feature set", kind), partial(features.feature_set, zoo, kind), f"Computing {kind} features")


def fit_predictor(target: str, kind: str, model: str, rows: str, transform: str, epochs: int, progress=None) -> dict:
    if model in predict.METANETS:  # reads the weights themselves; progress counts training epochs
        return predict.predict_property(zoo, target, model=model, rows=rows, target_transform=transform,
                                        progress=progress, metanet_options={"max_epochs": epochs})
    fs = cached_features(kind)
    return predict.predict_property(zoo, target, fs.values, model, rows=rows, feature_names=fs.names,
                                    target_transform=transform)


c1, c2, c3, c4 = st.columns(4)
target = c1.selectbox("target", targets, index=targets.index("test_acc") if "test_acc" in targets else 0,
                      key="predict_target")
kind = c2.selectbox("features", kinds, index=kinds.index("stats"), key="predict_kind",
                    help=" · ".join(f"**{k}**: {features.DESCRIPTIONS[k]}" for k in kinds))
model = c3.selectbox("predictor", predict.PREDICTORS, index=predict.PREDICTORS.index("gbm"), key="predict_model",
                     format_func=predict.MODEL_LABELS.get,
                     help="Metanetworks (NFN-NP, DWSNets-style, flat MLPs) read the weights, not the features.")
row_sets = [r for r in predict.ROW_SETS if r != "trained" or "epoch" in meta]
rows = c4.radio("checkpoints", row_sets, horizontal=True, key="predict_rows",
                help="All checkpoints, the trained ones (epoch > 0: an untrained network's accuracy is chance plus "
                     "noise, nothing to rank), or each model's last one. Folds are grouped by model either way.")
numeric = not predict.is_categorical(meta[target])
transform = "rank" if numeric and st.toggle(
    "fit to ranks", value=False, key="predict_rank",
    help="Fit the predictor to the targets' ranks, mapped back through their quantiles: every pair of models "
         "counts alike, as in Kendall's τ, instead of the widest gaps dominating the squared error.") else "none"

st.caption(f"Features **{kind}**: {features.DESCRIPTIONS[kind]}")  # the description, too long for the box
epochs = st.slider("metanetwork: at most this many epochs per fold (early stopping ends most fits sooner)", 5, 300,
                   predict.METANET_OPTIONS["max_epochs"], key="predict_epochs") if model in predict.METANETS else 0

# ------------------------------------------------------------------ one predictor
st.subheader("Cross-validated prediction")
params = (target, kind, model, rows, transform, epochs)
run = st.button("Fit predictor", key="predict_fit_go", type="primary")
source = "the weights" if model in predict.METANETS else f"{kind} features"
with st.spinner(f"Fitting {predict.MODEL_LABELS[model]} on {source} (5 grouped folds) ..."):
    r = ui.on_request(zoo, "predict-fit", ("fit", *params), partial(fit_predictor, *params),
                      "Cross-validating", run)
if r is None or ui.requested_key(zoo, "predict-fit")[1:] != params:
    st.info("Press **Fit predictor** to score this feature set and predictor with grouped 5-fold cross-validation.")
else:
    if r["kind"] == "regression":
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("R²", f"{r['r2']:.3f}")
        m2.metric("Kendall τ", f"{r['kendall_tau']:.3f}")
        m3.metric("mean abs. error", f"{r['mae']:.4f}")
        m4.metric("checkpoints / models", f"{r['n_rows']:,} / {r['n_models']:,}")
        color = meta["epoch"].to_numpy(dtype=float)[r["rows"]] if "epoch" in meta else None
        fig = pplots.predicted_vs_true(r["truth"], r["predictions"], target, color=color, color_label="epoch",
                                       rows=r["rows"], title=f"Out-of-fold predictions of {target}")
    else:
        m1, m2, m3 = st.columns(3)
        m1.metric("accuracy", f"{r['accuracy']:.3f}")
        m2.metric("balanced accuracy", f"{r['balanced_accuracy']:.3f}")
        m3.metric("checkpoints / models", f"{r['n_rows']:,} / {r['n_models']:,}")
        fig = pplots.confusion_figure(r["truth"], r["predictions"], target,
                                      title=f"Out-of-fold predictions of {target}")
    left, right = st.columns([3, 2])
    with left:
        ui.chart(fig, key="predict_scatter")
    if r["importances"] is not None:
        with right:
            ui.chart(pplots.importance_figure(r["importances"], title="Which features matter"),
                     key="predict_importance")
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
run = st.button("Compute leaderboard", key="predict_board_go")
feats = {k: cached_features(k).values for k in board_kinds} if run else {}
board = ui.on_request(zoo, "predict-board", ("board", *board_params),
                      partial(predict.leaderboard, zoo, target, board_kinds, rows=rows, features=feats,
                              target_transform=transform), "Scoring feature sets x predictors", run)
if board is None or ui.requested_key(zoo, "predict-board")[1:] != board_params:
    st.info(f"Press **Compute leaderboard** to score {len(board_kinds)} feature sets x {len(predict.MODELS)} "
            f"predictors for this target, each with grouped 5-fold cross-validation ({zoo.n_checkpoints:,} "
            "checkpoints; 15 s on digits-cnn's 1,296 and on digits-resnet's 14,326-weight networks, where "
            "gradient boosting reads the raw weights' 64 leading principal components).")
else:
    metric = "accuracy" if "accuracy" in board else "r2"
    ui.chart(pplots.leaderboard_figure(board, metric, title=f"{metric} of {target}, grouped 5-fold CV"),
             key="predict_board_fig")
    st.dataframe(board, hide_index=True, width="stretch")
    ui.download_csv(board, f"{zoo.name}-{target}-leaderboard")

# ------------------------------------------------------------------ retrieval
st.subheader("Similar models")
picked = ui.selection_picker(zoo, "Query checkpoint", key="predict_query", max_selections=1)
if picked:
    row = picked[0]
    q1, q2 = st.columns([3, 2])
    most = min(20, zoo.n_checkpoints - 1)  # a slider needs two distinct ends: small zoos show all neighbours
    k = q1.slider("neighbours", min(3, most - 1), most, min(8, most), key="predict_k") if most > 1 else most
    exclude_own = q2.toggle("exclude same model", value=True, key="predict_exclude_own",
                            help="Leave out the query's own other checkpoints (other epochs of the same training "
                                 "run), which are trivially close and would fill the list.")
    cols = st.columns(2)
    for col, space in zip(cols, [kind, "functional" if zoo.task is not None else "flat"], strict=True):
        nn = retrieval.nearest_neighbours(cached_features(space).values, row, k,
                                          groups=zoo.model_ids if exclude_own else None)
        table = pd.concat([nn.reset_index(drop=True), meta.iloc[nn["row"]].reset_index(drop=True)], axis=1)
        col.markdown(f"**Nearest in `{space}` space** to {ui.checkpoint_label(zoo, row)}")
        col.dataframe(table, hide_index=True, width="stretch", column_config=ui.number_columns(table))

if zoo.task is not None and zoo.n_models >= 4:
    st.markdown("**Do weight-space neighbours behave alike?** Precision@k of each feature space's neighbours "
                "against function-space neighbours (prediction agreement and linear CKA on test inputs), final "
                "checkpoints only. The `functional` features are outputs on test inputs themselves, so their score "
                "is circular: close to 1 by construction, a ceiling to read the others against, not a finding.")
    run = st.button("Compare feature spaces", key="predict_retrieval_go")
    feats = {k: cached_features(k).values for k in kinds if k != "aligned"} if run else {}
    table = ui.on_request(zoo, "predict-retrieval", ("retrieval", tuple(feats)),
                          partial(retrieval.retrieval_benchmark, zoo, list(feats), k=min(10, zoo.n_models - 1),
                                  features=feats), "Comparing feature spaces", run)
    if table is not None:
        ui.chart(pplots.retrieval_figure(table, title=f"precision@{int(table['k'].iloc[0])}"),
                 key="predict_retrieval_fig")
        st.dataframe(table.pivot_table(index="features", columns="function", values="precision_at_k")
                     .sort_values(by=list(np.unique(table["function"]))[0], ascending=False), width="stretch")
