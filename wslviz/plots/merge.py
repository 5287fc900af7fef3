"""Figures for the merging lab: accuracy per task, task-vector similarity, TIES sign conflicts, sweeps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from wslviz.plots import style


def task_accuracy_bars(table: pd.DataFrame, highlight: Sequence[str] = ("merged", "ensemble of the inputs")
                       ) -> go.Figure:
    """Grouped bars: accuracy per task (and ``average``) for each model of ``table`` (column ``model``, then
    one column per task, as :func:`wslviz.generation.merge_lab.merge_report` returns). The ``highlight``
    models are drawn in colour, the inputs in shades of grey."""
    tasks = [c for c in table.columns if c != "model"]
    fig = go.Figure()
    greys = [f"rgba(120,120,120,{a:.2f})" for a in np.linspace(0.35, 0.8, max(1, len(table)))]
    for i, row in table.reset_index(drop=True).iterrows():
        name = str(row["model"])
        color = style.CATEGORICAL[list(highlight).index(name) % len(style.CATEGORICAL)] if name in highlight \
            else greys[i % len(greys)]
        fig.add_trace(go.Bar(x=tasks, y=[row[t] for t in tasks], name=name, marker_color=color,
                             hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_layout(barmode="group", xaxis_title="task", yaxis_title="test accuracy",
                      legend={"orientation": "h", "y": -0.25})
    return style.apply(fig, "Accuracy per task: merged model vs its inputs and their ensemble")


def similarity_heatmap(matrix: np.ndarray, labels: Sequence[str]) -> go.Figure:
    """Cosine similarities between task vectors (``matrix`` [K, K]) as a heatmap on [-1, 1]."""
    fig = go.Figure(go.Heatmap(z=np.asarray(matrix), x=list(labels), y=list(labels), zmin=-1, zmax=1,
                               colorscale="RdBu", reversescale=True, colorbar={"title": "cosine"},
                               hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(yaxis={"autorange": "reversed"})
    return style.apply(fig, "Task-vector cosine similarity")


def sign_conflict_bars(conflicts: pd.DataFrame) -> go.Figure:
    """Per tensor, the share of parameters whose trimmed task vectors disagree in sign (``conflict_share``)
    next to the share any of them touches (``active_share``)."""
    fig = go.Figure()
    for col, name, color in (("active_share", "touched by a trimmed task vector", style.CATEGORICAL[7]),
                             ("conflict_share", "sign conflict", style.CATEGORICAL[3])):
        fig.add_trace(go.Bar(x=conflicts["tensor"], y=conflicts[col], name=name, marker_color=color,
                             hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(barmode="group", xaxis_title="tensor", yaxis_title="share of parameters",
                      legend={"orientation": "h", "y": -0.25})
    return style.apply(fig, "TIES: sign conflicts per tensor")


def sweep_curve(curve: pd.DataFrame, param: str, reference: float | None = None,
                reference_label: str = "best input (average)") -> go.Figure:
    """Accuracy per task and ``average`` (thick) along a sweep of ``param`` (``lam`` or ``t``; ``curve`` from
    :func:`wslviz.generation.merge_lab.merge_sweep`); ``reference`` draws a dashed line (e.g. the best
    input's average accuracy)."""
    fig = go.Figure()
    tasks = [c for c in curve.columns if c not in (param, "average")]
    for i, t in enumerate(tasks):
        fig.add_trace(go.Scatter(x=curve[param], y=curve[t], mode="lines+markers", name=t,
                                 line={"color": style.CATEGORICAL[i % len(style.CATEGORICAL)], "width": 1.5}))
    fig.add_trace(go.Scatter(x=curve[param], y=curve["average"], mode="lines+markers", name="average",
                             line={"color": "black", "width": 3}))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dash", line_color="grey",
                      annotation_text=f"{reference_label} {reference:.3f}", annotation_position="bottom right")
    label = {"lam": "λ (scale of the summed task vectors)", "t": "t (0 = first model, 1 = second)"}.get(param, param)
    fig.update_layout(xaxis_title=label, yaxis_title="test accuracy", legend={"orientation": "h", "y": -0.25})
    return style.apply(fig, f"Accuracy along the sweep of {param}")
