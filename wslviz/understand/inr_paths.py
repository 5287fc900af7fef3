"""Images along the straight path between two INRs, before and after aligning their hidden units.

Two INRs of similar images, fitted from different random initialisations, hold their hidden units in
different orders (and, for SIRENs, with different signs). Averaging them unit by unit mixes unrelated
units, so the naive midpoint ``(a + b) / 2`` draws noise; after weight matching (Ainsworth et al., "Git
Re-Basin", ICLR 2023) re-expresses ``b`` in ``a``'s basis, the midpoint draws an image between the two.
This is the picture behind linear mode connectivity modulo permutations (Entezari et al., ICLR 2022),
seen in image space instead of loss.
"""

from __future__ import annotations

import numpy as np

from wslviz.core.inr import image_size, output_offset, render_path
from wslviz.core.zoo import Zoo
from wslviz.understand.align import weight_matching

NAIVE, ALIGNED = "naive", "aligned"


def path_images(zoo: Zoo, a: int, b: int, steps: int = 9, size: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rendered INRs ``(1 - t) θ_a + t θ_b`` for ``steps`` values of t in [0, 1], for checkpoint rows ``a`` and
    ``b`` of an INR zoo: ``(ts [steps], {"naive": [steps, H, W(, 3)], "aligned": [...]})``; ``aligned`` matches
    ``b`` to ``a`` by weight matching (permutations and, for sine units, signs) first."""
    wa, wb = zoo.weights[int(a)].float(), zoo.weights[int(b)].float()
    ts = np.linspace(0.0, 1.0, steps)
    size, offset = size or image_size(zoo), output_offset(zoo)
    aligned = weight_matching(zoo.arch, wa, wb, seed=seed)
    return ts, {NAIVE: render_path(zoo.arch, wa, wb, ts, size, offset),
                ALIGNED: render_path(zoo.arch, wa, aligned, ts, size, offset)}
