"""Projections: the zoo's checkpoints embedded in 2D/3D (PCA, t-SNE, UMAP) from a chosen feature set,
coloured by metadata, with box/lasso selection linked to the other pages and naive vs aligned side by side."""

from __future__ import annotations

from functools import partial

import numpy as np
import streamlit as st

from wslviz import ui
from wslviz.plots import embedding as eplots
from wslviz.plots.zoo import is_numeric
from wslviz.represent import features, projection, retrieval
from wslviz.scale.cache import projection_store

CHART_KEY = "proj_chart"
PICKED_KEY = "proj_picked"
RANGES_KEY = "proj_ranges"  # zoo fingerprint -> column -> (lo, hi) chosen on its linked histogram
HIST_GEN_KEY = "proj_hist_gen"  # bumped by "Clear filters": new histogram keys drop their selections
COMPUTED_KEY = "proj_computed"  # (kind, method) pairs whose expensive features were asked for
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
# where the kind has a continuous symmetry (LoRA's GL(r)) its invariants are the features that mean something
default_kind = "invariant" if "invariant" in kinds else "stats"
kind = c1.selectbox("features", kinds, index=kinds.index(default_kind), key="proj_kind",  # short names: not cut off
                    help=" · ".join(f"**{k}**: {features.DESCRIPTIONS[k]}" for k in kinds))
method = c2.selectbox("method", projection.METHODS, index=0, key="proj_method", format_func=projection.LABELS.get)
dim = c3.radio("dimensions", (2, 3), horizontal=True, key="proj_dim")
columns = list(meta.columns)
numeric = [c for c in columns if is_numeric(meta[c]) and meta[c].nunique() > 1]
default_color = columns.index("test_acc") if "test_acc" in columns else 0
color_by = c4.selectbox("colour by", columns, index=default_color, key="proj_color")
c5, c6, c7, c8 = st.columns([2, 2, 1, 1])
size_by = c5.selectbox("size by", [None, *columns], key="proj_size", format_func=lambda c: c or "(constant)")
opacity_by = c6.selectbox("opacity by", [None, *columns], key="proj_opacity", format_func=lambda c: c or "(constant)")
density = c7.toggle("density contours", value=False, key="proj_density", disabled=dim == 3)
seed = int(c8.number_input("seed", 0, 10_000, 0, key="proj_seed"))
c9, c10, c11 = st.columns([3, 1, 1])
query = c9.text_input("search metadata", key="proj_search", placeholder="e.g. lr = 0.01 and epoch >= 5, adam, #6",
                      help="Terms joined by `and`: `column = value` (also != > >= < <=), `#row`, or a word "
                           "found in a text column. Matches are highlighted, the rest dimmed.")
# over t-SNE/UMAP clusters joined checkpoints are a hairball: trails are off unless asked for
lines = c10.toggle("training trails", value=False, key="proj_lines")
compare = c11.toggle("naive vs aligned", value=False, key="proj_compare",
                     help="Raw weights and weights aligned to the best model, both projected the same way.")
epochs = np.sort(meta["epoch"].unique()) if "epoch" in meta else np.array([])
by_epoch = len(epochs) > 1 and st.toggle("training by epoch", value=False, key="proj_by_epoch",
                                         help="Show every model's checkpoint at one epoch, with its trail so far.")
epoch = st.select_slider("epoch", options=[int(e) for e in epochs], value=int(epochs[-1]),
                         key="proj_epoch") if by_epoch else None
hist_cols = st.multiselect("linked histograms (drag a range to filter)", numeric, key="proj_hists",
                           default=[c for c in ("test_acc",) if c in numeric])
if zoo.task is None:
    st.caption("This zoo has no task: the `functional` features (outputs on probe inputs) are unavailable.")
if method == "umap" and not projection.umap_ready():
    running = projection.umap_warm_up_seconds()[1]
    st.info("UMAP is compiling its numba kernels in the background, once per server process"
            + (f" (running for {running:.0f} s so far)" if running is not None else "")
            + "; the first UMAP projection waits for it.")

rows = np.arange(zoo.n_checkpoints)
if zoo.n_checkpoints < 2:
    st.info("A map places checkpoints relative to each other: it needs at least two checkpoints, and this zoo has "
            "one. Open a zoo with more models or checkpoints.")
    st.stop()
if zoo.n_checkpoints > projection.SUBSAMPLE_THRESHOLD:
    sub = st.toggle(f"subsample ({zoo.n_checkpoints:,} checkpoints)", value=True, key="proj_subsample",
                    help="Projecting tens of thousands of points takes long; every model's final checkpoint is "
                         "kept, the rest are sampled.")
    if sub:
        n_keep = st.slider("checkpoints shown", 1000, min(zoo.n_checkpoints, 50_000), projection.SUBSAMPLE_THRESHOLD,
                           step=500, key="proj_n")
        rows = projection.subsample_rows(zoo, n_keep, seed)
rows_key = projection.rows_digest(rows)
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


store = projection_store(zoo)  # fits outlive the server process


def projected(kind: str) -> projection.Projection:
    """The map of the shown rows' ``kind`` features: from memory, from disk, or fitted now."""
    key = projection.cache_key(fp, kind, method, int(dim), seed, rows=rows_key)
    fit = partial(projection.load_or_fit, lambda: cached_features(kind)[rows], method, int(dim), seed, store, key)
    with st.spinner(f"Projecting {kind} features with {projection.LABELS[method]} ..."):
        try:
            return ui.result(zoo, ("projection", key), lambda progress=None: fit())
        except features.FeatureError as e:
            st.error(str(e))
            st.stop()


