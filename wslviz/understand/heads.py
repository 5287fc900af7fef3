"""Block-structured (multi-head) and tied permutation groups: drawing, sorting and matching their elements.

Multi-head attention has a symmetry group larger than "permute the heads" and smaller than "permute the
concatenated head dimensions" (Imfeld et al., "Transformer Fusion with Optimal Transport", ICLR 2024; Verma &
Elbayad, "Merging Text Transformer Models from Different Initializations", TMLR 2024): the heads can be
reordered as wholes, and inside each head the query/key dimensions by one permutation and the value
dimensions (with the output projection's input) by another. A :class:`~wslviz.core.permutation.PermGroup`
with ``heads = h`` holds ``h`` blocks of ``n / h`` units; its permutations map block to block
(``perm[b * d + p] = pi[b] * d + sigma_b[p]``), and groups with the same ``tie`` share ``pi``.

Every function here takes the groups of one *tie class* (:meth:`PermutationSpec.tie_classes`), so that the
shared head permutation is chosen once for all of them. A class of one plain group (``heads == 1``, no tie)
is an ordinary permutation group; these functions then reduce to a uniform permutation, a sort and one
linear assignment problem.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from wslviz.core.permutation import PermGroup


def is_structured(groups: Sequence[PermGroup]) -> bool:
    """Whether a tie class needs the block-structured treatment (several groups, or blocks)."""
    return len(groups) > 1 or any(g.heads > 1 for g in groups)


def compose_blocks(head_perm: torch.Tensor, within: torch.Tensor) -> torch.Tensor:
    """The unit permutation ``[..., h * d]`` of head permutation ``head_perm`` [..., h] and per-slot
    within-head permutations ``within`` [..., h, d] (slot ``b`` takes head ``head_perm[b]``'s units in the
    order ``within[b]``)."""
    d = within.shape[-1]
    return (head_perm.unsqueeze(-1) * d + within).flatten(-2)


def draw(groups: Sequence[PermGroup], gen: torch.Generator) -> list[torch.Tensor]:
    """One uniform random element of a tie class: a permutation ``[n]`` per group, structured as the groups
    require (the head permutation drawn once for the class)."""
    heads = groups[0].heads
    head_perm = torch.randperm(heads, generator=gen) if heads > 1 else torch.zeros(1, dtype=torch.int64)
    out = []
    for g in groups:
        within = torch.stack([torch.randperm(g.head_size, generator=gen) for _ in range(heads)])
        out.append(compose_blocks(head_perm, within))
    return out


def sort(keys: Sequence[torch.Tensor], groups: Sequence[PermGroup]) -> list[torch.Tensor]:
    """Canonical order of a tie class: per model, heads sorted by their summed key over the class (a
    quantity no within-head permutation changes), units inside each head by their own key.

    ``keys[i]``: ``[B, n_i]`` sort keys of group i's units; returns ``[B, n_i]`` permutations (stable sorts)."""
    heads = groups[0].heads
    b = keys[0].shape[0]
    head_key = sum(k.reshape(b, heads, -1).sum(-1) for k in keys)
    head_perm = torch.argsort(head_key, dim=-1, stable=True)  # [B, h]: slot s takes head head_perm[s]
    out = []
    for k in keys:
        blocks = k.reshape(b, heads, -1)
        in_slot = torch.gather(blocks, 1, head_perm.unsqueeze(-1).expand(-1, -1, blocks.shape[-1]))
        out.append(compose_blocks(head_perm, torch.argsort(in_slot, dim=-1, stable=True)))
    return out


def assign(costs: Sequence[torch.Tensor], groups: Sequence[PermGroup], require_gain: bool = True,
           tolerance: float = 1e-6) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per model, the element of a tie class maximising ``sum_i sum_j costs[i][j, perm_i[j]]``.

    ``costs[i]``: ``[B, n_i, n_i]``, entry ``(j, k)`` the gain of putting unit ``k`` at position ``j``.
    Exact: for every pair of head slots (a, c) one assignment problem per group inside the heads gives the best
    within-head matching and its value; the head permutation then solves the assignment problem on those
    values summed over the class. With ``require_gain``, a model whose best value does not beat the identity
    (by ``tolerance``, relative) keeps the identity. Returns the permutations ``[B, n_i]`` (unit ``j`` of the
    result is unit ``perm[j]``) and whether each model changed ``[B]``.
    """
    heads = groups[0].heads
    b = costs[0].shape[0]
    out = [torch.empty(b, g.size, dtype=torch.int64) for g in groups]
    better = torch.zeros(b, dtype=torch.bool)
    c = [cost.double().numpy() for cost in costs]
    for m in range(b):  # one problem per model: the solver has no batched form
        value = np.zeros((heads, heads))
        within = [np.empty((heads, heads, g.head_size), dtype=np.int64) for g in groups]
        for i, g in enumerate(groups):
            d = g.head_size
            blocks = c[i][m].reshape(heads, d, heads, d)
            for a in range(heads):
                for s in range(heads):
                    rows, cols = linear_sum_assignment(blocks[a, :, s, :], maximize=True)
                    within[i][a, s] = cols
                    value[a, s] += blocks[a, rows, s, cols].sum()
        _, head_perm = linear_sum_assignment(value, maximize=True)
        new = value[np.arange(heads), head_perm].sum()
        old = sum(np.trace(ci[m]) for ci in c)
        if require_gain and not new > old + tolerance * max(1.0, abs(old)):
            for i, g in enumerate(groups):
                out[i][m] = torch.arange(g.size)
            continue
        better[m] = True
        hp = torch.from_numpy(head_perm)
        for i in range(len(groups)):
            out[i][m] = compose_blocks(hp, torch.from_numpy(within[i][np.arange(heads), head_perm]))
    return out, better
