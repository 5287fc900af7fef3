"""Figures for the Symmetry page: weight heatmaps, distance vs output difference, matching matrices,
per-layer distances and zoo-level distance distributions. Pure functions, no Streamlit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from wslviz.plots import style


def _matrix(weight: np.ndarray) -> np.ndarray:
    """A weight tensor as a 2D matrix: rows = output units, columns = inputs (conv kernels unrolled)."""
    weight = np.asarray(weight)
    return weight.reshape(weight.shape[0], -1) if weight.ndim > 1 else weight[:, None]


SHOWN_ROWS, SHOWN_COLUMNS = 128, 384
"""The largest block of a weight matrix a heatmap draws (a ResNet-18's last conv is 512 x 4608, GPT-2's MLP 768 x
3072: whole, two panels would send the browser tens of megabytes)."""


def weight_heatmaps(matrices: Sequence[np.ndarray], titles: Sequence[str], title: str,
                    units: Sequence[Sequence[int] | None] | None = None, shared: bool = True) -> go.Figure:
    """Heatmaps of one layer's weight matrix in several models or bases side by side (rows = output units,
    columns = inputs, conv kernels unrolled), on a diverging colour scale centred on 0.

    ``shared``: one colour range (± the largest |w| of all panels) for panels that must stay comparable
    (the same weights reordered, models of one zoo); otherwise each panel gets its own range (± its own
    largest |w|, named in its title) and its own colour bar, so that a rescaling, which changes the
    weights' magnitudes, does not wash out the other panel.

    ``units[k][j]`` (optional, per panel) is the original index of the unit drawn in row ``j`` of panel ``k``:
    for a model re-expressed in another's basis it is the matching, and the hover names it, so the permutation
    the rows were reordered by can be read off. A matrix larger than :data:`SHOWN_ROWS` x :data:`SHOWN_COLUMNS` is
    drawn by its top-left block of that size (the colour range still covers the whole matrix), as the title says."""
    whole = [_matrix(m) for m in matrices]
    mats = [m[:SHOWN_ROWS, :SHOWN_COLUMNS] for m in whole]
    if mats and mats[0].shape != whole[0].shape:
        title = (f"{title} (first {mats[0].shape[0]} of {whole[0].shape[0]} units, first {mats[0].shape[1]} of "
                 f"{whole[0].shape[1]} inputs)")
    if len(titles) != len(mats):
        raise ValueError(f"{len(mats)} matrices but {len(titles)} titles")
    units = list(units) if units is not None else [None] * len(mats)
    own = [float(np.abs(m).max(initial=0.0)) or 1.0 for m in whole]
    vmaxes = own if not shared else [max(own)] * len(mats)
    if not shared:
        titles = [f"{t} (±{v:.3g})" for t, v in zip(titles, own, strict=True)]
    spacing = 0.06 if shared else 0.12  # room for a colour bar beside every panel
    fig = make_subplots(rows=1, cols=len(mats), subplot_titles=list(titles), horizontal_spacing=spacing)
    width = (1 - spacing * (len(mats) - 1)) / len(mats)
    for col, (m, order, vmax) in enumerate(zip(mats, units, vmaxes, strict=True), start=1):
        original = np.asarray(order if order is not None else np.arange(m.shape[0]))[:m.shape[0]]
        bar = {"title": "weight"} if shared else {"x": col * width + (col - 1) * spacing + 0.01, "thickness": 12}
        fig.add_trace(go.Heatmap(z=m, zmin=-vmax, zmax=vmax, zmid=0, colorscale=style.DIVERGING,
                                 showscale=not shared or col == len(mats), colorbar=bar,
                                 customdata=np.tile(original[:, None], (1, m.shape[1])),
                                 hovertemplate="row %{y} (unit %{customdata} as trained), input %{x}: %{z:.3f}"
                                               "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="input index", row=1, col=col)
        fig.update_yaxes(title_text="output unit" if col == 1 else None, autorange="reversed", row=1, col=col)
    style.integer_axes(fig, x=mats[0].shape[1] - 1, y=mats[0].shape[0] - 1)
    return style.apply(fig, title)


def distance_vs_output(labels: Sequence[str], weight_distance: Sequence[float],
                       output_difference: Sequence[float]) -> go.Figure:
    """Grouped bars on a log axis: weight-space distance next to max output difference, per transform."""
    floor = 1e-9  # an exact 0 cannot be drawn on a log axis
    fig = go.Figure()
    fig.add_trace(go.Bar(x=list(labels), y=[max(v, floor) for v in weight_distance], name="weight distance ‖θ − g·θ‖",
                         marker_color=style.NAIVE_COLOR, text=[f"{v:.3g}" for v in weight_distance],
                         textposition="outside"))
    fig.add_trace(go.Bar(x=list(labels), y=[max(v, floor) for v in output_difference],
                         name="max output difference", marker_color=style.ALIGNED_COLOR,
                         text=[f"{v:.1e}" for v in output_difference], textposition="outside"))
    fig.update_layout(barmode="group", yaxis_type="log")
    fig.update_xaxes(title_text="symmetry applied")
    fig.update_yaxes(title_text="value (log scale)")
    return style.apply(fig, "Far apart in weight space, identical as functions")


def matching_matrix(similarity: np.ndarray, assignment: np.ndarray, title: str, by_match: bool = False) -> go.Figure:
    """Similarity of reference units (rows) to the other model's units (columns), with the assignment chosen
    by the matching marked. Columns in the other model's original order, or with ``by_match`` in the
    matched order (column j is the unit matched to reference unit j: the marks lie on the diagonal)."""
    s = np.asarray(similarity)
    assignment = np.asarray(assignment)
    rows = np.arange(len(assignment))
    order = assignment if by_match else np.arange(s.shape[1])
    marks = rows if by_match else assignment
    fig = go.Figure(go.Heatmap(z=s[:, order], x=rows, y=rows, zmin=-1, zmax=1, zmid=0, colorscale=style.DIVERGING,
                               colorbar={"title": "cosine"}, customdata=np.tile(order, (len(rows), 1)),
                               hovertemplate="reference unit %{y}, other unit %{customdata}: %{z:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=marks, y=rows, mode="markers", name="assignment", customdata=assignment,
                             marker={"symbol": "square-open", "size": max(4, min(12, 300 // max(len(rows), 1))),
                                     "color": "black", "line": {"width": 1.5}},
                             hovertemplate="reference %{y} ← other %{customdata}<extra></extra>"))
    fig.update_xaxes(title_text="other model's unit (" + ("matched order" if by_match else "original order") + ")")
    fig.update_yaxes(title_text="reference unit", autorange="reversed")
    fig.update_layout(showlegend=False)
    style.integer_axes(fig, x=s.shape[1] - 1, y=len(rows) - 1)
    return style.apply(fig, title, height=380)


def layer_distance_bars(layer_names: Sequence[str], before: Sequence[float], after: Sequence[float]) -> go.Figure:
    """Per-layer weight distance to the reference before and after alignment."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=list(layer_names), y=list(before), name="before alignment", marker_color=style.NAIVE_COLOR))
    fig.add_trace(go.Bar(x=list(layer_names), y=list(after), name="after alignment", marker_color=style.ALIGNED_COLOR))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="Euclidean distance to the reference")
    return style.apply(fig, "Distance to the reference, per layer")


