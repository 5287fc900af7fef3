"""Figures for the Zoo page: training curves coloured by a hyper-parameter, final metric against a
hyper-parameter, parallel coordinates of hyper-parameters against accuracy, per-layer weight histograms
and singular-value spectra of chosen checkpoints."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from wslviz.core.protocol import ArchitectureLike
from wslviz.core.zoo import FILE_COLUMNS
from wslviz.plots import style

METRICS = ("test_acc", "train_acc", "test_loss", "train_loss", "ggap")
LABELS = {
    "test_acc": "test accuracy (fraction correct)",
    "train_acc": "train accuracy (fraction correct)",
    "test_loss": "test loss (cross-entropy, nats)",
    "train_loss": "train loss (cross-entropy, nats)",
    "ggap": "generalisation gap (train - test accuracy)",
    "epoch": "epoch (passes over the training set)",
    "lr": "learning rate",
    "wd": "weight decay",
    "weight_decay": "weight decay",
    "batch_size": "batch size (examples per step)",
}
MAX_COLOR_GROUPS = 32  # numeric colourings with more distinct values are binned (one trace per bin)
MAX_LEGEND_VALUES = 8  # numeric hyper-parameters with at most this many values get a legend, not a colour bar
MAX_CURVES = 1000
"""Training curves drawn at most (evenly spaced models, the highlighted ones always): a browser draws a
figure of 5,000 models x 10 epochs slowly, and the lines are too dense to tell apart anyway."""


def file_names(metadata: pd.DataFrame, width: int = 40) -> list[str] | None:
    """Per checkpoint row, what tells it apart in a folder of checkpoints: the metadata's ``name`` or ``file``
    (the tail of long paths, at most ``width`` characters), or None when the metadata has neither varying."""
    named = next((c for c in ("name", "file") if c in metadata and metadata[c].nunique() > 1), None)
    if named is None:
        return None
    return [str(v) if len(str(v)) <= width else "..." + str(v)[-(width - 3):] for v in metadata[named].tolist()]


def label(column: str) -> str:
    """Axis label (with unit) for a metadata column."""
    return LABELS.get(column, column.replace("_", " "))


def hyperparameter_columns(meta: pd.DataFrame, model_col: str = "model_id") -> list[str]:
    """Columns that are constant within each model and vary across models (the hyper-parameters to
    colour by), excluding ids, epochs, metrics and columns that describe files (``FILE_COLUMNS``)."""
    skip = {model_col, "epoch", "step", *METRICS, *FILE_COLUMNS}
    cols = [c for c in meta.columns if c not in skip and meta[c].nunique(dropna=True) > 1]
    if model_col not in meta:
        return cols
    per_model = meta.groupby(model_col)[cols].nunique(dropna=True).max() if cols else pd.Series(dtype=int)
    return [c for c in cols if per_model[c] <= 1]


def constant_columns(meta: pd.DataFrame) -> list[str]:
    """Columns with one value (or none) over the whole zoo: they tell nothing apart, so pickers and tables
    leave them out (the page names them)."""
    return [c for c in meta.columns if meta[c].nunique(dropna=True) <= 1]


def metric_columns(meta: pd.DataFrame) -> list[str]:
    """The known metric columns present in ``meta`` (accuracy first)."""
    return [m for m in METRICS if m in meta and pd.api.types.is_numeric_dtype(meta[m])]


def _log_scale(values: pd.Series) -> bool:
    """Positive values spread over more than a factor of 20 (learning rates, weight decays) read better in log."""
    v = values.dropna().to_numpy(dtype=float)
    return bool(len(v)) and v.min() > 0 and v.max() / v.min() > 20


def _crowded_grid(values: pd.Series) -> bool:
    """At most :data:`MAX_LEGEND_VALUES` distinct numbers, spaced so unevenly (the smallest gap under a quarter of
    the largest) that on a linear axis the close ones and their ticks run into each other."""
    uniq = np.unique(values.dropna().to_numpy(dtype=float))
    if not 2 < len(uniq) <= MAX_LEGEND_VALUES:
        return False
    gaps = np.diff(uniq)
    return float(gaps.min()) < 0.25 * float(gaps.max())


def is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _fmt(v: object) -> str:
    """A value as a legend entry names it: floats to 3 significant digits (log-spaced learning rates read
    "lr = 0.00966", not "lr = 0.009655"); the trained values themselves are untouched."""
    return f"{v:.3g}" if isinstance(v, float | np.floating) else str(v)


def short_label(v: object) -> str:
    """A value as a filter chip or axis tick shows it: floats to 4 significant digits, text cut to 16 characters."""
    text = f"{v:.4g}" if isinstance(v, float | np.floating) else str(v)
    return text if len(text) <= 16 else text[:15] + "…"


def value_colors(values: pd.Series) -> dict[str, str]:
    """Colour per distinct value (keyed by its label, :func:`_fmt`), the same in every figure of the page:
    numbers by the house continuous mapping (:func:`wslviz.plots.style.numeric_colors`, log-scaled when
    they span decades, 0 a decade below the smallest), anything else by the categorical palette in sorted order."""
    uniq = values.dropna().unique()
    if is_numeric(values):
        uniq = np.sort(uniq.astype(float))
        return dict(zip(map(_fmt, uniq), style.numeric_colors(uniq, str(values.name)).colors(), strict=True))
    return {g: style.CATEGORICAL[i % len(style.CATEGORICAL)] for i, g in enumerate(sorted(map(str, uniq)))}


def accuracy_curves(meta: pd.DataFrame, color_by: str, metric: str = "test_acc", model_col: str = "model_id",
                    highlight: Sequence[int] = (), max_models: int | None = MAX_CURVES, log_y: bool = False
                    ) -> go.Figure:
    """``metric`` against epoch, one line per model, coloured by the hyper-parameter ``color_by``.

    Numeric hyper-parameters get the continuous scale (log-spaced when they span > 20x) with a colour
    bar; others get one legend entry per value. ``highlight`` (checkpoint row indices) draws those
    models' curves in black on top. Models sharing a colour share one trace (lines broken by gaps), so
    a zoo of thousands of models stays fast. With more than ``max_models`` models (None: no limit),
    ``max_models`` evenly spaced ones are drawn (plus the highlighted ones) and the title says so; the
    colours still span every model. ``log_y``: the metric on a log axis (losses over decades)."""
    for c in (model_col, "epoch", metric, color_by):
        if c not in meta:
            raise ValueError(f"the metadata has no column {c!r}")
    df = meta[[model_col, "epoch", metric, color_by]].copy()
    df["row"] = np.arange(len(meta))
    df = df.sort_values([model_col, "epoch", "row"])
    per_model = df.groupby(model_col, sort=True)[color_by].first()
    fig = go.Figure()
    numeric = is_numeric(per_model) and per_model.nunique() > 1
    continuous = numeric and per_model.nunique() > MAX_LEGEND_VALUES
    if continuous:
        log = _log_scale(per_model)
        value = np.log10(per_model.to_numpy(float)) if log else per_model.to_numpy(float)
        lo, hi = np.nanmin(value), np.nanmax(value)
        t = (value - lo) / (hi - lo)
        if per_model.nunique() > MAX_COLOR_GROUPS:
            t = np.round(t * (MAX_COLOR_GROUPS - 1)) / (MAX_COLOR_GROUPS - 1)
        group = pd.Series(t, index=per_model.index)
        colors = {g: sample_colorscale(style.CONTINUOUS, [g])[0] for g in np.unique(t[~np.isnan(t)])}
    elif numeric:  # a small grid of values (learning rates, batch sizes): ordered colours, one legend entry each
        group = per_model.map(_fmt)
        colors = value_colors(per_model)
    else:
        group = per_model.astype(str)
        colors = value_colors(group)
    df["group"] = df[model_col].map(group)
    df["value"] = df[model_col].map(per_model)
    n_models, sampled = len(per_model), ""
    if max_models is not None and n_models > max_models:
        keep = set(per_model.index[np.linspace(0, n_models - 1, max_models).round().astype(int)])
        keep |= set(meta[model_col].iloc[list(highlight)])
        df = df[df[model_col].isin(keep)]
        sampled = f" ({len(keep):,} of {n_models:,} models drawn, evenly spaced)"
    for g, color in colors.items():
        part = df[df["group"] == g]
        x, y, custom = _broken_lines(part, model_col, metric)
        fig.add_trace(go.Scatter(
            x=x, y=y, customdata=custom, mode="lines", line={"color": color, "width": 1.3}, opacity=0.75,
            name=f"{color_by} = {g}" if not continuous else None, showlegend=not continuous, legendgroup=str(g),
            hovertemplate=f"model %{{customdata[0]}}<br>{color_by} = %{{customdata[1]}}<br>epoch %{{x}}<br>"
                          f"{metric} = %{{y:.4f}}<extra></extra>"))
    if continuous:
        _colorbar(fig, per_model, log, color_by)
    if len(highlight):
        models = meta[model_col].iloc[list(highlight)].unique()
        x, y, custom = _broken_lines(df[df[model_col].isin(models)], model_col, metric)
        fig.add_trace(go.Scatter(x=x, y=y, customdata=custom, mode="lines+markers", name="selected",
                                 line={"color": "black", "width": 2.5}, marker={"size": 5},
                                 hovertemplate=f"selected model %{{customdata[0]}}<br>{color_by} = "
                                               f"%{{customdata[1]}}<br>epoch %{{x}}<br>{metric} = %{{y:.4f}}"
                                               "<extra></extra>"))
    fig.update_layout(xaxis_title=label("epoch"), yaxis_title=label(metric), yaxis_type="log" if log_y else None)
    style.apply(fig, f"{label(metric).split(' (')[0].capitalize()} during training, one line per model, "
                     f"coloured by {color_by}{sampled}", height=460)
    # legend under the plot: the right edge belongs to the colour bar when there is one
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}, margin={"b": 110})
    return fig


def _broken_lines(part: pd.DataFrame, model_col: str, metric: str) -> tuple[list, list, list]:
    """x, y and hover data of several models' curves in one trace, separated by ``None`` gaps."""
    x: list = []
    y: list = []
    custom: list = []
    for model, rows in part.groupby(model_col, sort=True):
        x += rows["epoch"].tolist() + [None]
        y += rows[metric].tolist() + [None]
        value = _fmt(rows["value"].iloc[0])
        custom += [[str(model), value]] * len(rows) + [[None, None]]
    return x, y, custom


