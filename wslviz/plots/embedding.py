"""Figures for the Projections page, in the manner of TensorBoard's Projector and Embedding Atlas: a 2D/3D
WebGL scatter of projected checkpoints coloured, sized and faded by metadata, with search matches and
nearest neighbours highlighted (the rest dimmed), optional density contours and training trails; linked
histograms whose chosen ranges filter the scatter; and the helpers that read a metadata search and the
charts' selection events back into checkpoint rows."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from wslviz.plots import style
from wslviz.plots.zoo import is_numeric, label

HOVER_COLUMNS = ("model_id", "epoch", "test_acc", "train_acc", "ggap", "lr", "optimizer", "seed")
MAX_CATEGORIES = 30  # categorical colourings with more values fall back to one colour
DIMMED = 0.12  # opacity of the points outside a search, a selection or a neighbour set
TRAIL_COLOR = "rgba(120,120,120,0.35)"
NEIGHBOUR_COLOR = style.CATEGORICAL[3]
SIZES = {2: (5.0, 14.0), 3: (2.5, 8.0)}  # marker size range (smallest, largest) when sized by a column
DEFAULT_SIZE = {2: 7.0, 3: 4.0}
_TERM = re.compile(r"^\s*([A-Za-z_][\w.:]*)\s*(==|=|!=|>=|<=|>|<)\s*(.+?)\s*$")


def _hover(meta: pd.DataFrame, rows: np.ndarray, extra: Sequence[str]) -> tuple[np.ndarray, str]:
    cols = [c for c in dict.fromkeys([*HOVER_COLUMNS, *extra]) if c in meta]
    custom = np.column_stack([rows] + [meta[c].iloc[rows].to_numpy(dtype=object) for c in cols])
    lines = ["#%{customdata[0]}"]
    for i, c in enumerate(cols, start=1):
        fmt = ":.4g" if is_numeric(meta[c]) and pd.api.types.is_float_dtype(meta[c]) else ""
        lines.append(f"{c} = %{{customdata[{i}]{fmt}}}")
    return custom, "<br>".join(lines) + "<extra></extra>"


def is_integer_column(values: pd.Series) -> bool:
    """A numeric column holding whole numbers only (epochs, seeds, widths): integer ticks wherever drawn."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return bool(len(v)) and not pd.api.types.is_bool_dtype(values) and bool(np.all(v == np.round(v)))


def unit_scale(values: pd.Series) -> np.ndarray:
    """Each value's position in [0, 1]: numbers as on the house colour scale (log when they span decades,
    :func:`wslviz.plots.style.numeric_colors`), categories by their sorted order; missing values 0.5."""
    if is_numeric(values):
        pos = style.numeric_colors(values.to_numpy(dtype=float), "").position
    else:
        cats = values.astype(str)
        uniq = sorted(cats.unique())
        pos = cats.map({c: i / max(len(uniq) - 1, 1) for i, c in enumerate(uniq)}).to_numpy(dtype=float)
    return np.where(np.isfinite(pos), pos, 0.5)


def _colour_groups(meta: pd.DataFrame, rows: np.ndarray, color_by: str | None) -> list[tuple[str | None, np.ndarray,
                                                                                               dict]]:
    """(legend name or None, point indices, marker properties) per trace: one continuous trace for a numeric
    column (with a colour bar, integer ticks on integer columns), one per value for a categorical one."""
    everything = np.arange(len(rows))
    if color_by is None:
        return [(None, everything, {"color": style.CATEGORICAL[0]})]
    values = meta[color_by].iloc[rows]
    if is_numeric(values) and values.nunique() > 1:  # a numeric column is continuous everywhere
        scale = style.numeric_colors(values.to_numpy(dtype=float), label(color_by))
        bar = dict(scale.colorbar)
        if not scale.log and is_integer_column(values):
            lo, hi = float(values.min()), float(values.max())
            ticks = style.nice_ticks(lo, hi, 5, integer=True)  # round whole numbers inside the range
            bar.update(tickvals=list((ticks - lo) / (hi - lo)), ticktext=[f"{int(t):,}" for t in ticks])
        return [(None, everything, {"color": scale.position, "colorscale": style.CONTINUOUS, "showscale": True,
                                    "cmin": 0.0, "cmax": 1.0, "colorbar": bar})]
    cats = values.astype(str).to_numpy()
    uniq = sorted(pd.unique(cats))
    if len(uniq) > MAX_CATEGORIES:
        return [(None, everything, {"color": style.CATEGORICAL[0]})]
    return [(f"{color_by} = {c}", np.flatnonzero(cats == c), {"color": style.CATEGORICAL[i % len(style.CATEGORICAL)]})
            for i, c in enumerate(uniq)]