def units_moved_bars(group_names: Sequence[str], moved: Sequence[int], sizes: Sequence[int]) -> go.Figure:
    """How many units of each group the alignment moved to a new position: one horizontal bar per group, top to
    bottom in network order, the figure as tall as the groups need (ResNets and transformers have dozens, with
    long names that a vertical bar chart would tilt until the plot is squashed)."""
    names = list(group_names)
    fig = go.Figure(go.Bar(y=names, x=list(moved), orientation="h", marker_color=style.CATEGORICAL[0],
                           text=[f"{m}/{n}" for m, n in zip(moved, sizes, strict=True)], textposition="outside",
                           cliponaxis=False))
    fig.update_yaxes(title_text="group of units", autorange="reversed", automargin=True)
    fig.update_xaxes(title_text="units moved", range=[0, max(list(sizes) + [1]) * 1.15])
    style.integer_axes(fig, x=max(list(sizes) + [1]))
    return style.apply(fig, "Units moved by the alignment", height=max(300, 26 * len(names) + 140))


def distance_distributions(distances: Mapping[str, np.ndarray]) -> go.Figure:
    """Overlaid histograms of pairwise model distances, one per alignment setting."""
    fig = go.Figure()
    colors = {0: style.NAIVE_COLOR, 1: style.CATEGORICAL[1], 2: style.ALIGNED_COLOR, 3: style.CATEGORICAL[4]}
    for i, (label, d) in enumerate(distances.items()):
        d = np.asarray(d, dtype=float)
        fig.add_trace(go.Histogram(x=d, name=f"{label} (median {np.median(d):.3g})" if len(d) else label,
                                   opacity=0.6, nbinsx=40, marker_color=colors.get(i, style.CATEGORICAL[i % 10])))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text="pairwise Euclidean distance between models")
    fig.update_yaxes(title_text="number of model pairs")
    return style.apply(fig, "How much of the zoo's spread is only symmetry")
