"""Shared look: one template, one continuous scale, one diverging scale, one categorical palette.

Every figure builder calls :func:`apply` last, so all pages read alike.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.colors import qualitative

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
