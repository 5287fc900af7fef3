"""Projections: the zoo's checkpoints embedded in 2D/3D (PCA, t-SNE, UMAP) from a chosen feature set,
coloured by metadata, with box/lasso selection linked to the other pages and naive vs aligned side by side."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from wslviz import ui
from wslviz.plots import embedding as eplots
from wslviz.represent import features, projection

CHART_KEY = "proj_chart"
PICKED_KEY = "proj_picked"
COMPUTED_KEY = "proj_computed"  # (kind, method) pairs whose expensive features were asked for
SUBSAMPLE_THRESHOLD = 5000
EXPENSIVE = {"aligned": "aligns every checkpoint to a reference by weight matching; minutes for 1,296 digits CNNs",
             "learned": "trains a hyper-representation autoencoder (~30 s)"}

st.title("Projections")
ui.teaching("projections")

zoo = ui.require_zoo()
meta = zoo.metadata
# numba compiles UMAP once per process (tens of seconds here): start it now so it is ready when asked for
projection.warm_up_umap_in_background()


def cached_features(kind: str) -> np.ndarray:
    """The ``kind`` features of every checkpoint, from the one result cache (a progress bar while computing)."""
    return ui.result(zoo, ("features", kind), partial(features.compute_features, zoo, kind),
                     f"Computing {kind} features")


kinds = features.available_kinds(zoo)
c1, c2, c3, c4 = st.columns([2, 1, 1, 2])
kind = c1.selectbox("features", kinds, index=kinds.index("stats"), key="proj_kind",
                    format_func=lambda k: f"{k}: {features.DESCRIPTIONS[k]}")
method = c2.selectbox("method", projection.METHODS, index=0, key="proj_method", format_func=projection.LABELS.get)
dim = c3.radio("dimensions", (2, 3), horizontal=True, key="proj_dim")
columns = list(meta.columns)
default_color = columns.index("test_acc") if "test_acc" in columns else 0
color_by = c4.selectbox("colour by", columns, index=default_color, key="proj_color")
c5, c6, c7 = st.columns(3)
# joining checkpoints helps on PCA's linear map; over t-SNE/UMAP clusters it is a hairball, so off there
lines = c5.toggle("join checkpoints of a model", value=method == "pca", key=f"proj_lines_{method}")
compare = c6.toggle("naive vs aligned side by side", value=False, key="proj_compare",
                    help="Raw weights and weights aligned to the best model, both projected the same way.")
seed = int(c7.number_input("seed", 0, 10_000, 0, key="proj_seed"))
if zoo.task is None:
    st.caption("This zoo has no task: the `functional` features (outputs on probe inputs) are unavailable.")
if method == "umap" and not projection.umap_ready():
    running = projection.umap_warm_up_seconds()[1]
    st.info("UMAP is compiling its numba kernels in the background, once per server process"
            + (f" (running for {running:.0f} s so far)" if running is not None else "")
            + "; the first UMAP projection waits for it.")

rows = np.arange(zoo.n_checkpoints)
if zoo.n_checkpoints > SUBSAMPLE_THRESHOLD:
    sub = st.toggle(f"subsample ({zoo.n_checkpoints:,} checkpoints)", value=True, key="proj_subsample",
                    help="Projecting tens of thousands of points takes long; every model's final checkpoint is "
                         "kept, the rest are sampled.")
    if sub:
        n_keep = st.slider("checkpoints shown", 1000, min(zoo.n_checkpoints, 50_000), SUBSAMPLE_THRESHOLD,
                           step=500, key="proj_n")
        final = np.sort(zoo.final_index())
        rest = np.setdiff1d(rows, final)
        extra = np.random.default_rng(seed).choice(rest, max(0, min(len(rest), n_keep - len(final))), replace=False)
        rows = np.sort(np.concatenate([final, extra]))
rows_key = tuple(int(r) for r in rows)
fp = zoo.fingerprint

needed = {kind} | ({"flat", "aligned"} if compare else set())
pending = [k for k in needed if k in EXPENSIVE and (k, fp) not in st.session_state.get(COMPUTED_KEY, set())]
if pending:
    st.info("Press **Compute** to build the " + " and ".join(f"`{k}` features ({EXPENSIVE[k]})" for k in pending)
            + "; results are cached.")
    if st.button("Compute", key="proj_compute", type="primary"):
        for k in pending:
            cached_features(k)
            st.session_state.setdefault(COMPUTED_KEY, set()).add((k, fp))
        st.rerun()
    st.stop()


def projected(kind: str) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Coordinates of the shown rows, the explained variance ratios (PCA only) and the fit's seconds."""
    def fit(progress=None) -> tuple[np.ndarray, np.ndarray | None, float]:
        proj = projection.Projector(method, int(dim), seed)
        coords = proj.fit_transform(cached_features(kind)[rows])
        return coords, proj.explained_variance_ratio, proj.fit_seconds_

    with st.spinner(f"Projecting {kind} features with {projection.LABELS[method]} ..."):
        try:
            return ui.result(zoo, ("projection", kind, method, int(dim), seed, rows_key), fit)
        except features.FeatureError as e:
            st.error(str(e))
            st.stop()