def _colorbar(fig: go.Figure, per_model: pd.Series, log: bool, title: str) -> None:
    """An invisible trace whose only job is the colour bar explaining a numeric colouring."""
    v = per_model.to_numpy(float)
    if log:
        lo, hi = np.log10(np.nanmin(v)), np.log10(np.nanmax(v))
        ticks = np.arange(np.floor(lo), np.ceil(hi) + 1)
        ticks = ticks[(ticks >= lo - 1e-9) & (ticks <= hi + 1e-9)]
        if len(ticks) < 2:
            ticks = np.array([lo, hi])
        bar = {"title": {"text": f"{title} (log)"}, "tickvals": ticks, "ticktext": [f"{10 ** t:.3g}" for t in ticks]}
        cmin, cmax = lo, hi
    else:
        cmin, cmax = float(np.nanmin(v)), float(np.nanmax(v))
        bar = {"title": {"text": title}}
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                             marker={"colorscale": style.CONTINUOUS, "cmin": cmin, "cmax": cmax, "color": [cmin],
                                     "showscale": True, "colorbar": bar}))


def final_metric_vs(meta: pd.DataFrame, final_rows: Sequence[int], x: str, metric: str = "test_acc",
                    highlight: Sequence[int] = (), log_y: bool = False) -> go.Figure:
    """The final checkpoints' ``metric`` against the hyper-parameter ``x``: a box per value when ``x`` is
    categorical or has few values, coloured as the curves of that value are; otherwise points coloured by
    ``x`` on the house continuous scale (as the raw curves are), on a log axis when it spans > 20x.
    ``log_y``: the metric on a log axis."""
    final = meta.iloc[list(final_rows)].copy()
    final["row"] = list(final_rows)
    fig = go.Figure()
    hover = "row %{customdata}<br>" + f"{x} = %{{x}}<br>{metric} = %{{y:.4f}}<extra></extra>"
    if is_numeric(final[x]) and final[x].nunique() > 8:
        colors = style.numeric_colors(final[x].to_numpy(float), x)
        fig.add_trace(go.Scatter(x=final[x], y=final[metric], mode="markers", customdata=final["row"], name="model",
                                 showlegend=False, hovertemplate=hover,
                                 marker={"color": colors.colors(), "size": 7, "opacity": 0.8}))
        if _log_scale(final[x]):
            fig.update_xaxes(type="log")
    else:
        order = sorted(final[x].dropna().unique(), key=lambda v: (isinstance(v, str), v))
        colors = value_colors(final[x])
        for v in order:  # one box per value, coloured as its curves are beside it
            part = final[final[x] == v]
            color = colors[_fmt(v) if is_numeric(final[x]) else str(v)]
            fig.add_trace(go.Box(x=part[x].astype(str), y=part[metric], boxpoints="all", jitter=0.4, pointpos=0,
                                 customdata=part["row"], name=str(v), showlegend=False,
                                 marker={"color": color, "size": 5}, line={"color": color}, hovertemplate=hover))
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(v) for v in order])
    chosen = final[final["row"].isin(list(highlight))]
    if len(chosen):
        fig.add_trace(go.Scatter(x=chosen[x] if fig.layout.xaxis.type != "category" else chosen[x].astype(str),
                                 y=chosen[metric], mode="markers", name="selected", customdata=chosen["row"],
                                 marker={"color": "black", "size": 11, "symbol": "diamond-open", "line": {"width": 2}},
                                 hovertemplate=hover))
    fig.update_layout(xaxis_title=label(x), yaxis_title=label(metric), showlegend=len(chosen) > 0,
                      yaxis_type="log" if log_y else None)
    return style.apply(fig, f"Final {label(metric).split(' (')[0]} by {x}")


