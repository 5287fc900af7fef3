"""Zoo page: the metadata table (sort, filter, select; constant columns hidden), training curves coloured by a
hyper-parameter, parallel coordinates of hyper-parameters against accuracy, and per-layer weight histograms
and singular-value spectra of chosen checkpoints."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from wslviz import ui
from wslviz.core import inr
from wslviz.plots import inr as iplots
from wslviz.plots import zoo as zplots

TABLE_KEY = "zoo_table"
MAX_PILLS = 12  # a filter with more values than this is a multiselect (a wall of pills reads worse)

st.title("Zoo")
ui.teaching("zoo")

zoo = ui.require_zoo(runs_networks=False)
meta = zoo.metadata
hparams = zplots.hyperparameter_columns(meta)
metrics = zplots.metric_columns(meta)
constant = zplots.constant_columns(meta)
shown_columns = [c for c in meta.columns if c not in constant]
st.caption(f"**{zoo.name}**: {zoo.n_models:,} models, {zoo.n_checkpoints:,} checkpoints, {zoo.arch.describe()}, "
           f"task {zoo.task.name if zoo.task else 'none (weights only)'}")


# ------------------------------------------------------------------ table
st.subheader("Checkpoints")


def filter_widgets(df: pd.DataFrame) -> pd.Series:
    """One widget per hyper-parameter (and epoch): a range slider for many numeric values, pills (or a
    multiselect for many values) otherwise. Returns the mask of rows that pass every filter."""
    keep = pd.Series(True, index=df.index)
    columns = (["epoch"] if "epoch" in df and df["epoch"].nunique() > 1 else []) + hparams
    grid = st.columns(3)  # three wide columns: the value chips fit without being cut
    for i, col in enumerate(columns):
        values = df[col]
        with grid[i % 3]:
            if zplots.is_numeric(values) and values.nunique() > 6:
                whole = pd.api.types.is_integer_dtype(values)  # epochs and seeds slide in whole steps
                lo, hi = (int(values.min()), int(values.max())) if whole else (float(values.min()), float(values.max()))
                a, b = st.slider(col, lo, hi, (lo, hi), key=f"zoo_filter_{col}")
                keep &= values.between(a, b)
            else:
                options = sorted(values.dropna().unique().tolist(), key=lambda v: (isinstance(v, str), v))
                # pills wrap onto new lines, so every value stays readable (a multiselect cuts its chips)
                widget = st.pills if len(options) <= MAX_PILLS else st.multiselect
                picked = widget(col, options, default=options, key=f"zoo_filter_{col}", format_func=zplots.short_label,
                                **({"selection_mode": "multi"} if widget is st.pills else {})) or []
                keep &= values.isin(picked)
    return keep


with st.expander("Filter and sort", expanded=True):
    final_only = st.toggle("final checkpoints only", value=False, key="zoo_final_only",
                           help="Keep each model's last checkpoint (highest epoch).")
    mask = filter_widgets(meta)
    c1, c2 = st.columns([3, 1])
    sort_col = c1.selectbox("sort by", ["(row order)", *shown_columns], key="zoo_sort")
    descending = c2.toggle("descending", value=True, key="zoo_desc")

table = meta[shown_columns].copy()
table.insert(0, "row", range(len(meta)))
if final_only:
    final = pd.Series(False, index=meta.index)
    final.iloc[zoo.final_index()] = True
    mask &= final
table = table[mask.to_numpy()]
if sort_col != "(row order)":
    table = table.sort_values(sort_col, ascending=not descending, kind="stable")


def table_selected() -> None:
    rows = st.session_state[TABLE_KEY].selection.rows
    ui.set_selection(st.session_state["_zoo_table_rows"][rows].tolist())


st.session_state["_zoo_table_rows"] = table["row"].to_numpy()
st.dataframe(table, hide_index=True, height=320, key=TABLE_KEY, on_select=table_selected,
             selection_mode="multi-row", column_config={**ui.number_columns(table),
                 "row": st.column_config.NumberColumn("row", help="checkpoint row index (used in the URL)"),
                 **{m: st.column_config.NumberColumn(m, format="%.4f") for m in metrics}})
st.caption(f"{len(table):,} of {len(meta):,} checkpoints shown. Tick rows to make them the current selection "
           f"(now: {len(ui.get_selection()):,} selected)."
           + (f" {len(constant)} constant column(s) hidden: " + ", ".join(f"{c} = {zplots.short_label(meta[c].iloc[0])}"
                                                                        for c in constant) + "." if constant else ""))
ui.download_csv(meta.iloc[table["row"].to_numpy()], f"{zoo.name}-metadata")  # every column, constant ones too
if inr.is_inr(zoo.arch):  # an INR zoo: the images its weights draw, for the first rows of the table
    shown = table["row"].head(36).tolist()
    st.subheader("Rendered INRs")
    ui.chart(iplots.image_grid(inr.render_rows(zoo, shown), iplots.captions(meta, shown), columns=12),
             key="zoo_inr_grid")
    st.caption("Each image is an INR's output on a grid of coordinates: the first rows of the table, in its order.")


# ------------------------------------------------------------------ curves
# Figures go through the one result cache (no pickling round trip per rerun); nothing mutates them after building.
def curves_figure(color_by: str, metric: str, highlight: tuple[int, ...], raw: bool, log_y: bool) -> go.Figure:
    if not raw:
        return ui.result(zoo, ("mean curves figure", color_by, metric, log_y),
                         lambda progress=None: zplots.mean_curves(meta, color_by, metric, log_y=log_y))
    return ui.result(zoo, ("curves figure", color_by, metric, highlight, log_y), lambda progress=None:
                     zplots.accuracy_curves(meta, color_by, metric, highlight=highlight, log_y=log_y))


def final_figure(x: str, metric: str, highlight: tuple[int, ...], log_y: bool) -> go.Figure:
    return ui.result(zoo, ("final figure", x, metric, highlight, log_y), lambda progress=None: zplots.final_metric_vs(
        meta, zoo.final_index(), x, metric, highlight=highlight, log_y=log_y))


def parcoords_figure(columns: tuple[str, ...], metric: str) -> go.Figure:
    return ui.result(zoo, ("parcoords figure", columns, metric), lambda progress=None: zplots.parallel_coordinates(
        meta.iloc[zoo.final_index()], columns, metric))


def weight_figures(rows: tuple[int, ...]) -> tuple[go.Figure, go.Figure]:
    def build(progress=None) -> tuple[go.Figure, go.Figure]:
        labels = [ui.checkpoint_label(zoo, r) for r in rows]
        w = zoo.weights[list(rows)]
        return zplots.weight_histograms(zoo.arch, w, labels), zplots.singular_value_spectra(zoo.arch, w, labels)

    return ui.result(zoo, ("weight figures", rows), build)


st.subheader("Training curves")
if not metrics or not hparams:
    st.info("This zoo's metadata has no metric columns (test_acc, ...) or no varied hyper-parameter to "
            "colour by, so there are no curves to draw.")
else:
    c1, c2 = st.columns(2)
    default_colour = next((h for h in ("lr", "learning_rate", "optimizer") if h in hparams), hparams[0])
    color_by = c1.selectbox("colour by", hparams, index=hparams.index(default_colour), key="zoo_color_by")
    metric = c2.selectbox("metric", metrics, key="zoo_metric", format_func=zplots.label)
    highlight = tuple(ui.get_selection())
    t1, t2 = st.columns(2)
    raw = t1.toggle("raw curves (one line per model)", value=False, key="zoo_raw",
                    help="Off: the mean and interquartile band per value of the colouring hyper-parameter.")
    positive = bool((meta[metric].dropna() > 0).all())
    log_y = t2.toggle("log scale for the metric", value=False, key="zoo_log", disabled=not positive,
                      help="Losses spread over decades read better in log." if positive else
                      "Only for metrics that are positive everywhere.") and positive
    left, right = st.columns([3, 2])
    with left:
        if "epoch" in meta and meta["epoch"].nunique() > 1 and "model_id" in meta:
            fig = curves_figure(color_by, metric, highlight, raw, log_y)
            ui.chart(fig, key="zoo_curves")
            ui.download_figure(fig, f"{zoo.name}-curves-{metric}-by-{color_by}")
        else:
            st.info("One checkpoint per model: no curves over epochs.")
    with right:
        fig = final_figure(color_by, metric, highlight, log_y)
        ui.chart(fig, key="zoo_final")
        ui.download_figure(fig, f"{zoo.name}-final-{metric}-by-{color_by}")

    st.subheader("Hyper-parameters against accuracy")
    axes = st.multiselect("axes", hparams, default=[h for h in hparams if h not in ("seed", "model_id")] or hparams,
                          key="zoo_parcoords_axes", help="One vertical axis per hyper-parameter, the metric last; "
                          "drag along an axis to keep a range of values.")
    if not axes:
        st.info("Pick at least one hyper-parameter.")
    else:
        fig = parcoords_figure(tuple(axes), metric)
        ui.chart(fig, key="zoo_parcoords")
        st.caption("One line per model (its final checkpoint), coloured by the metric. Categorical values sit at "
                   "integer positions labelled with the value; columns spanning decades are on a log axis.")
        ui.download_figure(fig, f"{zoo.name}-parcoords-{metric}")


# ------------------------------------------------------------------ weights of chosen checkpoints
st.subheader("Weights of chosen checkpoints")
rows = ui.selection_picker(zoo, "checkpoints to inspect (up to 4)", default_count=1, key="zoo_inspect",
                           max_selections=4)
if not rows:
    st.info("Pick at least one checkpoint.")
    st.stop()
hist_fig, spectra_fig = weight_figures(tuple(rows))
tab_h, tab_s = st.tabs(["Weight histograms", "Singular-value spectra"])
with tab_h:
    ui.chart(hist_fig, key="zoo_hist")
    ui.download_figure(hist_fig, f"{zoo.name}-histograms")
with tab_s:
    ui.chart(spectra_fig, key="zoo_spectra")
    ui.download_figure(spectra_fig, f"{zoo.name}-spectra")
weights = zoo.weights[rows]
ui.download_weights(zoo.arch, weights, meta.iloc[rows].reset_index(drop=True), f"{zoo.name}-rows-"
                    + "-".join(map(str, rows)))