def projection_figure(
    coords: np.ndarray,
    meta: pd.DataFrame,
    rows: Sequence[int] | np.ndarray | None = None,
    color_by: str | None = None,
    model_col: str = "model_id",
    lines: bool | np.ndarray = False,
    selected: Sequence[int] = (),
    axis_title: str = "component",
    title: str | None = None,
    hover_extra: Sequence[str] = (),
    height: int = 520,
    highlight: Sequence[int] | None = None,
    neighbours: Sequence[int] = (),
    visible: np.ndarray | None = None,
    size_by: str | None = None,
    opacity_by: str | None = None,
    density: bool = False,
) -> go.Figure:
    """WebGL scatter of projected checkpoints ``coords`` [n, 2 or 3] (``rows``: their zoo rows, default 0..n-1).

    ``color_by``: a metadata column; numbers get the house continuous scale (log-scaled when they span
    decades, :func:`wslviz.plots.style.numeric_colors`) with a colour bar, strings one legend entry per
    value. ``size_by`` / ``opacity_by``: columns mapped to the marker size and opacity (by
    :func:`unit_scale`; opacity in 2D only, where markers take one per point). ``visible`` [n] bool: the
    points drawn (a cross-filter; the map itself stays fitted on all of them). ``lines`` joins each model's
    checkpoints in epoch order with thin grey trails: True for the drawn points, or a bool mask [n] of the
    points the trails pass through, drawn or not (an epoch slider's "up to this epoch"). ``highlight`` (search matches),
    ``selected`` and ``neighbours`` rows keep their colour at full opacity while every other point is
    dimmed; neighbours are also ringed, and with them the ``selected`` query (a ring sits outside its
    point, which keeps its colour).
    ``density`` draws contours of the drawn points' density under them (2D). Each point's
    ``customdata[0]`` is its zoo row (read back by :func:`rows_from_selection`)."""
    coords = np.asarray(coords, dtype=float)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"coords must be [n, 2] or [n, 3], got {list(coords.shape)}")
    rows = np.arange(len(coords)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) != len(coords):
        raise ValueError(f"{len(rows)} rows for {len(coords)} points")
    for col in (color_by, size_by, opacity_by):
        if col is not None and col not in meta:
            raise ValueError(f"the metadata has no column {col!r}")
    three = coords.shape[1] == 3
    dim = coords.shape[1]
    scatter = go.Scatter3d if three else go.Scattergl
    fig = go.Figure()
    shown = np.ones(len(rows), dtype=bool) if visible is None else np.asarray(visible, dtype=bool)

    def xyz(idx: np.ndarray) -> dict[str, Any]:
        d = {"x": coords[idx, 0], "y": coords[idx, 1]}
        if three:
            d["z"] = coords[idx, 2]
        return d

    pos = pd.Series(np.arange(len(rows)), index=rows)
    emphasised = np.zeros(len(rows), dtype=bool)
    for chosen in (selected, neighbours, () if highlight is None else highlight):
        emphasised[pos.reindex(list(chosen)).dropna().to_numpy(dtype=np.int64)] = True
    dim_others = highlight is not None or bool(emphasised.any())
    lo, hi = SIZES[dim]
    size = lo + (hi - lo) * unit_scale(meta[size_by].iloc[rows]) if size_by else np.full(len(rows), DEFAULT_SIZE[dim])
    size = np.where(emphasised, size + 3, size)
    alpha = 0.25 + 0.75 * unit_scale(meta[opacity_by].iloc[rows]) if opacity_by else np.full(len(rows), 0.85)
    alpha = np.where(emphasised, 1.0, alpha * DIMMED / 0.85 if dim_others else alpha)

    if density and not three and shown.sum() > 2:
        fig.add_trace(go.Histogram2dContour(
            **xyz(np.flatnonzero(shown)), name="density", showscale=False, ncontours=10, hoverinfo="skip",
            colorscale=[[0.0, "rgba(150,150,150,0.5)"], [1.0, "rgba(40,40,40,0.9)"]], line={"width": 1},
            contours={"coloring": "lines"}, showlegend=False))
    trail = np.asarray(lines, dtype=bool) if isinstance(lines, np.ndarray) else (shown if lines else None)
    if trail is not None and model_col in meta and "epoch" in meta:
        lx, ly, lz = _model_lines(coords, meta, rows, model_col, np.asarray(trail, dtype=bool))
        if lx:
            extra = {"z": lz} if three else {}
            fig.add_trace(scatter(x=lx, y=ly, **extra, mode="lines", name="training trail (one model)",
                                  line={"color": TRAIL_COLOR, "width": 1}, hoverinfo="skip"))
    custom, template = _hover(meta, rows, hover_extra)
    for name, idx, marker in _colour_groups(meta, rows, color_by):
        idx = idx[shown[idx]]
        # 3-D markers take one opacity per trace: the dimmed points go in a trace of their own there
        parts = [(idx[emphasised[idx]], 1.0), (idx[~emphasised[idx]], DIMMED)] if three and dim_others else [
            (idx, 0.85)]
        for j, (part, opacity) in enumerate(parts):
            per_point = {k: (v[part] if isinstance(v, np.ndarray) else v) for k, v in marker.items()}
            fig.add_trace(scatter(
                **xyz(part), mode="markers", name=name or "checkpoints", legendgroup=name,
                showlegend=name is not None and j == 0, customdata=custom[part], hovertemplate=template,
                marker={"size": size[part], "opacity": opacity if three else alpha[part],
                        "line": {"width": 0} if three else {"width": np.where(emphasised[part], 1.0, 0.0),
                                                            "color": "white"}, **per_point}))
    rings = [("nearest neighbours", neighbours, NEIGHBOUR_COLOR)] + ([("query", selected, "black")] if len(neighbours)
                                                                     else [])
    for name, members, colour in rings:
        ring = pos.reindex(list(members)).dropna().to_numpy(dtype=np.int64)
        ring = ring[shown[ring]]
        if len(ring):
            fig.add_trace(scatter(**xyz(ring), mode="markers", name=name, customdata=custom[ring],
                                  hovertemplate=template, marker={
                                      "size": size[ring] + (8 if not three else 4), "color": colour,
                                      "symbol": "circle-open", "line": {"width": 2, "color": colour}}))
    names = [f"{axis_title} 1", f"{axis_title} 2", f"{axis_title} 3"]
    if three:
        fig.update_layout(scene={"xaxis_title": names[0], "yaxis_title": names[1], "zaxis_title": names[2]})
    else:
        fig.update_layout(xaxis_title=names[0], yaxis_title=names[1], dragmode="select")
    style.apply(fig, title, height=height)
    fig.update_layout(legend={"orientation": "h", "x": 0, "y": -0.15, "yanchor": "top"})
    return fig


