"""The recovered forest of a zoo (:func:`wslviz.understand.lineage.lineage`) as a Plotly figure: the Atlas.

Trees are drawn top-down (a parent above its children), families side by side; nodes coloured and sized by any
metadata column, edges shaded by confidence; with the true parents, wrong edges are red and dashed and the true
edges that were missed are dotted. Pure functions: data in, figure out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from wslviz.plots import style
from wslviz.plots.zoo import is_numeric

CONFIDENCE_BANDS = ((0.5, 1.01, "confident (margin ≥ 0.5)", 2.5, 0.9), (0.1, 0.5, "margin 0.1-0.5", 1.6, 0.6),
                    (-0.01, 0.1, "uncertain (margin < 0.1)", 1.0, 0.35))
"""Edge classes by confidence: (low, high, legend, width, opacity)."""
INK = "#444444"
MAX_CATEGORIES = 12
"""A numeric colour column with at most this many values (families, depths, seeds) is drawn as categories."""


def tree_layout(parent: np.ndarray, family: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(x, y)`` of the nodes of a forest (``parent``: index or -1): each tree's leaves at consecutive
    x in depth-first order, a parent centred over its children, ``y = -depth``; trees side by side by family."""
    n = len(parent)
    children: dict[int, list[int]] = {i: [] for i in range(n)}
    for v, u in enumerate(parent):
        if u >= 0:
            children[int(u)].append(v)
    x, y = np.zeros(n), np.zeros(n)
    cursor = 0.0

    def place(v: int, depth: int) -> float:
        nonlocal cursor
        y[v] = -depth
        if not children[v]:
            x[v], cursor = cursor, cursor + 1.0
        else:
            x[v] = float(np.mean([place(c, depth + 1) for c in children[v]]))
        return x[v]

    for f in range(int(family.max()) + 1 if n else 0):
        for root in [v for v in range(n) if family[v] == f and parent[v] < 0]:
            place(root, 0)
        cursor += 1.0  # a gap between families
    return x, y


def _segments(x: np.ndarray, y: np.ndarray, pairs: Sequence[tuple[int, int]]) -> tuple[list, list]:
    xs, ys = [], []
    for u, v in pairs:
        xs += [x[u], x[v], None]
        ys += [y[u], y[v], None]
    return xs, ys


def lineage_figure(parent: np.ndarray, family: np.ndarray, confidence: np.ndarray, labels: Sequence[str],
                   rows: np.ndarray, color: pd.Series | None = None, size: pd.Series | None = None,
                   truth: np.ndarray | None = None, selected: Sequence[int] = (), title: str = "",
                   height: int = 560) -> go.Figure:
    """The forest: ``parent`` / ``family`` / ``confidence`` per node (as :class:`~wslviz.understand.lineage.Lineage`
    holds them), ``labels`` for hovering, ``rows`` (zoo rows, kept as each point's ``customdata`` for selection),
    ``color`` and ``size`` (metadata values per node, or None), ``truth`` (true parent indices, -1 for roots, or
    None), ``selected`` zoo rows outlined."""
    x, y = tree_layout(parent, family)
    fig = go.Figure()
    edges = [(int(u), v) for v, u in enumerate(parent) if u >= 0]
    wrong = {(u, v) for u, v in edges if truth is not None and truth[v] != u}
    for lo, hi, name, width, opacity in CONFIDENCE_BANDS:
        band = [(u, v) for u, v in edges if (u, v) not in wrong and lo <= np.nan_to_num(confidence[v], nan=1.0) < hi]
        if band:
            xs, ys = _segments(x, y, band)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip", opacity=opacity,
                                     line={"color": INK, "width": width}))
    if wrong:
        xs, ys = _segments(x, y, sorted(wrong))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="wrong edge", hoverinfo="skip",
                                 line={"color": style.NAIVE_COLOR, "width": 2, "dash": "dash"}))
    if truth is not None:
        missed = [(int(truth[v]), v) for v in range(len(truth)) if truth[v] >= 0 and parent[v] != truth[v]]
        if missed:
            xs, ys = _segments(x, y, missed)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="true edge, missed", hoverinfo="skip",
                                     line={"color": style.ALIGNED_COLOR, "width": 1.5, "dash": "dot"}))
    base = 12 if len(rows) <= 60 else 9 if len(rows) <= 120 else 7  # leaves stay apart at a few hundred nodes
    marker: dict = {"size": base, "line": {"width": [3 if r in set(selected) else 0.5 for r in rows],
                                         "color": INK}}
    if size is not None and is_numeric(size):
        v = pd.to_numeric(size, errors="coerce").to_numpy(dtype=float)
        span = np.nanmax(v) - np.nanmin(v) if np.isfinite(v).any() else 0.0
        marker["size"] = np.where(np.isfinite(v), base * (0.6 + (v - np.nanmin(v)) / (span or 1.0)), base * 0.6)
    hover = [f"{label}<br>family {f}" + (f"<br>edge confidence {c:.2f}" if np.isfinite(c) else "<br>root")
             for label, f, c in zip(labels, family, confidence, strict=True)]
    if color is not None and is_numeric(color) and color.nunique() > MAX_CATEGORIES:
        marker.update(color=pd.to_numeric(color, errors="coerce"), colorscale=style.CONTINUOUS, showscale=True,
                      colorbar={"title": {"text": str(color.name)}, "thickness": 12})
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", marker=marker, name="models", text=hover,
                                 hoverinfo="text", customdata=np.asarray(rows)[:, None]))
    else:
        groups = pd.Series(["" if color is None else str(c) for c in (color if color is not None else rows)])
        for i, g in enumerate(pd.unique(groups)):
            keep = (groups == g).to_numpy()
            m = {**marker, "color": style.CATEGORICAL[i % len(style.CATEGORICAL)],
                 "size": np.asarray(marker["size"])[keep] if np.ndim(marker["size"]) else marker["size"],
                 "line": {"width": np.asarray(marker["line"]["width"])[keep], "color": INK}}
            fig.add_trace(go.Scatter(x=x[keep], y=y[keep], mode="markers", marker=m,
                                     name=g if color is not None else "models", text=np.asarray(hover)[keep],
                                     hoverinfo="text", customdata=np.asarray(rows)[keep][:, None]))
    depth = int(-y.min()) if len(y) else 0
    style.apply(fig, title, height)
    fig.update_layout(xaxis={"visible": False},
                      yaxis={"tickvals": [-d for d in range(depth + 1)], "ticktext": [f"depth {d}" for d in
                                                                                     range(depth + 1)],
                             "zeroline": False}, legend={"orientation": "h", "y": -0.05},
                      margin={"l": 60, "r": 20, "t": 50, "b": 40}, dragmode="select",
                      legend_title_text=str(color.name) if color is not None else None)
    return fig
