"""Figures for the Predict page: leaderboard heatmap, predicted-vs-true scatter, feature importances,
and retrieval precision per feature space."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from wslviz.plots import style
from wslviz.plots.zoo import label


def leaderboard_figure(board: pd.DataFrame, metric: str = "r2", title: str | None = None) -> go.Figure:
    """Heatmap of one score (``r2``, ``kendall_tau``, ``accuracy``) of a :func:`wslviz.represent.predict.leaderboard`
    table: feature sets down, predictors across, the value written in each cell."""
    if metric not in board:
        raise ValueError(f"the leaderboard has no column {metric!r}")
    grid = board.pivot_table(index="features", columns="model", values=metric, aggfunc="first")
    grid = grid.loc[grid.max(axis=1).sort_values().index]
    z = grid.to_numpy(dtype=float)
    fig = go.Figure(go.Heatmap(
        z=z, x=list(grid.columns), y=list(grid.index), colorscale=style.CONTINUOUS,
        zmin=min(0.0, float(np.nanmin(z))) if np.isfinite(z).any() else 0, zmax=1,
        text=np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.3f}")(z), texttemplate="%{text}",
        colorbar={"title": {"text": metric}},
        hovertemplate="features %{y}<br>predictor %{x}<br>" + metric + " = %{z:.3f}<extra></extra>"))
    fig.update_layout(xaxis_title="predictor", yaxis_title="feature set")
    return style.apply(fig, title, height=max(260, 60 + 55 * len(grid)))


def predicted_vs_true(truth: np.ndarray, predicted: np.ndarray, target: str, color: np.ndarray | None = None,
                      color_label: str | None = None, rows: np.ndarray | None = None,
                      title: str | None = None) -> go.Figure:
    """Out-of-fold predictions against the true values of a numeric target, with the identity line;
    ``color`` (e.g. epoch) colours the points, ``rows`` goes to each point's hover and ``customdata``."""
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    rows = np.arange(len(truth)) if rows is None else np.asarray(rows)
    marker: dict = {"size": 6, "opacity": 0.7}
    if color is not None:
        marker.update(color=np.asarray(color, dtype=float), colorscale=style.CONTINUOUS, showscale=True,
                      colorbar={"title": {"text": color_label or ""}})
    fig = go.Figure(go.Scattergl(x=truth, y=predicted, mode="markers", marker=marker, customdata=rows,
                                 name="checkpoints",
                                 hovertemplate="row %{customdata}<br>true %{x:.4f}<br>predicted %{y:.4f}"
                                               "<extra></extra>"))
    finite = np.concatenate([truth, predicted])
    finite = finite[np.isfinite(finite)]
    if len(finite):
        lo, hi = float(finite.min()), float(finite.max())
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect prediction",
                                 line={"color": "grey", "dash": "dash"}, hoverinfo="skip"))
    fig.update_layout(xaxis_title=f"true {label(target)}", yaxis_title=f"predicted {label(target)}")
    style.apply(fig, title)
    # below the axes: beside them the legend would sit on top of the colour bar
    fig.update_layout(legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0})
    return fig


def confusion_figure(truth: np.ndarray, predicted: np.ndarray, target: str, title: str | None = None) -> go.Figure:
    """Confusion matrix (counts) of out-of-fold predictions of a categorical target."""
    classes = sorted(set(map(str, truth)) | set(map(str, predicted)))
    table = pd.crosstab(pd.Categorical(list(map(str, truth)), classes), pd.Categorical(list(map(str, predicted)),
                                                                                        classes), dropna=False)
    fig = go.Figure(go.Heatmap(z=table.to_numpy(), x=classes, y=classes, colorscale=style.CONTINUOUS,
                               texttemplate="%{z}", colorbar={"title": {"text": "checkpoints"}},
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z} checkpoints<extra></extra>"))
    fig.update_layout(xaxis_title=f"predicted {target}", yaxis_title=f"true {target}")
    return style.apply(fig, title)


def importance_figure(importances: pd.Series, top: int = 20, title: str | None = None) -> go.Figure:
    """Horizontal bars of the ``top`` largest feature importances (mean drop of the score when a
    feature is shuffled on held-out folds)."""
    s = importances.sort_values(ascending=False).head(top)[::-1]
    fig = go.Figure(go.Bar(x=s.to_numpy(), y=list(s.index), orientation="h", marker_color=style.CATEGORICAL[0],
                           hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    fig.update_layout(xaxis_title="score drop when shuffled", yaxis_title="feature")
    style.apply(fig, title, height=max(300, 60 + 22 * len(s)))
    # long feature names and the axis titles grow the margins instead of being cut off in a narrow column
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True, title_standoff=8)
    return fig.update_layout(margin={"l": 10, "r": 10})


def retrieval_figure(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Grouped bars of a :func:`wslviz.represent.retrieval.retrieval_benchmark` table: per feature space, the
    precision@k of its neighbours against each function-space similarity."""
    fig = go.Figure()
    for i, (fn, part) in enumerate(table.groupby("function", sort=False)):
        fig.add_trace(go.Bar(x=part["features"], y=part["precision_at_k"], name=f"vs {fn}",
                             marker_color=style.CATEGORICAL[i % len(style.CATEGORICAL)],
                             hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(barmode="group", xaxis_title="feature space",
                      yaxis_title="precision@k against function-space neighbours", yaxis_range=[0, 1])
    return style.apply(fig, title)