def parallel_coordinates(final: pd.DataFrame, columns: Sequence[str], metric: str = "test_acc") -> go.Figure:
    """Parallel coordinates of the final checkpoints (one line per model): an axis per hyper-parameter in
    ``columns``, then ``metric``; lines coloured by ``metric`` on the house continuous scale.

    Categorical columns get integer codes (sorted values) with the values as tick text; numeric columns that
    span decades are drawn as log10 with the values as tick text. Drag along an axis to keep a range."""
    for c in [*columns, metric]:
        if c not in final:
            raise ValueError(f"the metadata has no column {c!r}")
    dims = []
    for c in [*columns, metric]:
        values = final[c]
        if not is_numeric(values):
            order = sorted(values.dropna().unique(), key=lambda v: (isinstance(v, str), str(v)))
            codes = values.map({v: i for i, v in enumerate(order)}).to_numpy(float)
            dims.append({"label": c, "values": codes, "tickvals": list(range(len(order))),
                         "ticktext": [short_label(v) for v in order], "range": [-0.25, len(order) - 0.75]})
        elif c != metric and _log_scale(values):
            v = values.to_numpy(float)
            lo, hi = np.log10(np.nanmin(v)), np.log10(np.nanmax(v))
            uniq = np.unique(v[np.isfinite(v)])
            # a small grid (learning rates): a tick at every value; else the decades inside the range
            ticks = np.log10(uniq) if len(uniq) <= MAX_LEGEND_VALUES else \
                np.arange(np.ceil(lo - 1e-9), np.floor(hi + 1e-9) + 1)
            dims.append({"label": f"{c} (log)", "values": np.log10(v), "range": [lo, hi], "tickvals": list(ticks),
                         "ticktext": [short_label(float(f"{10 ** t:.4g}")) for t in ticks]})
        elif c != metric and _crowded_grid(values):
            # a few values, some of them crowded together on a linear axis (weight decays 0, 1e-4, 1e-3): evenly
            # spaced in their order, each one its tick
            uniq = np.unique(values.dropna().to_numpy(float))
            dims.append({"label": f"{c} (ordered)", "values": np.searchsorted(uniq, values.to_numpy(float)),
                         "tickvals": list(range(len(uniq))), "ticktext": [short_label(float(v)) for v in uniq],
                         "range": [-0.25, len(uniq) - 0.75]})
        else:
            dims.append({"label": c if c != metric else label(metric).split(" (")[0], "values": values.to_numpy(float)})
    acc = final[metric].to_numpy(float)
    fig = go.Figure(go.Parcoords(dimensions=dims, labelangle=0, labelside="top",
                                 line={"color": acc, "colorscale": style.CONTINUOUS, "showscale": True,
                                       "cmin": float(np.nanmin(acc)) if len(acc) else 0.0,
                                       "cmax": float(np.nanmax(acc)) if len(acc) else 1.0,
                                       "colorbar": {"title": {"text": label(metric).split(" (")[0]}}}))
    style.apply(fig, f"Hyper-parameters against final {label(metric).split(' (')[0]}: one line per model",
                height=440)
    fig.update_layout(margin={"l": 80, "r": 40, "t": 120, "b": 30})  # room above the axes for their labels
    return fig


