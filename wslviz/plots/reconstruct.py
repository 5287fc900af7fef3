"""Figures for the Reconstruct page: inverted inputs beside their nearest real training examples. Pure functions,
no Streamlit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from wslviz.plots.inr import image_grid


def _display(images: np.ndarray) -> np.ndarray:
    """Images ``[n, H, W]`` each rescaled to [0, 1] over its own range (inverted inputs have no fixed scale)."""
    flat = images.reshape(len(images), -1)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    return ((flat - lo) / np.where(hi > lo, hi - lo, 1.0)).reshape(images.shape)


def inversion_pairs(inverted: np.ndarray, nearest: np.ndarray, labels: Sequence[int], distances: Sequence[float],
                    columns: int = 10) -> go.Figure:
    """Inverted images ``[n, H, W]`` in every other row of a grid, each captioned with its class and the distance to
    its nearest real training example ``[n, H, W]``, drawn right under it; each image rescaled to its own range."""
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
    return image_grid(np.concatenate(rows), captions, columns,
                      "Inverted inputs, captioned class · distance, above their nearest real training example")
