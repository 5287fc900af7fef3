"""Figures for the generation playground: accuracy violins (each generator beside its own noise baseline),
novelty scatter, decision boundaries, projection, and weight distributions and singular-value spectra of generated
against zoo models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from wslviz.core.protocol import ArchitectureLike
from wslviz.plots import style
from wslviz.plots.zoo import singular_values

BASELINE_PREFIX = "noise baseline"
BASELINE_COLOR = "#8c8c8c"


def accuracy_violins(groups: Mapping[str, Sequence[float]], reference: float | None = None,
                     reference_label: str = "zoo final median") -> go.Figure:
    """One violin per group of models (e.g. "zoo final", then each generator followed by its own
    "noise baseline (<generator>)") with its points; baseline groups (names starting with
    :data:`BASELINE_PREFIX`) are grey, the others take the categorical colours in order. ``reference`` draws a
    dashed horizontal line (the zoo's final-checkpoint median accuracy), labelled in the right margin so the
    label never sits on a violin. The violins end at the data (``spanmode="hard"``), so they never reach
    outside the accuracies' range [0, 1]."""
    fig = go.Figure()
    shown = [n for n in groups if not n.startswith(BASELINE_PREFIX)]
    for name, values in groups.items():
        baseline = name.startswith(BASELINE_PREFIX)
        color = BASELINE_COLOR if baseline else style.CATEGORICAL[shown.index(name) % len(style.CATEGORICAL)]
        fig.add_trace(go.Violin(y=np.asarray(values, dtype=float), name=name, box_visible=True, meanline_visible=True,
                                points="all", jitter=0.3, spanmode="hard", line_color=color))
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
    # titles in a small font with room between rows: at full size they ran into each other and the panels above
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=list(titles), horizontal_spacing=0.08,
                        vertical_spacing=min(0.25, 0.12 / rows + 0.05))
    fig.update_annotations(font={"size": 11})
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
        # axis titles on the outer panels only: inner ones collided with the panel titles below them
        fig.update_xaxes(title_text="x1" if r == rows else None, row=r, col=c)
        fig.update_yaxes(title_text="x2" if c == 1 else None, row=r, col=c)
    return style.apply(fig, "Decision regions: generated model | nearest zoo model", height=320 * rows + 80)


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


def _set_color(i: int) -> str:
    return style.CATEGORICAL[i % len(style.CATEGORICAL)]


def _panel_grid(n: int, cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(n, cols))
    return -(-n // cols), cols


def _sets_layout(fig: go.Figure, title: str, rows: int) -> go.Figure:
    """House style for a grid of panels comparing sets of models: room above for the title over the panel titles,
    the legend below the bottom axis titles."""
    style.apply(fig, title, height=160 + 280 * rows)
    return fig.update_layout(margin={"t": 90, "b": 110}, title={"y": 0.98, "yanchor": "top"},
                             legend={"orientation": "h", "x": 0.0, "y": -80 / (280 * rows), "yanchor": "top"})


def weight_distributions(arch: ArchitectureLike, sets: Mapping[str, torch.Tensor], bins: int = 50,
                         max_panels: int = 9) -> go.Figure:
    """Per weight matrix (the first ``max_panels``), the density of its values pooled over every model of each
    set (``sets``: name -> weights [k, P], e.g. the zoo's final checkpoints and one generator's models),
    overlaid on shared bins: a generator that matches the zoo draws the same shape."""
    params = [p for p in arch.layout if p.role == "weight" and len(p.shape) >= 2][:max_panels]
    if not params or not sets:
        raise ValueError("weight distributions need weight matrices and at least one set of models")
    rows, cols = _panel_grid(len(params))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"{p.name} {list(p.shape)}" for p in params],
                        horizontal_spacing=0.08, vertical_spacing=0.5 / rows)
    blocks = {name: torch.as_tensor(w, dtype=torch.float32).reshape(-1, arch.n_params).numpy()
              for name, w in sets.items()}
    for i, p in enumerate(params):
        values = {name: w[:, p.slice].ravel() for name, w in blocks.items()}
        lo = float(min(v.min() for v in values.values()))
        hi = float(max(v.max() for v in values.values()))
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        r, c = divmod(i, cols)
        for k, (name, v) in enumerate(values.items()):
            density, _ = np.histogram(v, bins=edges, density=True)
            fig.add_trace(go.Scatter(x=centres, y=density, mode="lines", name=name, legendgroup=name,
                                     showlegend=i == 0, line={"color": _set_color(k), "shape": "hvh"},
                                     hovertemplate=f"{name}<br>value %{{x:.3f}}<br>density %{{y:.3f}}<extra></extra>"),
                          row=r + 1, col=c + 1)
        fig.update_xaxes(title_text="weight value", row=r + 1, col=c + 1)
        fig.update_yaxes(title_text="density" if c == 0 else None, row=r + 1, col=c + 1)
    return _sets_layout(fig, "Weight distributions: generated vs zoo", rows)


def spectra_by_set(arch: ArchitectureLike, sets: Mapping[str, torch.Tensor], max_panels: int = 9) -> go.Figure:
    """Per weight matrix (the first ``max_panels``), the singular values (largest first, log scale) of each set of
    models (``sets``: name -> weights [k, P]): the median over the set's models at each index, with a band from
    the 10th to the 90th percentile (:func:`wslviz.plots.zoo.singular_values`)."""
    spectra = {name: singular_values(arch, w) for name, w in sets.items()}
    layers = list(next(iter(spectra.values()), {}))[:max_panels]
    if not layers:
        raise ValueError("spectra need weight matrices and at least one set of models")
    rows, cols = _panel_grid(len(layers))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=layers, horizontal_spacing=0.08,
                        vertical_spacing=0.5 / rows)
    for i, layer in enumerate(layers):
        r, c = divmod(i, cols)
        for k, (name, per_layer) in enumerate(spectra.items()):
            s = per_layer[layer]
            index = np.arange(1, s.shape[1] + 1)
            lo, mid, hi = np.percentile(s, [10, 50, 90], axis=0)
            color = _set_color(k)
            fig.add_trace(go.Scatter(x=np.r_[index, index[::-1]], y=np.r_[hi, lo[::-1]], mode="lines", fill="toself",
                                     fillcolor=color, opacity=0.2, line={"width": 0}, hoverinfo="skip",
                                     showlegend=False, legendgroup=name), row=r + 1, col=c + 1)
            fig.add_trace(go.Scatter(x=index, y=mid, mode="lines+markers", name=name, legendgroup=name,
                                     showlegend=i == 0, marker={"size": 4, "color": color}, line={"color": color},
                                     hovertemplate=f"{name}<br>median σ_%{{x}} = %{{y:.4f}}<extra></extra>"),
                          row=r + 1, col=c + 1)
        n = max(per_layer[layer].shape[1] for per_layer in spectra.values())
        values = np.concatenate([per_layer[layer].ravel() for per_layer in spectra.values()])
        decades = np.log10(max(float(values.max()), 1e-12) / max(float(values.min()), 1e-12))
        fig.update_xaxes(title_text="index i (largest first)", tick0=1, dtick=style.nice_step(n), row=r + 1,
                         col=c + 1)
        fig.update_yaxes(type="log", title_text="singular value σ_i" if c == 0 else None,
                         dtick=1 if decades > 1 else None, row=r + 1, col=c + 1)
    return _sets_layout(fig, "Singular-value spectra: generated vs zoo (median, 10-90% band)", rows)
