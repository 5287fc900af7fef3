"""Figures for loss landscapes and mode connectivity (data from :mod:`wslviz.understand.landscape`,
:mod:`~wslviz.understand.surfaces` and :mod:`~wslviz.understand.curves`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sequential
from plotly.subplots import make_subplots

from wslviz.plots import style
from wslviz.plots.zoo import file_names
from wslviz.understand.curves import BezierFit
from wslviz.understand.surfaces import Surface

METHOD_COLORS = {"naive": style.NAIVE_COLOR, "weight": style.ALIGNED_COLOR, "activation": style.CATEGORICAL[0],
                 "straight line": style.NAIVE_COLOR, "Bezier curve": style.CATEGORICAL[4]}
METHOD_LABELS = {"naive": "naive (as trained)", "weight": "weight matching", "activation": "activation matching"}
MARKER_COLOR = "#00e5ff"
# The house loss scale without its final near-black stop: Streamlit's chart renderer drew that stop
# (#000004) as light violet, so the highest losses looked low.
LOSS_COLORS = getattr(sequential, style.LOSS_SCALE)[:-1]


def short_labels(metadata: pd.DataFrame) -> list[str]:
    """A short label per checkpoint row for narrow pickers and hovers: ``#17 · m3 · e20 · 0.930`` (row, file for a
    folder of checkpoints, model id, epoch and test accuracy where the metadata has them)."""
    parts = [[f"#{r}" for r in range(len(metadata))]]
    files = file_names(metadata, 24)
    if files is not None:
        parts.append(files)
    for col, prefix in (("model_id", "m"), ("epoch", "e")):
        if col in metadata:
            parts.append([f"{prefix}{v}" for v in metadata[col].tolist()])
    if "test_acc" in metadata:
        parts.append([f"{v:.3f}" if pd.notna(v) else "" for v in metadata["test_acc"].tolist()])
    return [" · ".join(p for p in row if p) for row in zip(*parts, strict=True)]


def _z(values: np.ndarray, log: bool) -> np.ndarray:
    return np.log10(np.clip(values, 1e-12, None)) if log else values


def path_figure(curves: pd.DataFrame, by: str = "method", title: str | None = None, log: bool = False) -> go.Figure:
    """Loss (top) and accuracy (bottom) against t for every group of a long table with columns ``by``,
    ``t``, ``loss``, ``accuracy`` (e.g. :func:`wslviz.understand.landscape.paths`); the models sit at t = 0 and 1.
    With a ``split`` column, each group is drawn per split (the training split dashed) on the same axes;
    ``log`` puts the loss on a log axis."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    splits = list(dict.fromkeys(curves["split"])) if "split" in curves else [None]
    for key, g in curves.groupby(by, sort=False):
        color = METHOD_COLORS.get(str(key))
        for split in splits:
            part = g if split is None else g[g["split"] == split]
            name = METHOD_LABELS.get(str(key), str(key)) + ("" if split is None else f", {split}")
            dash = "dash" if split == "train" else None
            for row, col in ((1, "loss"), (2, "accuracy")):
                fig.add_trace(go.Scatter(x=part["t"], y=part[col], mode="lines+markers", name=name, legendgroup=name,
                                         showlegend=row == 1, line={"color": color, "dash": dash}, marker={"size": 4},
                                         hovertemplate=f"{name}<br>t=%{{x:.3f}}<br>{col}=%{{y:.4f}}<extra></extra>"),
                              row=row, col=1)
    for t in (0.0, 1.0):
        fig.add_vline(x=t, line={"dash": "dot", "color": "gray"})
    fig.update_yaxes(title_text="loss" + (" (log scale)" if log else ""), type="log" if log else None, row=1, col=1)
    fig.update_yaxes(title_text="accuracy", row=2, col=1)
    fig.update_xaxes(title_text="t (0 = model A, 1 = model B)", row=2, col=1)
    return style.apply(fig, title, height=560)