def _model_lines(coords: np.ndarray, meta: pd.DataFrame, rows: np.ndarray, model_col: str, through: np.ndarray):
    """x, y, z lists joining each model's checkpoints among the points ``through`` [n] bool in epoch order,
    models separated by ``None``."""
    keep = np.flatnonzero(through)
    df = pd.DataFrame({"m": meta[model_col].iloc[rows[keep]].to_numpy(), "e": meta["epoch"].iloc[rows[keep]].to_numpy(),
                       "i": keep}).sort_values(["m", "e", "i"])
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


def search_rows(meta: pd.DataFrame, query: str) -> np.ndarray:
    """Bool mask [n] of the metadata rows matching ``query``, terms joined by ``and`` (or ``&``), each one of:

    * ``column OP value`` with OP one of ``= == != > >= < <=`` (numbers compared as numbers, equality to
      float32 rounding; text case-insensitively, equality and ``!=`` only), e.g. ``lr = 0.01 and epoch >= 5``;
    * ``#6``: the checkpoint in row 6;
    * any other word: rows where some text column contains it (case-insensitive), e.g. ``adam``.

    Raises ``ValueError`` naming a column that does not exist or a value that is not a number where one is
    needed. An empty query matches every row."""
    mask = np.ones(len(meta), dtype=bool)
    for term in (t.strip() for t in re.split(r"\s+and\s+|&", query.strip(), flags=re.IGNORECASE)):
        if term:
            mask &= _term_mask(meta, term)
    return mask


def _term_mask(meta: pd.DataFrame, term: str) -> np.ndarray:
    if re.fullmatch(r"#\d+", term):
        hit = np.zeros(len(meta), dtype=bool)
        if int(term[1:]) < len(meta):
            hit[int(term[1:])] = True
        return hit
    match = _TERM.match(term)
    if match is None:
        text = [c for c in meta.columns if not is_numeric(meta[c])]
        hit = np.zeros(len(meta), dtype=bool)
        for c in text:
            hit |= meta[c].astype(str).str.contains(term, case=False, regex=False).to_numpy()
        return hit
    col, op, value = match.groups()
    if col not in meta:
        raise ValueError(f"no column {col!r}; columns: {', '.join(map(str, meta.columns))}")
    series = meta[col]
    if is_numeric(series):
        try:
            x = float(value)
        except ValueError:
            raise ValueError(f"{col} is numeric: {value!r} is not a number") from None
        v = series.to_numpy(dtype=float)
        equal = np.isclose(v, x, rtol=1e-6, atol=0.0)
        return {"=": equal, "==": equal, "!=": ~equal, ">": v > x, ">=": (v >= x) | equal, "<": v < x,
                "<=": (v <= x) | equal}[op]
    if op not in ("=", "==", "!="):
        raise ValueError(f"{col} holds text: compare it with = or !=, not {op}")
    equal = series.astype(str).str.lower().to_numpy() == value.strip("'\"").lower()
    return ~equal if op == "!=" else equal


