"""Shared look: one template, one continuous scale, one diverging scale, one categorical palette, and
the rules every figure follows: numeric columns coloured continuously (log-scaled when they span
decades, :func:`numeric_colors`), integer ticks on axes of counts and indices (:func:`integer_axes`).

Every figure builder calls :func:`apply` last, so all pages read alike; pages draw figures with
``theme=None`` so that Streamlit's theme does not replace this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

TEMPLATE = "plotly_white"
CONTINUOUS = "Viridis"  # ordered quantities: accuracy, epoch, learning rate
DIVERGING = "RdBu_r"  # signed quantities centred on 0: weights, differences
LOSS_SCALE = "Magma_r"  # loss surfaces: darker = higher loss
CATEGORICAL = qualitative.D3
NAIVE_COLOR = CATEGORICAL[3]  # red: before alignment / naive
ALIGNED_COLOR = CATEGORICAL[2]  # green: after alignment
HEIGHT = 420


def apply(fig: go.Figure, title: str | None = None, height: int = HEIGHT) -> go.Figure:
    """Apply the house template, margins and an optional title; returns ``fig``."""
    fig.update_layout(template=TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 50 if title else 20, "b": 50},
                      legend={"orientation": "v"}, font={"size": 13})
    if title:
        fig.update_layout(title={"text": title, "x": 0.0, "xanchor": "left"})
    return fig


def nice_step(span: float, ticks: int = 8) -> int:
    """An integer tick step (1, 2, 5, 10, 20, ...) giving about ``ticks`` ticks over ``span``."""
    raw = max(span / max(ticks, 1), 1.0)
    base = 10 ** int(np.floor(np.log10(raw)))
    return int(next(m * base for m in (1, 2, 5, 10) if m * base >= raw))


def integer_axes(fig: go.Figure, x: float | None = None, y: float | None = None) -> go.Figure:
    """Integer ticks (no 0.5 on an axis of counts or indices), with thousands separators, for the x and/or
    y axes of every subplot whose largest value is ``x`` / ``y`` (None: the axis is left alone)."""
    for upper, update in ((x, fig.update_xaxes), (y, fig.update_yaxes)):
        if upper is not None:
            update(tick0=0, dtick=nice_step(float(upper)), tickformat=",d")
    return fig


def spans_decades(values: np.ndarray | Sequence[float]) -> bool:
    """Positive values spread over more than a factor of 20 (learning rates, weight decays): shown on a
    log scale everywhere (axes and colours)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(len(v)) and v.min() > 0 and v.max() / v.min() > 20


@dataclass(frozen=True)
class NumericColors:
    """How a numeric column maps to :data:`CONTINUOUS`: ``position`` in [0, 1] per value (of the log10
    when :func:`spans_decades`), and a colour bar with ticks at readable values."""

    position: np.ndarray
    log: bool
    colorbar: dict

    def colors(self) -> list[str]:
        """The colour of every value (grey where it is missing)."""
        ok = np.isfinite(self.position)
        out = np.full(len(self.position), "rgb(190,190,190)", dtype=object)
        if ok.any():
            out[ok] = sample_colorscale(CONTINUOUS, list(self.position[ok]))
        return list(out)


def numeric_colors(values: np.ndarray | Sequence[float], title: str) -> NumericColors:
    """The house mapping of a numeric column to colours: continuous, log-scaled when it spans decades,
    the same on every page (so `lr` = 0.1 has one colour on the Zoo and Projections pages)."""
    v = np.asarray(values, dtype=float)
    log = spans_decades(v)
    z = np.log10(np.where(v > 0, v, np.nan)) if log else v
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    position = (z - lo) / (hi - lo) if hi > lo else np.where(np.isfinite(z), 0.5, np.nan)
    if log:
        ticks = np.arange(np.floor(lo), np.ceil(hi) + 1)
        ticks = ticks[(ticks >= lo - 1e-9) & (ticks <= hi + 1e-9)]
        ticks = ticks if len(ticks) >= 2 else np.array([lo, hi])
        bar = {"title": {"text": f"{title} (log scale)"}, "tickvals": list((ticks - lo) / max(hi - lo, 1e-12)),
               "ticktext": [f"{10 ** t:.3g}" for t in ticks]}
    else:
        ticks = np.linspace(lo, hi, 5)
        bar = {"title": {"text": title}, "tickvals": list((ticks - lo) / max(hi - lo, 1e-12)),
               "ticktext": [f"{t:.3g}" for t in ticks]}
    return NumericColors(position, log, bar)
