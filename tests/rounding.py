"""Tolerances for comparing floats that one computation produced two ways (other kernels, chunkings, batch positions,
thread counts or processes): they agree to rounding, not bit for bit.

Matrix kernels and reductions round differently with thread count, batch size, memory alignment and instruction set,
so results of different code paths are compared with the classical worst-case bound for a floating-point sum of
n terms (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.5)::

    |fl(sum) - sum| <= gamma_n * sum(|terms|),   gamma_n = n u / (1 - n u),

u the unit roundoff (2**-24 for float32, 2**-53 for float64). Two evaluations that add in different orders differ by
at most twice that. A network's output is a chain of such sums; to first order the layers' bounds add (each layer's
error is passed on with gain about 1), so n is the sum of the layers' reduction lengths (:func:`network_terms`),
plus the loss's own sums. The bound is relative to the sum of the magnitudes, which cancellation can make larger
than the result, so it is applied relative to the largest compared magnitude (``atol``) as well as to each value
(``rtol``). It is far above the typical difference (about sqrt(n) u), and far below any real error (a wrong row,
layer or parameter changes results at the 1e-2 level).
"""

from __future__ import annotations

import math

import numpy as np
import torch

U32 = 2.0**-24
U64 = 2.0**-53


def tolerance(n_terms: int, u: float = U32) -> float:
    """``2 gamma_n``: how far apart two evaluations of one sum of ``n_terms`` terms may round."""
    return 2 * n_terms * u / (1 - n_terms * u)


def network_terms(arch, n_samples: int = 0) -> int:
    """Terms summed along a forward pass of ``arch`` (per linear/conv layer its fan-in plus the bias, per pooling or
    normalisation its window; one per other layer for its own rounding), plus, given ``n_samples``, the loss's sums:
    logsumexp over the classes and the mean over the samples."""
    terms = 0
    for i, layer in enumerate(arch.layers):
        kind = layer["type"]
        if kind == "linear":
            terms += layer["in_features"] + 1
        elif kind == "conv2d":
            terms += layer["in_channels"] * layer["kernel_size"] ** 2 + 1
        elif kind in ("maxpool2d", "avgpool2d"):
            terms += layer["kernel_size"] ** 2
        elif kind == "global_avg_pool":
            terms += math.prod(arch.shapes[i - 1][1:]) if i else 1
        elif kind == "layernorm":
            terms += 2 * layer["normalized_shape"]  # mean and variance over the features
        else:
            terms += 1
    if n_samples:
        terms += arch.output_dim + n_samples
    return terms


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))  # a copy: pandas arrays are read-only


def assert_rounding_close(actual, expected, n_terms: int, u: float = U32, msg: str = "") -> None:
    """``actual`` equals ``expected`` to :func:`tolerance` ``(n_terms, u)``, relative to each value and to the
    largest finite magnitude of ``expected``; NaN matches NaN."""
    actual, expected = _tensor(actual).double(), _tensor(expected).double()
    tol = tolerance(n_terms, u)
    finite = expected[torch.isfinite(expected)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale, equal_nan=True,
                               msg=lambda m: f"{msg}\n{m}\n(rounding tolerance {tol:.2e} for {n_terms} terms)")


def fragile_predictions(logits: torch.Tensor, n_terms: int) -> torch.Tensor:
    """Per model, how many of its predictions rounding could flip: samples whose two largest logits (``logits``
    [B, N, C]) are within twice the rounding tolerance (each side may be off by one tolerance) -> ``[B]``."""
    top2 = logits.double().topk(2, dim=-1).values
    scale = logits.double().abs().amax(dim=(1, 2)).unsqueeze(1)
    return ((top2[..., 0] - top2[..., 1]) <= 2 * tolerance(n_terms) * scale).sum(1)


def assert_accuracy_close(actual, expected, logits: torch.Tensor, n_terms: int) -> None:
    """Accuracies (fractions of the N samples in ``logits`` [B, N, C]) of the same models computed two ways differ
    by at most the predictions rounding could flip (:func:`fragile_predictions`); NaN (regression) matches NaN."""
    actual, expected = _tensor(actual).double(), _tensor(expected).double()
    assert torch.equal(torch.isnan(actual), torch.isnan(expected))
    flips = ((actual - expected).abs() * logits.shape[1]).nan_to_num(0.0).round()
    allowed = fragile_predictions(logits, n_terms).double()
    assert bool((flips <= allowed).all()), \
        f"accuracies differ by {flips.tolist()} predictions, rounding could flip {allowed.tolist()}"