axis = {"pca": "PC", "tsne": "t-SNE", "umap": "UMAP"}[method]
picked = [r for r in st.session_state.get(PICKED_KEY, []) if r < zoo.n_checkpoints]


def on_select() -> None:
    event = st.session_state.get(CHART_KEY)
    chosen = eplots.rows_from_selection(event.get("selection") if event else None)
    if chosen:
        st.session_state[PICKED_KEY] = chosen
        ui.set_selection(chosen)


if compare:
    left, right = st.columns(2)
    for col, k, title in ((left, "flat", "naive: raw weights"), (right, "aligned", "aligned to the best model")):
        fig = eplots.projection_figure(projected(k)[0], meta, rows, color_by, lines=lines, selected=picked,
                                       axis_title=axis, title=f"{projection.LABELS[method]} of {title}", height=460)
        with col:
            ui.chart(fig, key=f"proj_chart_{k}")
coords, evr, seconds = projected(kind)
fig = eplots.projection_figure(coords, meta, rows, color_by, lines=lines, selected=picked, axis_title=axis,
                               title=f"{projection.LABELS[method]} of {kind} features, coloured by {color_by}")
event = ui.chart(fig, key=CHART_KEY, on_select=on_select, selection_mode=("points", "box", "lasso"))
# a selection set in session state directly (or before the callback ran) is honoured as well
chosen = eplots.rows_from_selection(event.get("selection") if event else None)
if chosen and chosen != picked:
    st.session_state[PICKED_KEY] = picked = chosen
    ui.set_selection(chosen)
st.caption((("Explained variance of the standardised features: "
             + ", ".join(f"PC{i + 1} {v:.1%}" for i, v in enumerate(evr)) + ". ") if evr is not None else "")
           + f"{projection.LABELS[method]} fit: {seconds:.1f} s, measured"
           + (" (the first UMAP fit in a process includes compiling its kernels)" if method == "umap" else "")
           + "; cached afterwards.")
ui.download_figure(fig, f"{zoo.name}-{kind}-{method}")

st.subheader("Selected checkpoints")
if picked:
    table = meta.iloc[picked].copy()
    table.insert(0, "row", picked)
    st.dataframe(table, hide_index=True, width="stretch")
    ui.download_csv(table, f"{zoo.name}-selection")
    if st.button("Clear selection", key="proj_clear"):
        st.session_state[PICKED_KEY] = []
        ui.set_selection([])
        st.rerun()
else:
    st.caption("Drag a box or lasso on the chart (or click a point) to select checkpoints; they become the "
               "selection on the Symmetry, Landscape and Predict pages.")