def line_figure(df: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Loss and accuracy along one random direction (columns ``alpha``, ``loss``, ``accuracy``)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=df["alpha"], y=df["loss"], name="loss", line={"color": style.NAIVE_COLOR}))
    fig.add_trace(go.Scatter(x=df["alpha"], y=df["accuracy"], name="accuracy",
                             line={"color": style.ALIGNED_COLOR, "dash": "dash"}), secondary_y=True)
    fig.add_vline(x=0.0, line={"dash": "dot", "color": "gray"})
    fig.update_xaxes(title_text="step along the direction (0 = the model; 1 = every filter moved by its own norm)")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="accuracy", secondary_y=True)
    return style.apply(fig, title)


def barrier_heatmaps(matrices: Mapping[str, np.ndarray], labels: Sequence[str], metric: str = "loss",
                     title: str | None = None) -> go.Figure:
    """Pairwise barrier matrices side by side (e.g. naive and weight-matched) on one colour scale (pale: low
    barrier, dark: high), every cell labelled with its value (up to 12 models; beyond, the hover says it)."""
    names = list(matrices)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[METHOD_LABELS.get(n, n) for n in names],
                        horizontal_spacing=0.12)
    zmax = max(float(np.max(m)) for m in matrices.values()) if names else 1.0
    short = [str(s) for s in labels]
    numbers = {"texttemplate": "%{z:.2f}", "textfont": {"size": 11}} if len(short) <= 12 else {}
    for i, name in enumerate(names):
        fig.add_trace(go.Heatmap(z=matrices[name], x=short, y=short, coloraxis="coloraxis", **numbers,
                                 hovertemplate=f"%{{y}} -> %{{x}}<br>{metric} barrier=%{{z:.4f}}<extra>{name}</extra>"),
                      row=1, col=i + 1)
        fig.update_xaxes(title_text="model", type="category", row=1, col=i + 1)
        fig.update_yaxes(title_text="model", type="category", autorange="reversed", row=1, col=i + 1)
    fig.update_layout(coloraxis={"colorscale": LOSS_COLORS, "cmin": 0.0, "cmax": max(zmax, 1e-9),
                                 "colorbar": {"title": f"{metric} barrier"}})
    return style.apply(fig, title, height=460)


N_LEVELS = 15
UNDEFINED_COLOR = "#bdbdbd"


def finite_range(values: Sequence[np.ndarray]) -> tuple[float, float]:
    """The smallest and largest finite value over ``values`` (``(0, 1)`` when none is finite)."""
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        return 0.0, 1.0
    return float(min(v.min() for v in finite)), float(max(v.max() for v in finite))


def undefined_note(s: Surface) -> str:
    """What a surface's grey cells are, in words ("" when every point has a finite value)."""
    parts = []
    total = len(s.x) * len(s.y)
    if s.info.get("undefined"):
        parts.append(f"{s.info['undefined']} of {total} grid points grey: {s.info['undefined_reason']}")
    if s.info.get("diverged"):
        parts.append(f"{s.info['diverged']} of {total} grid points grey: the loss is not finite there")
    return "; ".join(parts)


def _contour(s: Surface, z: np.ndarray, zrange: tuple[float, float], scale: str | list[str], colorbar: str | None,
             show_legend: bool) -> list[go.BaseTraceType]:
    """A smoothed heatmap of ``z`` on the colour range ``zrange`` with contour lines over it (a contour
    trace coloured as a heatmap mis-coloured values above its last level in Streamlit's plotly.js), and
    markers for the surface's models and trajectory."""
    lo, hi = zrange
    hi = hi if hi > lo else lo + 1e-9
    missing = ~np.isfinite(z)
    traces: list[go.BaseTraceType] = []
    if missing.any():  # grey where the surface has no value (not a network, or a diverged loss), under the map
        traces.append(go.Heatmap(x=s.x, y=s.y, z=np.where(missing, 1.0, np.nan), showscale=False, hoverinfo="skip",
                                 colorscale=[[0, UNDEFINED_COLOR], [1, UNDEFINED_COLOR]], zmin=0, zmax=1))
    traces += [
        go.Heatmap(x=s.x, y=s.y, z=z, zmin=lo, zmax=hi, zsmooth="best", colorscale=scale,
                   showscale=colorbar is not None, colorbar={"title": colorbar} if colorbar else None,
                   hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>value=%{z:.4f}<extra></extra>"),
        go.Contour(x=s.x, y=s.y, z=z, showscale=False, showlegend=False, hoverinfo="skip",
                   line={"width": 0.6, "color": "rgba(0,0,0,0.45)"},
                   contours={"coloring": "none", "start": lo, "end": hi, "size": (hi - lo) / N_LEVELS}),
    ]
    if s.path is not None:
        traces.append(go.Scatter(x=s.path[:, 0], y=s.path[:, 1], mode="lines+markers", name="trajectory",
                                 showlegend=show_legend, line={"color": MARKER_COLOR, "width": 2},
                                 marker={"size": 6, "color": MARKER_COLOR}))
    if s.points:
        names = list(s.points)
        xy = np.array([s.points[n] for n in names])
        traces.append(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers+text", text=_model_names(names),
                                 textposition="top center",
                                 name="models", showlegend=show_legend, textfont={"color": "black", "size": 14},
                                 marker={"size": 12, "color": MARKER_COLOR, "symbol": "star",
                                         "line": {"color": "black", "width": 1}}))
    return traces


