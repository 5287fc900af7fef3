"""Figures for low-rank adapters on the Symmetry page: what a GL(r) element moves and keeps, and how distances
between raw factors disagree with distances between updates. Pure functions, no Streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from wslviz.plots import style

KIND_LABELS = {"general": "any invertible G", "permutation": "permutation", "scaling": "diagonal scaling",
               "orthogonal": "rotation (orthogonal G)"}


def gl_effect_bars(effects: pd.DataFrame) -> go.Figure:
    """Grouped bars on a log axis per GL(r) kind (rows of :func:`wslviz.understand.lowrank.gl_effects`): how far the
    factors A and B moved, against the relative change of ``delta_W``, of the invariant features and the largest
    output change (all rounding)."""
    floor = 1e-12  # an exact 0 cannot be drawn on a log axis
    labels = [KIND_LABELS.get(k, k) for k in effects["kind"]]
    fig = go.Figure()
    series = [("factor_change", "A and B: relative change", style.NAIVE_COLOR),
              ("delta_change", "delta_W = B A: relative change", style.ALIGNED_COLOR),
              ("invariant_change", "invariant features: relative change", style.CATEGORICAL[0]),
              ("output_difference", "max output difference", style.CATEGORICAL[4])]
    for column, name, color in series:
        values = effects[column].to_numpy(float)
        if np.isnan(values).all():
            continue
        # only the headline bar is labelled: the three rounding-level bars are too narrow for text (hover shows it)
        text = [f"{v:.3g}" for v in values] if column == "factor_change" else None
        fig.add_trace(go.Bar(x=labels, y=[max(v, floor) for v in values], name=name, marker_color=color, text=text,
                             textposition="outside", hovertemplate=f"{name}: %{{customdata:.2e}}<extra></extra>",
                             customdata=values))
    fig.update_layout(barmode="group", yaxis_type="log", legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(title_text="GL(r) element applied to every module")
    fig.update_yaxes(title_text="value (log scale)")
    return style.apply(fig, "The factors move, the adapter does not")


def distance_disagreement(distances: pd.DataFrame, agreement: dict[str, float]) -> go.Figure:
    """Pairs of adapters (rows of :func:`wslviz.understand.lowrank.pair_distances`): the distance between their
    updates ``delta_W`` (x) against the distance between their raw factors and between their canonical factors
    (y). ``agreement``: the Spearman correlations with the update distances, shown in the legend."""
    fig = go.Figure()
    hover = "pair %{customdata[0]}-%{customdata[1]}<br>delta_W %{x:.3g}, %{y:.3g}<extra></extra>"
    pairs = distances[["i", "j"]].to_numpy()
    for column, name, color in (("raw", "raw A/B", style.NAIVE_COLOR),
                                ("canonical", "canonical factors (SVD)", style.ALIGNED_COLOR)):
        fig.add_trace(go.Scatter(x=distances["delta"], y=distances[column], mode="markers", customdata=pairs,
                                 name=f"{name} (Spearman {agreement.get(column, float('nan')):.2f})",
                                 marker={"color": color, "size": 6, "opacity": 0.7}, hovertemplate=hover))
    fig.update_xaxes(title_text="distance between updates ‖ΔW_i − ΔW_j‖")
    fig.update_yaxes(title_text="distance between factors")
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return style.apply(fig, "Which adapters are close: distances between factors against between updates")