def hist_key(col: str) -> str:
    return f"proj_hist_{col}_{st.session_state.get(HIST_GEN_KEY, 0)}"


# a histogram's selection resets whenever its figure changes (every filter redraws it): ranges live here
ranges = st.session_state.setdefault(RANGES_KEY, {}).setdefault(fp, {})
for col in hist_cols:
    chosen_range = eplots.range_from_selection((st.session_state.get(hist_key(col)) or {}).get("selection"))
    if chosen_range is not None:
        ranges[col] = chosen_range
active = {c: r for c, r in ranges.items() if c in hist_cols}
kept = eplots.range_mask(meta, active)
try:
    matches = eplots.search_rows(meta, query) if query.strip() else None
except ValueError as e:
    st.warning(f"Search: {e}")
    matches = None
picked = [r for r in st.session_state.get(PICKED_KEY, []) if r < zoo.n_checkpoints]
neighbours = None
if len(picked) == 1:
    n1, n2 = st.columns([1, 3])
    k = int(n1.number_input("neighbours", 1, 50, 10, key="proj_k"))
    exclude = n2.toggle("exclude same model", value=True, key="proj_exclude",
                        help="Other epochs of the same training run are trivially close; leave them out.")
    table_of = partial(retrieval.neighbour_table, cached_features(kind), meta, picked[0], k, exclude)
    neighbours = ui.result(zoo, ("neighbours", kind, picked[0], k, exclude), lambda progress=None: table_of())
axis = {"pca": "PC", "tsne": "t-SNE", "umap": "UMAP"}[method]
at_epoch = meta["epoch"].to_numpy() == epoch if by_epoch else None
looks = {"meta": meta, "rows": rows, "color_by": color_by, "selected": picked, "axis_title": axis,
         "size_by": size_by, "opacity_by": opacity_by, "density": density and dim == 2,
         "highlight": None if matches is None else np.flatnonzero(matches),
         "neighbours": [] if neighbours is None else neighbours["row"].tolist(),
         "visible": (kept & at_epoch if by_epoch else kept)[rows],
         "lines": (kept & (meta["epoch"].to_numpy() <= epoch))[rows] if by_epoch else lines}
if matches is not None:
    st.caption(f"**{int(matches[rows].sum()):,}** of {len(rows):,} checkpoints shown match the search.")


def on_select() -> None:
    event = st.session_state.get(CHART_KEY)
    chosen = eplots.rows_from_selection(event.get("selection") if event else None)
    if chosen:
        st.session_state[PICKED_KEY] = chosen
        ui.set_selection(chosen)


if compare:
    left, right = st.columns(2)
    for col, k, title in ((left, "flat", "naive: raw weights"), (right, "aligned", "aligned to the best model")):
        fig = eplots.projection_figure(projected(k).coords, **looks, height=460,
                                       title=f"{projection.LABELS[method]} of {title}")
        with col:
            ui.chart(fig, key=f"proj_chart_{k}")
fitted = projected(kind)
fig = eplots.projection_figure(fitted.coords, **looks, title=f"{projection.LABELS[method]} of {kind} features, "
                               f"coloured by {color_by}" + (f", epoch {epoch}" if by_epoch else ""))
event = ui.chart(fig, key=CHART_KEY, on_select=on_select, selection_mode=("points", "box", "lasso"))
# a selection set in session state directly (or before the callback ran) is honoured as well
chosen = eplots.rows_from_selection(event.get("selection") if event else None)
if chosen and chosen != picked:
    st.session_state[PICKED_KEY] = picked = chosen
    ui.set_selection(chosen)
    st.rerun()  # the neighbour table and highlights follow the new selection
evr = fitted.explained_variance_ratio
st.caption((("Explained variance of the standardised features: "
             + ", ".join(f"PC{i + 1} {v:.1%}" for i, v in enumerate(evr)) + ". ") if evr is not None else "")
           + f"{projection.LABELS[method]}" + (f" ({projection.tsne_backend()})" if method == "tsne" else "")
           + f" fit: {fitted.fit_seconds:.1f} s, measured"
           + (" (the first UMAP fit in a process includes compiling its kernels)" if method == "umap" else "")
           + ("; read back from disk" if fitted.from_disk else "; cached in memory and on disk") + ".")
ui.download_figure(fig, f"{zoo.name}-{kind}-{method}")

if hist_cols:
    boxes = [box for _ in range(0, len(hist_cols), 3) for box in st.columns(3)]
    for col, box in zip(hist_cols, boxes, strict=False):
        with box:
            ui.chart(eplots.histogram_figure(meta, col, kept, active.get(col)), key=hist_key(col),
                     on_select="rerun", selection_mode=("box",))
    if active:
        st.caption(f"Filters: {', '.join(f'{c} in [{lo:.4g}, {hi:.4g}]' for c, (lo, hi) in active.items())}; "
                   f"**{int(kept[rows].sum()):,}** of {len(rows):,} checkpoints shown.")
        if st.button("Clear filters", key="proj_clear_filters"):
            st.session_state[RANGES_KEY][fp] = {}
            st.session_state[HIST_GEN_KEY] = st.session_state.get(HIST_GEN_KEY, 0) + 1
            st.rerun()

if neighbours is not None:
    st.subheader(f"Nearest neighbours of #{picked[0]} in {kind} feature space")
    st.dataframe(neighbours, hide_index=True, width="stretch")
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
    st.caption("Drag a box or lasso on the chart to select checkpoints (they become the selection on the "
               "Symmetry, Landscape and Predict pages), or click one point to list its nearest neighbours.")
