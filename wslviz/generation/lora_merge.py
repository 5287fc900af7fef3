"""Merging LoRA adapters on what they compute, ``delta_W = B A``, never on ``A`` and ``B`` separately.

Two adapters that are the same update in different GL(r) coordinates (``(B G, G^-1 A)``) have unrelated ``A`` and
``B``; averaging factors averages coordinates, and ``mean(B) mean(A)`` is not ``mean(B A)``. So every method here
combines the per-module updates (task arithmetic, Ilharco et al. ICLR 2023; TIES, Yadav et al. NeurIPS 2023; DARE,
Yu et al. ICML 2024; a plain mean) and factorises the result back to the layout's rank by truncated SVD (the best
rank-r approximation, Eckart-Young), reporting the relative error of that step per module: a merge of K rank-r
adapters has rank up to K r. :func:`factor_average`, the common wrong way, is kept as a labelled baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from wslviz.core.protocol import ArchitectureLike
from wslviz.generation.merging import dare_vectors, ties_vector

LORA_METHODS = ("average", "task_arithmetic", "ties", "dare")
"""Merges on ``delta_W``; :func:`factor_average` is the baseline."""
LABELS = {"average": "mean of delta_W", "task_arithmetic": "task arithmetic on delta_W",
          "ties": "TIES on delta_W", "dare": "DARE on delta_W",
          "factor_average": "baseline: mean of A and mean of B (wrong: ignores GL(r))"}
"""Method name -> label, in the order the Merge page offers them for adapter zoos."""


@dataclass
class AdapterMerge:
    """A merged adapter: ``weights`` [P] (the layout's rank, factors from the truncated SVD), ``deltas`` (per
    module the merged update ``[out, K]`` before truncation, float64), ``errors`` (per module
    ``||D - D_r|| / ||D||`` of the truncation), ``method``."""

    weights: torch.Tensor
    deltas: dict[str, torch.Tensor]
    errors: dict[str, float]
    method: str


def factorise(arch: ArchitectureLike, deltas: dict[str, torch.Tensor], like: torch.Tensor,
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Factors of each module's ``[out, K]`` update at the layout's rank (``B = U sqrt(S)``, ``A = sqrt(S) V^T``
    of the truncated SVD) written into a copy of ``like`` [P]; returns it with the relative truncation errors."""
    out, errors = like.detach().double().clone(), {}
    slots = {p.name: p for p in arch.layout}
    for m in arch.modules:
        d = deltas[m["name"]]
        r = m["a_shape"][0]
        u, s, vh = torch.linalg.svd(d, full_matrices=False)
        k = min(r, len(s))
        b = torch.zeros(d.shape[0], r, dtype=d.dtype)
        a = torch.zeros(r, d.shape[1], dtype=d.dtype)
        b[:, :k], a[:k] = u[:, :k] * s[:k].sqrt(), s[:k].sqrt()[:, None] * vh[:k]
        total = float(s.square().sum())
        errors[m["name"]] = (float(s[k:].square().sum()) / total) ** 0.5 if total > 0 else 0.0
        out[slots[f"{m['name']}.lora_B"].slice] = b.reshape(-1)
        out[slots[f"{m['name']}.lora_A"].slice] = a.reshape(-1)
    return out.float(), errors


def merge_adapters(arch: ArchitectureLike, weights: torch.Tensor, method: str = "ties", lam: float = 1.0,
                   density: float = 0.2, drop: float = 0.5, combine: str = "task_arithmetic",
                   seed: int = 0) -> AdapterMerge:
    """Merge K adapters (``weights`` [K, P] of a LoRA zoo) on ``delta_W`` by ``method`` of :data:`LORA_METHODS`:
    ``average`` (the mean), ``task_arithmetic`` (``lam`` times the sum), ``ties`` (``lam`` times the TIES vector,
    keeping ``density`` of each update), ``dare`` (each update's entries dropped with probability ``drop`` and
    rescaled, then ``lam`` times their sum, or with ``combine="ties"`` their TIES vector). Other tensors (DoRA
    magnitudes, saved heads) are averaged."""
    if method not in LORA_METHODS:
        raise ValueError(f"unknown adapter merge {method!r}; known: {', '.join(LORA_METHODS)} (and factor_average)")
    if weights.dim() != 2 or len(weights) == 0:
        raise ValueError("merging needs adapters as a [K, P] matrix with K >= 1")
    vectors = arch.flat_deltas(weights)
    match method:
        case "average":
            merged = vectors.mean(0)
        case "task_arithmetic":
            merged = lam * vectors.sum(0)
        case "ties":
            merged = lam * ties_vector(vectors, density)
        case _ if combine == "ties":
            merged = lam * ties_vector(dare_vectors(vectors, drop, seed), density)
        case _:
            merged = lam * dare_vectors(vectors, drop, seed).sum(0)
    deltas, start = {}, 0
    for m in arch.modules:
        rows, cols = m["b_shape"][0], math.prod(m["a_shape"][1:])
        deltas[m["name"]] = merged[start:start + rows * cols].reshape(rows, cols)
        start += rows * cols
    flat, errors = factorise(arch, deltas, weights.double().mean(0))
    return AdapterMerge(flat, deltas, errors, method)


def factor_average(arch: ArchitectureLike, weights: torch.Tensor) -> torch.Tensor:
    """The wrong way, kept as a labelled baseline: the mean of the raw factors (``mean(A)``, ``mean(B)``) ``[P]``,
    whose update ``mean(B) mean(A)`` is not the mean update and depends on each adapter's GL(r) coordinates."""
    return weights.double().mean(0).float()