def _weight_tensors(arch: ArchitectureLike) -> list:
    """The trainable tensors of the layout (running statistics are not weights)."""
    return [p for p in arch.layout if p.trainable]


def _tail(text: str, width: int) -> str:
    """``text`` cut to its last ``width`` characters, marked with an ellipsis where cut."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return -(-n // cols), cols


def weight_histograms(arch: ArchitectureLike, weights: torch.Tensor, labels: Sequence[str],
                      bins: int = 40) -> go.Figure:
    """One panel per trainable tensor (``0.weight``, ``0.bias``, ...) with the histogram of its values
    for each checkpoint in ``weights [k, n_params]`` (overlaid, shared bins per panel)."""
    weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1, arch.n_params)
    if len(labels) != len(weights):
        raise ValueError(f"{len(weights)} checkpoints but {len(labels)} labels")
    params = _weight_tensors(arch)
    rows, cols = _grid(len(params))
    # three panels share a row: a long name (mlp_extractor.policy_net.0.weight) keeps its end, which tells it apart
    titles = [_tail(f"{p.name} {list(p.shape)}", 34) for p in params]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.07,
                        vertical_spacing=0.5 / rows)
    w = weights.numpy()
    for i, p in enumerate(params):
        block = w[:, p.slice]
        lo, hi = float(block.min()), float(block.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
        centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        r, c = divmod(i, cols)
        for k, name in enumerate(labels):
            counts, _ = np.histogram(block[k], bins=edges)
            fig.add_trace(go.Bar(x=centres, y=counts, width=width, name=name, legendgroup=name, showlegend=i == 0,
                                 marker={"color": style.CATEGORICAL[k % len(style.CATEGORICAL)]}, opacity=0.6,
                                 hovertemplate=f"{name}<br>value %{{x:.3f}}<br>count %{{y}}<extra></extra>"),
                          row=r + 1, col=c + 1)
        fig.update_xaxes(title_text="weight value", row=r + 1, col=c + 1)
        if c == 0:
            fig.update_yaxes(title_text="count", row=r + 1, col=c + 1)
    fig.update_layout(barmode="overlay", bargap=0)
    return style.apply(fig, "Weight histograms per layer", height=max(360, 270 * rows))


def singular_values(arch: ArchitectureLike, weights: torch.Tensor) -> dict[str, np.ndarray]:
    """Per weight matrix (linear ``[out, in]``; conv ``[out, in*k*k]``): singular values, largest first,
    as ``[k, min(out, in)]`` for ``weights [k, n_params]`` (one batched SVD per layer)."""
    weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1, arch.n_params)
    out = {}
    for p in arch.layout:
        if p.role == "weight" and len(p.shape) >= 2:
            mats = weights[:, p.slice].reshape(len(weights), p.shape[0], -1)
            out[p.name] = torch.linalg.svdvals(mats).numpy()
    return out


def singular_value_spectra(arch: ArchitectureLike, weights: torch.Tensor, labels: Sequence[str]) -> go.Figure:
    """One panel per weight matrix: its singular values sorted largest first (log scale), one line per
    checkpoint. Training typically grows a few leading directions above the random-init bulk."""
    spectra = singular_values(arch, weights)
    if len(labels) != len(next(iter(spectra.values()), [])):
        raise ValueError(f"{len(next(iter(spectra.values()), []))} checkpoints but {len(labels)} labels")
    rows, cols = _grid(len(spectra))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"{name}: {s.shape[1]} singular values"
                                                              for name, s in spectra.items()],
                        horizontal_spacing=0.07, vertical_spacing=0.5 / rows)
    for i, s in enumerate(spectra.values()):
        r, c = divmod(i, cols)
        index = np.arange(1, s.shape[1] + 1)
        for k, lab in enumerate(labels):
            fig.add_trace(go.Scatter(x=index, y=s[k], mode="lines+markers", name=lab, legendgroup=lab,
                                     showlegend=i == 0, marker={"size": 5},
                                     line={"color": style.CATEGORICAL[k % len(style.CATEGORICAL)]},
                                     hovertemplate=f"{lab}<br>σ_%{{x}} = %{{y:.4f}}<extra></extra>"),
                          row=r + 1, col=c + 1)
        # indices are integers: no 1.5 between the first and second singular value
        fig.update_xaxes(title_text="index i (largest first)", tick0=0, dtick=style.nice_step(s.shape[1], 4),
                         tickformat=",d", row=r + 1, col=c + 1)
        decades = np.log10(max(float(s.max()), 1e-12) / max(float(s.min()), 1e-12))
        fig.update_yaxes(type="log", row=r + 1, col=c + 1, title_text="singular value σ_i" if c == 0 else None,
                         dtick=1 if decades > 1 else None)
    return style.apply(fig, "Singular-value spectra per weight matrix", height=max(360, 270 * rows))


def final_accuracy_histogram(accuracy: Sequence[float] | np.ndarray, bins: int = 20) -> go.Figure:
    """Histogram of the final checkpoints' test accuracy (one count per model)."""
    fig = go.Figure(go.Histogram(x=np.asarray(accuracy, dtype=float), nbinsx=bins,
                                 marker={"color": style.CATEGORICAL[0]},
                                 hovertemplate="test accuracy %{x}<br>%{y} models<extra></extra>"))
    fig.update_layout(xaxis_title=label("test_acc"), yaxis_title="models (count)", bargap=0.05)
    return style.apply(fig, "Final test accuracy across the zoo", height=300)


