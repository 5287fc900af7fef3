"""Figures for the Projections page: 2D/3D scatter of projected checkpoints, coloured by metadata,
with the checkpoints of each model joined across epochs; and the helper that turns a chart's
selection event back into checkpoint rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from wslviz.plots import style
from wslviz.plots.zoo import is_numeric, label

HOVER_COLUMNS = ("model_id", "epoch", "test_acc", "train_acc", "ggap", "lr", "optimizer", "seed")
MAX_CATEGORIES = 30  # categorical colourings with more values fall back to one colour


def _hover(meta: pd.DataFrame, rows: np.ndarray, extra: Sequence[str]) -> tuple[np.ndarray, str]:
    cols = [c for c in dict.fromkeys([*HOVER_COLUMNS, *extra]) if c in meta]
    custom = np.column_stack([rows] + [meta[c].iloc[rows].to_numpy(dtype=object) for c in cols])
    lines = ["checkpoint row %{customdata[0]}"]
    for i, c in enumerate(cols, start=1):
        fmt = ":.4g" if is_numeric(meta[c]) and meta[c].dtype.kind == "f" else ""
        lines.append(f"{c} = %{{customdata[{i}]{fmt}}}")
    return custom, "<br>".join(lines) + "<extra></extra>"


def projection_figure(
    coords: np.ndarray,
    meta: pd.DataFrame,
    rows: Sequence[int] | np.ndarray | None = None,
    color_by: str | None = None,
    model_col: str = "model_id",
    lines: bool = True,
    selected: Sequence[int] = (),
    axis_title: str = "component",
    title: str | None = None,
    hover_extra: Sequence[str] = (),
    height: int = 520,
) -> go.Figure:
    """Scatter of projected checkpoints ``coords`` [n, 2 or 3] (``rows``: their zoo row indices, default 0..n-1).

    ``color_by``: a metadata column; numbers get the house continuous scale (log-scaled when they span
    decades, :func:`wslviz.plots.style.numeric_colors`) with a colour bar, strings one legend entry per
    value. ``lines`` joins each model's checkpoints in epoch order (thin grey lines). ``selected`` rows
    keep their colour, drawn larger with a black outline, while the others fade. Each point's
    ``customdata[0]`` is its zoo row (read back by :func:`rows_from_selection`)."""
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"coords must be [n, 2] or [n, 3], got {list(coords.shape)}")
    rows = np.arange(len(coords)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) != len(coords):
        raise ValueError(f"{len(rows)} rows for {len(coords)} points")
    if color_by is not None and color_by not in meta:
        raise ValueError(f"the metadata has no column {color_by!r}")
    three = coords.shape[1] == 3
    scatter = go.Scatter3d if three else go.Scattergl
    fig = go.Figure()

    def xyz(idx: np.ndarray) -> dict[str, Any]:
        d = {"x": coords[idx, 0], "y": coords[idx, 1]}
        if three:
            d["z"] = coords[idx, 2]
        return d

    custom, template = _hover(meta, rows, hover_extra)
    marker_size = 4 if three else 7
    chosen = np.zeros(len(rows), dtype=bool)
    if len(selected):
        pos = {r: i for i, r in enumerate(rows)}
        chosen[[pos[r] for r in selected if r in pos]] = True
    if color_by is None:
        groups: list[tuple[str | None, np.ndarray, dict]] = [
            (None, np.arange(len(rows)), {"color": style.CATEGORICAL[0]})]
    else:
        values = meta[color_by].iloc[rows]
        if is_numeric(values) and values.nunique() > 1:  # a numeric column is continuous everywhere
            scale = style.numeric_colors(values.to_numpy(dtype=float), label(color_by))
            groups = [(None, np.arange(len(rows)), {
                "color": scale.position, "colorscale": style.CONTINUOUS, "showscale": True, "cmin": 0.0, "cmax": 1.0,
                "colorbar": scale.colorbar})]
        else:
            cats = values.astype(str).to_numpy()
            uniq = sorted(pd.unique(cats))
            if len(uniq) > MAX_CATEGORIES:
                groups = [(None, np.arange(len(rows)), {"color": style.CATEGORICAL[0]})]
            else:
                groups = [(f"{color_by} = {c}", np.flatnonzero(cats == c),
                           {"color": style.CATEGORICAL[i % len(style.CATEGORICAL)]}) for i, c in enumerate(uniq)]
    if lines and model_col in meta and "epoch" in meta:
        lx, ly, lz = _model_lines(coords, meta, rows, model_col)
        if lx:
            extra = {"z": lz} if three else {}
            fig.add_trace(scatter(x=lx, y=ly, **extra, mode="lines", name="training path (one model)",
                                  line={"color": "rgba(120,120,120,0.35)", "width": 1}, hoverinfo="skip"))
    for name, idx, marker in groups:
        # with a selection, the others fade and the selected points keep their colour, outlined
        # (3-D markers take one opacity and outline per trace: there the selected points are only larger)
        per_point = {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in marker.items()}
        faded = 0.2 if chosen.any() else 0.85
        fig.add_trace(scatter(**xyz(idx), mode="markers", name=name or "checkpoints", showlegend=name is not None,
                              customdata=custom[idx], hovertemplate=template, marker={
                                  "size": np.where(chosen[idx], marker_size + 3, marker_size),
                                  "opacity": 0.85 if three else np.where(chosen[idx], 1.0, faded),
                                  "line": {"width": 0} if three else {"width": np.where(chosen[idx], 1.5, 0.0),
                                                                       "color": "black"}, **per_point}))
    names = [f"{axis_title} 1", f"{axis_title} 2", f"{axis_title} 3"]
    if three:
        fig.update_layout(scene={"xaxis_title": names[0], "yaxis_title": names[1], "zaxis_title": names[2]})
    else:
        fig.update_layout(xaxis_title=names[0], yaxis_title=names[1], dragmode="select")
    style.apply(fig, title, height=height)
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.15, "yanchor": "top"})
    return fig


def _model_lines(coords: np.ndarray, meta: pd.DataFrame, rows: np.ndarray, model_col: str):
    """x, y, z lists joining each model's checkpoints in epoch order, models separated by ``None``."""
    df = pd.DataFrame({"m": meta[model_col].iloc[rows].to_numpy(), "e": meta["epoch"].iloc[rows].to_numpy(),
                       "i": np.arange(len(rows))}).sort_values(["m", "e", "i"])
    lx: list = []
    ly: list = []
    lz: list = []
    for _, part in df.groupby("m", sort=False):
        if len(part) < 2:
            continue
        i = part["i"].to_numpy()
        lx += coords[i, 0].tolist() + [None]
        ly += coords[i, 1].tolist() + [None]
        if coords.shape[1] == 3:
            lz += coords[i, 2].tolist() + [None]
    return lx, ly, lz


def rows_from_selection(selection: Mapping[str, Any] | None) -> list[int]:
    """Zoo rows of the points in a Streamlit Plotly selection (``event["selection"]``), in order, no duplicates.

    Reads each point's ``customdata[0]`` (set by :func:`projection_figure`); points without it are skipped."""
    if not selection:
        return []
    out = []
    for p in selection.get("points", []) or []:
        data = p.get("customdata")
        if isinstance(data, list | tuple) and data:
            data = data[0]
        if data is None:
            continue
        try:
            out.append(int(data))
        except (TypeError, ValueError):
            continue
    return list(dict.fromkeys(out))
