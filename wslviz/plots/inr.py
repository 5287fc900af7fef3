"""Figures of rendered INRs: a grid of images with captions, and image strips along paths between two INRs.

Images are tiled into one array (one heatmap, or one RGB image) rather than one subplot each, so a grid of
dozens of INRs draws as fast as one picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from wslviz.plots import style

GREY = [[0.0, "white"], [1.0, "black"]]  # ink dark on paper, as the digits are drawn
GAP = 1  # pixels between tiles (NaN: transparent)
GRID_WIDTH = 820  # pixels: the width an image grid gets on a laptop screen beside the sidebar


def _tile(images: np.ndarray, columns: int) -> tuple[np.ndarray, int, int]:
    """``[B, H, W(, 3)]`` -> one ``[rows*(H+GAP)-GAP, cols*(W+GAP)-GAP(, 3)]`` array with NaN gaps."""
    b, h, w = images.shape[:3]
    cols = max(1, min(columns, b))
    rows = -(-b // cols)
    shape = (rows * (h + GAP) - GAP, cols * (w + GAP) - GAP, *images.shape[3:])
    canvas = np.full(shape, np.nan, dtype=np.float32)
    for k in range(b):
        r, c = divmod(k, cols)
        canvas[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = images[k]
    return canvas, rows, cols


def _figure(canvas: np.ndarray, hover: str) -> go.Figure:
    if canvas.ndim == 3:  # RGB: NaN gaps white
        rgb = (np.nan_to_num(canvas, nan=1.0).clip(0, 1) * 255).astype(np.uint8)
        fig = go.Figure(go.Image(z=rgb, hoverinfo="skip"))
    else:
        fig = go.Figure(go.Heatmap(z=canvas, colorscale=GREY, zmin=0, zmax=1, showscale=False,
                                   hovertemplate=hover))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    return fig


def image_grid(images: np.ndarray, captions: Sequence[str] | None = None, columns: int = 8,
               title: str | None = None) -> go.Figure:
    """A grid of images ``[B, H, W]`` (grey, values in [0, 1], 1 = ink) or ``[B, H, W, 3]`` (RGB), ``columns``
    per row, with ``captions[b]`` above image b."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"expected a non-empty [B, H, W] or [B, H, W, 3] array, got shape {list(images.shape)}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    canvas, rows, cols = _tile(images, columns)
    h, w = images.shape[1:3]
    fig = _figure(canvas, "pixel value %{z:.2f}<extra></extra>")
    for k, text in enumerate(captions or []):
        r, c = divmod(k, cols)
        fig.add_annotation(x=c * (w + GAP) + (w - 1) / 2, y=r * (h + GAP) - 0.5, text=text, showarrow=False,
                           yanchor="bottom", font={"size": 10})
    # images keep their aspect: the height follows the grid's shape at a typical chart width, so a wide grid of
    # many rows leaves no empty band above and below it
    return style.apply(fig, title, height=max(160, int(80 + GRID_WIDTH * rows * (h + GAP) / (cols * (w + GAP)))))


def captions(meta: pd.DataFrame, rows: Sequence[int]) -> list[str]:
    """Short captions for INR rows: ``"#12 · 3 · 31.2 dB"`` (row, and ``label`` and ``psnr`` where the metadata
    has them)."""
    out = []
    for r in rows:
        parts = [f"#{int(r)}"]
        if "label" in meta:
            parts.append(str(meta["label"].iloc[int(r)]))
        if "psnr" in meta and pd.notna(meta["psnr"].iloc[int(r)]):
            parts.append(f"{float(meta['psnr'].iloc[int(r)]):.1f} dB")
        out.append(" · ".join(parts))
    return out


def path_strips(strips: Mapping[str, np.ndarray], ts: Sequence[float], title: str | None = None) -> go.Figure:
    """One row of images per path (``strips[name]`` ``[T, H, W(, 3)]``, e.g. naive and aligned), one column per
    interpolation coefficient ``t`` in ``ts``; row names on the left, ``t`` above each column."""
    names = list(strips)
    if not names:
        raise ValueError("no paths to draw")
    stacked = np.concatenate([np.asarray(strips[n], dtype=np.float32) for n in names])
    t_count = len(ts)
    if any(len(strips[n]) != t_count for n in names):
        raise ValueError(f"every strip needs one image per t ({t_count})")
    canvas, _, _ = _tile(stacked, t_count)
    h, w = stacked.shape[1:3]
    fig = _figure(canvas, "pixel value %{z:.2f}<extra></extra>")
    for c, t in enumerate(ts):
        fig.add_annotation(x=c * (w + GAP) + (w - 1) / 2, y=-0.5, text=f"t={t:.2f}", showarrow=False,
                           yanchor="bottom", font={"size": 10})
    for r, name in enumerate(names):
        fig.add_annotation(x=-1, y=r * (h + GAP) + (h - 1) / 2, text=name, showarrow=False, xanchor="right",
                           font={"size": 12})
    style.apply(fig, title, height=90 + 110 * len(names))
    fig.update_layout(margin={"l": 90})
    return fig
