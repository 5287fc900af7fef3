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


def nice_ticks(lo: float, hi: float, ticks: int = 5, integer: bool = False) -> np.ndarray:
    """Round tick values (multiples of 1, 2 or 5 x 10^k; whole numbers when ``integer``) inside
    [``lo``, ``hi``], about ``ticks`` of them; the two ends when the range is empty."""
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        return np.array([lo]) if np.isfinite(lo) else np.array([])
    k = int(np.floor(np.log10(span / max(ticks - 1, 1))))
    steps = [m * 10.0 ** e for e in (k - 1, k, k + 1) for m in (1, 2, 5) if not integer or m * 10.0 ** e >= 1]

    def grid(step: float) -> np.ndarray:
        out = np.arange(np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9) + 1) * step
        return np.round(out, max(0, -int(np.floor(np.log10(step)))) + 1) + 0.0  # no "-0"

    # the round step whose tick count is nearest ``ticks`` (the coarser one on a tie)
    return min((grid(s) for s in reversed(steps)), key=lambda g: abs(len(g) - ticks))


def log_ticks(lo: float, hi: float) -> np.ndarray:
    """Round ticks, as log10 exponents, inside [``lo``, ``hi``] (exponents too): the decades, and 2 and 5
    between them when the range spans less than two decades."""
    mults = (1, 2, 5) if hi - lo < 2 else (1,)
    ticks = np.array([d + np.log10(m) for d in np.arange(np.floor(lo) - 1, np.ceil(hi) + 1) for m in mults])
    ticks = ticks[(ticks >= lo - 1e-9) & (ticks <= hi + 1e-9)]
    return ticks if len(ticks) >= 2 else np.log10(nice_ticks(10 ** lo, 10 ** hi, 3))


def plain_number(v: float) -> str:
    """A tick label in plain digits (0.0001, 0.02, 5, 2,000), never scientific notation."""
    v = float(f"{v:.3g}")
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return np.format_float_positional(v, trim="-")


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
    zero = v == 0
    # weight decays 0, 0.0001, 0.001: the positive values span decades, and 0 sits one decade below the smallest
    log = spans_decades(v) or bool(zero.any() and (v[np.isfinite(v)] >= 0).all() and spans_decades(v[~zero]))
    z = np.log10(np.where(v > 0, v, np.nan)) if log else v
    if log and zero.any():
        z = np.where(zero, np.nanmin(z) - 1.0, z)
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    position = (z - lo) / (hi - lo) if hi > lo else np.where(np.isfinite(z), 0.5, np.nan)
    if log:  # round values (decades; 2 and 5 between them over a short range), labelled in plain numbers
        ticks = log_ticks(lo, hi)
        text = [plain_number(10 ** t) for t in ticks]
        if zero.any():  # the zero's own tick at the bottom of the bar, clear of the decade ticks above it
            keep = ticks > lo + 0.5
            ticks, text = np.concatenate([[lo], ticks[keep]]), ["0"] + [s for s, k in zip(text, keep, strict=True) if k]
        bar = {"title": {"text": f"{title} (log scale)"}, "tickvals": list((ticks - lo) / max(hi - lo, 1e-12)),
               "ticktext": text}
    else:  # round values (1, 2, 5 x 10^k) inside the data range
        ticks = nice_ticks(lo, hi)
        bar = {"title": {"text": title}, "tickvals": list((ticks - lo) / max(hi - lo, 1e-12)),
               "ticktext": [plain_number(t) for t in ticks]}
    return NumericColors(position, log, bar)