def range_mask(meta: pd.DataFrame, ranges: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """Bool mask [n] of the rows whose value of every column in ``ranges`` lies in its closed ``(lo, hi)``."""
    mask = np.ones(len(meta), dtype=bool)
    for col, (lo, hi) in ranges.items():
        v = meta[col].to_numpy(dtype=float)
        mask &= (v >= lo) & (v <= hi)
    return mask


def histogram_bins(values: np.ndarray, bins: int = 30) -> np.ndarray:
    """Bin edges for a numeric column: one bin per whole number for integer columns with few values, log-spaced
    when the values span decades, else ``bins`` equal bins."""
    v = values[np.isfinite(values)]
    if not len(v):
        return np.array([0.0, 1.0])
    lo, hi = float(v.min()), float(v.max())
    if np.all(v == np.round(v)) and hi - lo <= 60:
        return np.arange(lo - 0.5, hi + 1.0)
    if style.spans_decades(v):
        return np.geomspace(lo, hi, bins + 1)
    return np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo - 0.5, hi + 0.5])


def histogram_figure(meta: pd.DataFrame, column: str, kept: np.ndarray | None = None,
                     chosen: tuple[float, float] | None = None, bins: int = 30, height: int = 220) -> go.Figure:
    """A linked histogram of the numeric ``column``: all rows in grey, the rows ``kept`` [n] bool by the
    current filters in colour, the ``chosen`` range shaded. Bars carry their ``[lo, hi]`` edges as
    ``customdata`` and the chart is in horizontal box-select mode: a dragged range comes back through
    :func:`range_from_selection`. Integer columns get one bar per value and integer ticks; columns that
    span decades log-spaced bins on a log axis."""
    values = meta[column].to_numpy(dtype=float)
    edges = histogram_bins(values, bins)
    kept = np.ones(len(values), dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    log = style.spans_decades(values[np.isfinite(values)])
    centres = np.sqrt(edges[:-1] * edges[1:]) if log else (edges[:-1] + edges[1:]) / 2
    custom = np.column_stack([edges[:-1], edges[1:]])
    fig = go.Figure()
    for name, mask, colour in (("all", np.ones(len(values), dtype=bool), "rgb(200,200,200)"),
                               ("shown", kept, style.CATEGORICAL[0])):
        counts = np.histogram(values[mask & np.isfinite(values)], edges)[0]
        fig.add_trace(go.Bar(x=centres, y=counts, width=np.diff(edges), name=name, marker_color=colour,
                             customdata=custom, hovertemplate=f"{column} %{{customdata[0]:.4g}} to "
                             "%{customdata[1]:.4g}: %{y:,} checkpoints<extra>" + name + "</extra>"))
    if chosen is not None:
        fig.add_vrect(x0=chosen[0], x1=chosen[1], fillcolor=style.CATEGORICAL[1], opacity=0.15, line_width=0)
    fig.update_layout(barmode="overlay", bargap=0.05, dragmode="select", selectdirection="h", showlegend=False,
                      xaxis_title=label(column), yaxis_title="checkpoints")
    if log:
        fig.update_xaxes(type="log", dtick=1)  # ticks at the decades only
    style.apply(fig, None, height=height)
    style.integer_axes(fig, y=max(1, int(np.histogram(values[np.isfinite(values)], edges)[0].max())))
    if is_integer_column(meta[column]) and not log:
        style.integer_axes(fig, x=float(np.nanmax(values)))
    fig.update_layout(margin={"l": 60, "r": 20, "t": 10, "b": 45})
    return fig


def range_from_selection(selection: Mapping[str, Any] | None) -> tuple[float, float] | None:
    """The ``(lo, hi)`` range chosen on a :func:`histogram_figure` (its ``event["selection"]``): from the
    selected bars' edges, else from the dragged box's x extent; None when nothing was chosen."""
    if not selection:
        return None
    edges = [p["customdata"] for p in selection.get("points", []) or []
             if isinstance(p.get("customdata"), list | tuple) and len(p["customdata"]) == 2]
    if edges:
        return float(min(e[0] for e in edges)), float(max(e[1] for e in edges))
    for box in selection.get("box", []) or []:
        x = box.get("x")
        if x and len(x) == 2:
            return float(min(x)), float(max(x))
    return None


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