def mean_curves(meta: pd.DataFrame, color_by: str, metric: str = "test_acc", model_col: str = "model_id",
                log_y: bool = False) -> go.Figure:
    """``metric`` against epoch per value of the hyper-parameter ``color_by``: the mean over that value's models
    with a band from the 25th to the 75th percentile, instead of hundreds of raw lines. Numeric values are
    coloured as everywhere (:func:`wslviz.plots.style.numeric_colors`); a numeric column with more than
    :data:`MAX_LEGEND_VALUES` values is cut into quartiles of its models. ``log_y``: the metric on a log axis."""
    for c in (model_col, "epoch", metric, color_by):
        if c not in meta:
            raise ValueError(f"the metadata has no column {c!r}")
    df = meta[[model_col, "epoch", metric, color_by]].dropna(subset=[metric])
    values = df.groupby(model_col)[color_by].first()
    if is_numeric(values) and values.nunique() > MAX_LEGEND_VALUES:
        bins = pd.qcut(values.rank(method="first"), 4, labels=False)
        edges = values.groupby(bins).agg(["min", "max"])
        names = {b: f"{_fmt(lo)} to {_fmt(hi)}" for b, (lo, hi) in edges.iterrows()}
        centre = values.groupby(bins).median()
        group, order = bins.map(names), [names[b] for b in sorted(names)]
        colors = dict(zip(order, style.numeric_colors(centre.sort_index().to_numpy(), color_by).colors(), strict=True))
    elif is_numeric(values):
        group, order = values.map(_fmt), [_fmt(v) for v in sorted(values.dropna().unique())]
        colors = value_colors(values)
    else:
        group = values.astype(str)
        order = sorted(group.unique())
        colors = value_colors(group)
    df = df.assign(group=df[model_col].map(group))
    fig = go.Figure()
    for name in order:
        stats = df[df["group"] == name].groupby("epoch")[metric]
        mean, lo, hi, count = stats.mean(), stats.quantile(0.25), stats.quantile(0.75), stats.count()
        color = colors[name]
        x = mean.index.to_numpy()
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi.to_numpy(), lo.to_numpy()[::-1]]),
                                 fill="toself", fillcolor=color, opacity=0.18, line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=mean.to_numpy(), mode="lines+markers", name=f"{color_by} = {name}",
                                 legendgroup=name, line={"color": color, "width": 2.2}, marker={"size": 5},
                                 customdata=count.to_numpy(),
                                 hovertemplate=f"{color_by} = {name}<br>epoch %{{x}}<br>mean {metric} = %{{y:.4f}}"
                                               "<br>%{customdata} models<extra></extra>"))
    fig.update_layout(xaxis_title=label("epoch"), yaxis_title=label(metric), yaxis_type="log" if log_y else None)
    style.integer_axes(fig, x=float(df["epoch"].max()) if len(df) else None)
    # two lines: in its half-width column the title would otherwise be cut off
    style.apply(fig, f"{label(metric).split(' (')[0].capitalize()} during training:<br>mean and interquartile band "
                     f"per {color_by}", height=460)
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}, margin={"b": 110, "t": 80})
    return fig
