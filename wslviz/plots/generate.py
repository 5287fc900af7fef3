"""Figures for the generation playground: accuracy violins, novelty scatter, decision boundaries, projection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from wslviz.plots import style


def accuracy_violins(groups: Mapping[str, Sequence[float]], reference: float | None = None,
                     reference_label: str = "zoo final median") -> go.Figure:
    """One violin per group of models (e.g. "zoo final", each generator, "noise baseline") with its points;
    ``reference`` draws a dashed horizontal line (the zoo's final-checkpoint median accuracy), labelled in the
    right margin so the label never sits on a violin. The violins end at the data (``spanmode="hard"``), so
    they never reach outside the accuracies' range [0, 1]."""
    fig = go.Figure()
    for i, (name, values) in enumerate(groups.items()):
        fig.add_trace(go.Violin(y=np.asarray(values, dtype=float), name=name, box_visible=True, meanline_visible=True,
                                points="all", jitter=0.3, spanmode="hard",
                                line_color=style.CATEGORICAL[i % len(style.CATEGORICAL)]))
    if reference is not None:
        fig.add_hline(y=reference, line_dash="dash", line_color="grey")
        fig.add_annotation(x=1.0, xref="paper", xanchor="left", y=reference, yref="y", showarrow=False,
                           text=f"{reference_label}<br>{reference:.3f}", font={"color": "grey", "size": 11})
    fig.update_layout(showlegend=False, xaxis_title="model set", yaxis_title="test accuracy")
    fig.update_yaxes(range=[-0.02, 1.02])
    style.apply(fig, "Accuracy of generated models vs the zoo")
    fig.update_layout(margin={"r": 130})
    return fig


def novelty_scatter(generated: pd.DataFrame, baseline: pd.DataFrame | None = None,
                    label: str = "generated") -> go.Figure:
    """Test accuracy against distance to the nearest (aligned) zoo checkpoint, for the generated models
    and the noise baseline. Points to the upper right are new *and* good; memorised models sit at x ~ 0."""
    fig = go.Figure()
    sets = [(label, generated, style.CATEGORICAL[0], "circle")]
    if baseline is not None:
        sets.append(("zoo + noise (baseline)", baseline, style.CATEGORICAL[7], "x"))
    for name, df, color, symbol in sets:
        hover = [f"nearest zoo row {r}, agreement {a:.3f}" for r, a in zip(df["nearest_row"], df["agreement"],
                                                                              strict=True)]
        fig.add_trace(go.Scatter(x=df["distance"], y=df.get("accuracy"), mode="markers", name=name, text=hover,
                                 marker={"color": color, "symbol": symbol, "size": 9},
                                 hovertemplate="distance %{x:.3f}<br>accuracy %{y:.3f}<br>%{text}<extra></extra>"))
    fig.update_layout(xaxis_title="distance to nearest aligned zoo checkpoint (L2)", yaxis_title="test accuracy")
    return style.apply(fig, "Novelty: new, or a copy of a zoo model?")


def decision_boundaries(xs: np.ndarray, ys: np.ndarray, classes: np.ndarray, titles: Sequence[str],
                        points: np.ndarray | None = None, labels: np.ndarray | None = None, columns: int = 2,
                        n_classes: int | None = None) -> go.Figure:
    """A grid of decision-region heatmaps (``classes [B, R, R]`` over ``xs``, ``ys``), one panel per model
    with ``titles[b]``; ``points [N, 2]`` with ``labels [N]`` are overlaid (e.g. test data). Pairs of
    panels side by side show a generated model next to its nearest zoo model."""
    b = len(classes)
    if len(titles) != b:
        raise ValueError(f"{b} panels but {len(titles)} titles")
    rows = max(1, int(np.ceil(b / columns)))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=list(titles), horizontal_spacing=0.06,
                        vertical_spacing=0.12 / max(rows, 1) + 0.04)
    k = int(n_classes or max(int(classes.max()) + 1, int(labels.max()) + 1 if labels is not None else 0, 2))
    palette = [style.CATEGORICAL[c % len(style.CATEGORICAL)] for c in range(k)]
    scale = [[c / max(k - 1, 1), palette[c]] for c in range(k)]
    for i in range(b):
        r, c = i // columns + 1, i % columns + 1
        fig.add_trace(go.Heatmap(x=xs, y=ys, z=classes[i], zmin=0, zmax=k - 1, colorscale=scale, opacity=0.35,
                                 showscale=False, hovertemplate="x1 %{x:.2f}<br>x2 %{y:.2f}<br>class %{z}"
                                 "<extra></extra>"), row=r, col=c)
        if points is not None and labels is not None:
            fig.add_trace(go.Scatter(x=points[:, 0], y=points[:, 1], mode="markers", showlegend=False,
                                     marker={"size": 4, "color": [palette[int(v) % k] for v in labels],
                                             "line": {"width": 0.5, "color": "white"}},
                                     hoverinfo="skip"), row=r, col=c)
        fig.update_xaxes(title_text="x1", row=r, col=c)
        fig.update_yaxes(title_text="x2", row=r, col=c)
    return style.apply(fig, "Decision regions: generated model | nearest zoo model", height=300 * rows + 80)


def projection(frame: pd.DataFrame, refitted: bool = False, method: str = "pca") -> go.Figure:
    """Zoo checkpoints (coloured by test accuracy) and generated models (red stars) in one 2D projection;
    ``frame`` has columns ``x, y, source, row, test_acc`` (see
    :func:`wslviz.generation.novelty.project_with_generated`)."""
    zoo = frame[frame["source"] == "zoo"]
    gen = frame[frame["source"] == "generated"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=zoo["x"], y=zoo["y"], mode="markers", name="zoo checkpoints",
                             marker={"color": zoo["test_acc"], "colorscale": style.CONTINUOUS, "size": 7,
                                     "colorbar": {"title": "test acc"}, "showscale": True},
                             customdata=zoo[["row", "test_acc"]].to_numpy(),
                             hovertemplate="zoo row %{customdata[0]}<br>acc %{customdata[1]:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=gen["x"], y=gen["y"], mode="markers", name="generated",
                             marker={"color": style.NAIVE_COLOR, "symbol": "star", "size": 12,
                                     "line": {"width": 1, "color": "black"}},
                             customdata=gen[["row", "test_acc"]].to_numpy(),
                             hovertemplate="generated %{customdata[0]}<br>acc %{customdata[1]:.3f}<extra></extra>"))
    how = "refitted with the generated models" if refitted else "generated models placed by the zoo's fit"
    fig.update_layout(xaxis_title=f"{method.upper()} 1", yaxis_title=f"{method.upper()} 2",
                      legend={"orientation": "h", "y": -0.2})
    return style.apply(fig, f"Projection ({how})")
