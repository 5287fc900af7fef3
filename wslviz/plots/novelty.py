"""Figures for honest novelty: generated models against the noise frontier (Zeng et al. 2025)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from wslviz.plots import style

MEASURES = {"error_novelty": "error-IoU novelty (1 - max IoU of misclassified test sets with any zoo model)",
            "distance": "L2 distance to the nearest aligned zoo checkpoint"}


def frontier(points: pd.DataFrame, line: pd.DataFrame, generated: Mapping[str, pd.DataFrame],
             measure: str = "error_novelty", reference: float | None = None) -> go.Figure:
    """Accuracy against novelty: the noisy zoo models (``points``, grey, with their ``amplitude``), the
    frontier (``line``: columns ``measure`` and ``accuracy``, see
    :meth:`wslviz.generation.novelty.NoiseFrontier.line`), and each generator's models (``generated``:
    name -> rows with ``accuracy`` and ``measure``) with a large marker at their mean. Points above the line
    are beyond the frontier. ``reference``: a dashed line at that accuracy (the zoo's median final
    accuracy)."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=points[measure], y=points["accuracy"], mode="markers", name="zoo + noise",
                             marker={"color": "lightgrey", "size": 5},
                             customdata=points[["amplitude"]].to_numpy(),
                             hovertemplate="noise %{customdata[0]}<br>novelty %{x:.3f}<br>accuracy %{y:.3f}"
                             "<extra></extra>"))
    c = line.sort_values(measure)
    fig.add_trace(go.Scatter(x=c[measure], y=c["accuracy"], mode="lines", name="noise frontier",
                             line={"color": "black", "dash": "dot", "width": 2},
                             hovertemplate="frontier<br>novelty %{x:.3f}<br>accuracy %{y:.3f}<extra></extra>"))
    for i, (name, df) in enumerate(generated.items()):
        color = style.CATEGORICAL[i % len(style.CATEGORICAL)]
        fig.add_trace(go.Scatter(x=df[measure], y=df["accuracy"], mode="markers", name=name, legendgroup=name,
                                 marker={"color": color, "size": 8, "opacity": 0.6},
                                 hovertemplate=f"{name}<br>novelty %{{x:.3f}}<br>accuracy %{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[float(np.mean(df[measure]))], y=[float(np.mean(df["accuracy"]))], mode="markers",
                                 name=f"{name} (mean)", legendgroup=name, showlegend=False,
                                 marker={"color": color, "size": 16, "symbol": "diamond",
                                         "line": {"width": 1.5, "color": "black"}},
                                 hovertemplate=f"{name} mean<br>novelty %{{x:.3f}}<br>accuracy %{{y:.3f}}"
                                 "<extra></extra>"))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dash", line_color="grey",
                      annotation_text=f"zoo final median {reference:.3f}", annotation_position="bottom left")
    fig.update_layout(xaxis_title=MEASURES[measure], yaxis_title="test accuracy",
                      legend={"orientation": "h", "y": -0.2})
    return style.apply(fig, "Generated models against the noise frontier")