def _model_names(names: Sequence[str]) -> list[str]:
    """The models as every page names them: A, B, C (the library's surfaces call them a, b, c)."""
    return [n.upper() if len(n) == 1 else n for n in names]


def _legend_below(fig: go.Figure) -> go.Figure:
    """Legend under the plot, so it does not cover the colour bar's title."""
    fig.update_layout(legend={"orientation": "h", "x": 0.0, "y": -0.2, "yanchor": "top"}, margin={"b": 90})
    return fig


def _colorbar_title(metric: str, log: bool) -> str:
    return "log10 loss" if (metric == "loss" and log) else metric


def _scale(metric: str) -> str | list[str]:
    return LOSS_COLORS if metric == "loss" else style.CONTINUOUS


def surface_contour(s: Surface, metric: str = "loss", log: bool = True, title: str | None = None) -> go.Figure:
    """Contour map of a :class:`~wslviz.understand.surfaces.Surface` with its models (and trajectory) marked."""
    z = _z(getattr(s, metric), log and metric == "loss")
    fig = go.Figure(_contour(s, z, finite_range([z]), _scale(metric), _colorbar_title(metric, log), True))
    note = undefined_note(s)
    title = f"{title}<br><sup>{note}</sup>" if title and note else (title or (f"<sup>{note}</sup>" if note else None))
    fig.update_xaxes(title_text=s.info.get("x_label", "x"))
    fig.update_yaxes(title_text=s.info.get("y_label", "y"), scaleanchor="x" if s.info.get("kind") == "plane" else None)
    return _legend_below(style.apply(fig, title, height=520))


def surfaces_side_by_side(surfaces: Mapping[str, Surface], metric: str = "loss", log: bool = True,
                          title: str | None = None) -> go.Figure:
    """Several surfaces (e.g. the naive and the aligned plane) next to each other on one colour scale."""
    names = list(surfaces)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=[METHOD_LABELS.get(n, n) for n in names],
                        horizontal_spacing=0.08)
    values = {n: _z(getattr(s, metric), log and metric == "loss") for n, s in surfaces.items()}
    zrange = finite_range(list(values.values()))
    notes = [f"{METHOD_LABELS.get(n, n)}: {undefined_note(s)}" for n, s in surfaces.items() if undefined_note(s)]
    if notes:
        title = "<br>".join(([title] if title else []) + [f"<sup>{n}</sup>" for n in notes])
    for i, name in enumerate(names):
        s = surfaces[name]
        bar = _colorbar_title(metric, log) if i == len(names) - 1 else None
        for trace in _contour(s, values[name], zrange, _scale(metric), bar, i == 0):
            fig.add_trace(trace, row=1, col=i + 1)
        fig.update_xaxes(title_text=s.info.get("x_label", "x"), row=1, col=i + 1)
        fig.update_yaxes(title_text=s.info.get("y_label", "y"), row=1, col=i + 1)
    return _legend_below(style.apply(fig, title, height=520))


