"""Figures for the Reconstruct page: inverted inputs beside their nearest real training examples. Pure functions,
no Streamlit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from wslviz.plots import style
from wslviz.plots.inr import image_grid


def _display(images: np.ndarray) -> np.ndarray:
    """Images ``[n, H, W]`` each rescaled to [0, 1] over its own range (inverted inputs have no fixed scale)."""
    flat = images.reshape(len(images), -1)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    return ((flat - lo) / np.where(hi > lo, hi - lo, 1.0)).reshape(images.shape)


def inversion_pairs(inverted: np.ndarray, nearest: np.ndarray, labels: Sequence[int], distances: Sequence[float],
                    columns: int = 10,
                    title: str = "Inverted inputs, captioned class · distance, above their nearest real training "
                                 "example") -> go.Figure:
    """Inverted (or reconstructed) images ``[n, H, W]`` in every other row of a grid, each captioned with its class
    and the distance to its nearest real training example ``[n, H, W]``, drawn right under it; each image rescaled
    to its own range."""
    inverted, nearest = np.asarray(inverted, dtype=np.float32), np.asarray(nearest, dtype=np.float32)
    if inverted.shape != nearest.shape or inverted.ndim != 3:
        raise ValueError(f"expected two [n, H, W] arrays of one shape, got {inverted.shape} and {nearest.shape}")
    rows, captions = [], []
    for start in range(0, len(inverted), columns):
        stop = min(start + columns, len(inverted))
        pad = columns - (stop - start)
        blank = np.full((pad, *inverted.shape[1:]), np.nan, dtype=np.float32)
        spacer = np.full((columns, *inverted.shape[1:]), np.nan, dtype=np.float32)  # room for the next captions
        rows += [_display(inverted[start:stop]), blank, _display(nearest[start:stop]), blank, spacer]
        captions += [f"{int(c)} · {float(d):.2f}" for c, d in zip(labels[start:stop], distances[start:stop],
                                                                   strict=True)] + [""] * pad
        captions += [""] * (2 * columns)
    return image_grid(np.concatenate(rows), captions, columns, title)


def candidates_2d(xs: np.ndarray, ys: np.ndarray, classes: np.ndarray, points: np.ndarray, labels: np.ndarray,
                  candidates: np.ndarray, candidate_labels: np.ndarray, recovered: np.ndarray) -> go.Figure:
    """Candidates read back from a 2-D classifier's weights over its training set: the decision regions
    (``classes [R, R]`` over ``xs``, ``ys``), the training points ``[N, 2]`` coloured by ``labels`` (filled where
    ``recovered [N]``, hollow otherwise) and the candidates ``[m, 2]`` as crosses in their class colour."""
    k = int(max(classes.max(), labels.max(), candidate_labels.max(), 1)) + 1
    palette = [style.CATEGORICAL[c % len(style.CATEGORICAL)] for c in range(k)]
    fig = go.Figure(go.Heatmap(x=xs, y=ys, z=classes, zmin=0, zmax=k - 1, opacity=0.3, showscale=False,
                               colorscale=[[c / (k - 1), palette[c]] for c in range(k)],
                               hovertemplate="x1 %{x:.2f}<br>x2 %{y:.2f}<br>class %{z}<extra></extra>"))
    for found, name in ((True, "training point, recovered"), (False, "training point, not recovered")):
        mask = recovered == found
        fig.add_trace(go.Scatter(x=points[mask, 0], y=points[mask, 1], mode="markers", name=name,
                                 marker={"size": 7, "color": [palette[int(c)] for c in labels[mask]],
                                         "symbol": "circle" if found else "circle-open", "line": {"width": 1.5}}))
    fig.add_trace(go.Scatter(x=candidates[:, 0], y=candidates[:, 1], mode="markers", name="candidate",
                             marker={"size": 9, "symbol": "x-thin", "line": {"width": 2},
                                     "color": [palette[int(c)] for c in candidate_labels]}))
    fig.update_layout(xaxis_title="x1", yaxis_title="x2")
    return style.apply(fig, "Candidates from the weights (crosses, scaled to the data's typical norm) over the "
                            "training points")