def surface_3d(s: Surface, metric: str = "loss", log: bool = False, title: str | None = None) -> go.Figure:
    """3D surface plot of a :class:`~wslviz.understand.surfaces.Surface`; its models marked at the nearest grid
    value."""
    z = _z(getattr(s, metric), log and metric == "loss")
    zlabel = _colorbar_title(metric, log)
    scale = _scale(metric)
    fig = go.Figure(go.Surface(x=s.x, y=s.y, z=z, colorscale=scale, colorbar={"title": zlabel},
                               hovertemplate="x=%{x:.3f}<br>y=%{y:.3f}<br>value=%{z:.4f}<extra></extra>"))
    if s.points:
        names = list(s.points)
        xy = np.array([s.points[n] for n in names])
        ix = np.abs(s.x[None, :] - xy[:, :1]).argmin(1)
        iy = np.abs(s.y[None, :] - xy[:, 1:]).argmin(1)
        fig.add_trace(go.Scatter3d(x=xy[:, 0], y=xy[:, 1], z=z[iy, ix], mode="markers+text",
                                   text=_model_names(names), name="models", marker={"size": 5, "color": MARKER_COLOR}))
    # short axis titles (the long ones ran out of the frame) and a camera that keeps the box inside it
    fig.update_layout(scene={"xaxis_title": _short(s.info.get("x_label", "x")),
                             "yaxis_title": _short(s.info.get("y_label", "y")), "zaxis_title": zlabel,
                             "aspectmode": "cube", "camera": {"eye": {"x": 1.6, "y": -1.6, "z": 1.0}}})
    style.apply(fig, title, height=560)
    fig.update_layout(margin={"l": 0, "r": 0, "t": 50 if title else 10, "b": 0})
    return fig


def _short(axis_label: str) -> str:
    """An axis label without its parenthesised note: ``"step along d1 (filter-normalised)"`` -> ``"step along d1"``."""
    return axis_label.split(" (", 1)[0]


def bezier_figure(fit: BezierFit, title: str | None = None) -> go.Figure:
    """The trained Bezier curve beside the straight line: loss and accuracy against t."""
    curves = pd.concat([fit.line.assign(path="straight line"), fit.curve.assign(path="Bezier curve")])
    return path_figure(curves, by="path", title=title)


def sharpness_figure(table: pd.DataFrame, x: str, x_label: str | None = None, by: str | None = None,
                     title: str | None = None) -> go.Figure:
    """Top Hessian eigenvalue (left) and Hutchinson trace with +-2 standard errors (right) against column ``x``
    (e.g. test accuracy or epoch) of a :func:`wslviz.understand.sharpness.sharpness` table with an ``x`` column
    and a ``label`` column (hover); ``by`` (e.g. ``model_id``) joins each group's points in order of ``x``."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=["top Hessian eigenvalue (power iteration)", "Hessian trace (Hutchinson)"])
    groups = table.groupby(by, sort=False) if by else [(None, table)]
    for i, (key, g) in enumerate(groups):
        g = g.sort_values(x)
        color = style.CATEGORICAL[i % len(style.CATEGORICAL)]
        name = "checkpoints" if key is None else f"{by} {key}"
        mode = "lines+markers" if by else "markers"
        for col, value, error in ((1, "top_eigenvalue", None), (2, "trace", 2 * g["trace_se"])):
            fig.add_trace(go.Scatter(x=g[x], y=g[value], mode=mode, name=name, legendgroup=name, showlegend=col == 1,
                                     marker={"size": 8, "color": color}, line={"color": color},
                                     error_y=None if error is None else {"type": "data", "array": error,
                                                                         "thickness": 1},
                                     text=g["label"], hovertemplate=f"%{{text}}<br>{x}=%{{x}}<br>{value}=%{{y:.4g}}"
                                     "<extra></extra>"), row=1, col=col)
    for col in (1, 2):
        fig.update_xaxes(title_text=x_label or x, row=1, col=col)
    fig.update_yaxes(title_text="λ_max of the loss Hessian", row=1, col=1)
    fig.update_yaxes(title_text="tr(H) ± 2 s.e.", row=1, col=2)
    return _legend_below(style.apply(fig, title, height=460))
