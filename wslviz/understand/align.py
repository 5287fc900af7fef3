"""Alignment: re-express models in a common basis by undoing weight-space symmetries.

* :func:`weight_matching` — Git Re-Basin's weight matching (Ainsworth, Hayase & Srinivasa, "Git
  Re-Basin: Merging Models modulo Permutation Symmetries", ICLR 2023, Algorithm 1): coordinate descent
  over the permutation groups, each step a linear assignment problem
  (``scipy.optimize.linear_sum_assignment``) maximising the inner product with the reference, groups
  visited in random order until no step of a full pass removes :data:`PERMUTATION_PROGRESS` (0.01%) of a
  squared distance that depends only on the model's orbit (see :func:`weight_matching`). With the scale/sign
  symmetries a second candidate matches normal forms (unit incoming norm for ReLU units, sign of the largest incoming
  weight for odd units), so a permuted *and* rescaled copy is matched exactly; from the closer of the
  two, a second coordinate descent then chooses each group's permutation *and* unit scales or signs
  together, minimising the same distance. Every candidate is kept only where it is closer, so undoing
  more kinds of symmetry never leaves a model farther from the reference.
* :func:`activation_matching` — the same paper's activation matching: per group, units are paired by
  the correlation of their activations on data (by its magnitude where signs may flip); ReLU unit
  scales, which correlations cannot see, are then chosen by the weight distance.
* :func:`align_zoo`, :func:`align_to_average` and :func:`merge` for whole zoos.

Every function returns a group element's image of its input: the same function, other weights.

This module is long because the two matching methods share their data structures (symmetry elements, tie classes,
candidates kept only where closer) and the zoo-level functions built on them; splitting it would export those
private helpers across modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from wslviz.core.device import resolve_device
from wslviz.core.evaluation import forward
from wslviz.core.protocol import ArchitectureLike
from wslviz.core.report import Report
from wslviz.understand import heads
from wslviz.understand.factors import refine_factors
from wslviz.understand.repair import reset_batchnorm
from wslviz.understand.symmetry import (
    KINDS,
    SymmetryElement,
    SymmetryError,
    apply_group,
    apply_group_,
    apply_symmetry,
    as_batch,
    canonicalize,
    check_kinds,
    compose,
    inverse,
    normalising_element,
    unit_view,
)

Progress = Callable[[int, int], None] | None
METHODS = ("weight", "activation")


def _normal_form(arch: ArchitectureLike, weights: torch.Tensor, kinds: tuple[str, ...]) -> SymmetryElement:
    """Element (batched over ``weights`` [B, P]) putting every unit in scale/sign normal form, no reordering."""
    out = weights.to(torch.float64, copy=True)
    perms, scales = [], []
    for group in arch.perm_spec.groups:
        s = normalising_element(arch, out, group, kinds).to(out.device)  # it builds its factors on the CPU
        apply_group_(arch, out, group, None, s)
        perms.append(torch.arange(group.size, device=weights.device).expand(weights.shape[0], -1).clone())
        scales.append(s.float())
    return SymmetryElement(perms, scales)


def _assign(cost: torch.Tensor, floor: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model the maximising assignment of ``cost`` [B, n, n] and whether it beats the identity by more than
    ``floor`` [B]."""
    b, n, _ = cost.shape
    cols = torch.empty(b, n, dtype=torch.int64)
    better = torch.zeros(b, dtype=torch.bool)
    c = cost.double().cpu().numpy()
    for i in range(b):  # one assignment problem per model: the solver has no batched form
        _, col = linear_sum_assignment(c[i], maximize=True)
        old, new = np.trace(c[i]), c[i][np.arange(n), col].sum()
        # a strict, scale-aware improvement test (costs are float32) so that rounding cannot make the descent cycle
        if new > old + max(1e-6 * max(1.0, abs(old)), floor[i]):
            better[i] = True
            cols[i] = torch.from_numpy(col)
        else:
            cols[i] = torch.arange(n)
    return cols, better


def _permute_all(arch: ArchitectureLike, weights: torch.Tensor, perms: list[torch.Tensor]) -> torch.Tensor:
    out = weights.clone()
    for group, perm in zip(arch.perm_spec.groups, perms, strict=True):
        apply_group_(arch, out, group, perm)
    return out


def _match_batch(arch: ArchitectureLike, reference: torch.Tensor, others: torch.Tensor, seed: int, max_iter: int,
                 kinds: tuple[str, ...], descend: bool = True, floor: np.ndarray | None = None) -> SymmetryElement:
    """The elements ``[B]`` taking each of ``others`` [B, P] to ``reference`` [P]'s basis (weight matching).

    First one sweep in layer order matching only each group's incoming side (whose inputs the previous
    groups have just aligned; for an exact permuted copy this already is the planted answer). With
    ``descend``, coordinate descent follows from the better (on the full objective) of that sweep and the
    identity; a step counts only where it raises the inner product by more than ``floor`` [B] (default 0).
    """
    spec = arch.perm_spec
    b, dev = others.shape[0], others.device
    g_ref = _normal_form(arch, reference.unsqueeze(0), kinds)
    g_oth = _normal_form(arch, others, kinds)
    ref = apply_symmetry(arch, reference.unsqueeze(0).double(), g_ref).float()
    base = apply_symmetry(arch, others.double(), g_oth).float()
    # BatchNorm running statistics are permuted with their channels but left out of the objective: they are not
    # parameters (Git Re-Basin matches parameters) but measure the scale of the conv output before them, which
    # the BatchNorm divides away, and their size (the variances) would outweigh the weights in the inner product
    stats = {p.name for p in arch.layout if p.role in ("running_mean", "running_var")}
    matched = [[r for r in group.refs if r.name not in stats] for group in spec.groups]
    ref_views = [[unit_view(arch, ref, r) for r in refs] for refs in matched]
    # groups sharing a tensor: solving one changes the other's cost matrix
    neighbours = [{h for h, other in enumerate(spec.groups) if h != gi
                   and {r.name for r in group.refs} & {r.name for r in other.refs}}
                  for gi, group in enumerate(spec.groups)]
    identity_perms = [torch.arange(g.size, device=dev).expand(b, -1).clone() for g in spec.groups]
    floor = np.zeros(b) if floor is None else floor
    # attention heads: the groups of a tie class are solved together, block-structured (wslviz.understand.heads)
    tied = {gi: members for members in spec.tie_classes() for gi in members}

    def cost_of(cur: torch.Tensor, gi: int, incoming_only: bool) -> torch.Tensor:
        group = spec.groups[gi]
        cost = torch.zeros(b, group.size, group.size, device=dev)
        for ref_axis, ref_view in zip(matched[gi], ref_views[gi], strict=True):
            if not (incoming_only and not ref_axis.incoming):
                cost += ref_view @ unit_view(arch, cur, ref_axis).transpose(1, 2)
        return cost

    def step(cur: torch.Tensor, gi: int, incoming_only: bool) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        members = tied[gi]
        if not heads.is_structured([spec.groups[m] for m in members]):
            cols, better = _assign(cost_of(cur, gi, incoming_only), floor)
            return {gi: cols.to(dev)}, better
        cols, better = heads.assign([cost_of(cur, m, incoming_only).cpu() for m in members],
                                    [spec.groups[m] for m in members])
        return {m: c.to(dev) for m, c in zip(members, cols, strict=True)}, better

    sweep, cur = [p.clone() for p in identity_perms], base.clone()
    for gi in range(len(spec.groups)):
        if tied[gi][0] != gi:  # solved with the first group of its tie class
            continue
        for gj, cols in step(cur, gi, incoming_only=True)[0].items():
            apply_group_(arch, cur, spec.groups[gj], cols)
            sweep[gj] = torch.gather(sweep[gj], 1, cols)
    candidates = [identity_perms, sweep] if descend else [sweep]
    states = [_permute_all(arch, base, c) for c in candidates]
    kept = torch.ones(arch.n_params, dtype=torch.bool, device=dev)
    for p in arch.layout:
        if p.name in stats:
            kept[p.slice] = False
    best = torch.stack([(state * ref * kept).double().sum(1) for state in states]).argmax(0)  # [B], same objective
    rows = torch.arange(b, device=dev)
    cur = torch.stack(states)[best, rows]
    perms = [torch.stack([c[gi] for c in candidates])[best, rows] for gi in range(len(spec.groups))]

    rng = np.random.default_rng(seed)
    dirty = set(range(len(spec.groups)))
    for _ in range(max_iter if descend else 0):
        improved = False
        for gi in map(int, rng.permutation(len(spec.groups))):
            if gi not in dirty:  # nothing it depends on changed since it was solved: the answer would be the same
                continue
            dirty.difference_update(tied[gi])
            solved, better = step(cur, gi, incoming_only=False)
            if better.any():
                for gj, cols in solved.items():
                    apply_group_(arch, cur, spec.groups[gj], cols)
                    perms[gj] = torch.gather(perms[gj], 1, cols)
                    dirty |= neighbours[gj]
                improved = True
        if not improved:
            break
    match = SymmetryElement(perms, [torch.ones(b, g.size, device=dev) for g in spec.groups])
    back = inverse(g_ref)
    back = SymmetryElement([p.expand(b, -1) for p in back.perms], [s.expand(b, -1) for s in back.scales])
    return compose(back, compose(match, g_oth))


def fold_batchnorm_weights(arch: ArchitectureLike, weights: torch.Tensor) -> torch.Tensor:
    """``weights`` [B, P] with every BatchNorm folded into the conv/linear layer feeding it
    (``arch.batchnorm_folds()``; architectures without any are returned unchanged), the objective of
    BatchNorm-aware weight matching.

    In eval mode ``BN(W x + b) = s (W x + b - mu) + beta`` with ``s = gamma / sqrt(var + eps)`` per output
    channel, so the function depends on ``W`` and ``gamma`` only through ``s W``: a model may hold the same
    function with a large ``W`` and a small ``gamma`` or the reverse, which raw weight matching counts as
    distance. The folded vector holds ``s W`` in the layer's weight, ``s (b - mu) + beta`` in the BatchNorm's
    bias (the layer's own bias, if any, set to 0) and 0 in ``gamma`` (now inside the weight). Every entry moves
    with its channel under a permutation exactly as the raw one does, so a permutation matched on folded
    weights applies unchanged to the raw tensors. The result is a matching objective, not a model.
    """
    folds = arch.batchnorm_folds()
    if not folds:
        return weights
    by_name = {p.name: p for p in arch.layout}
    out = weights.clone().float()
    for f in folds:
        gamma, beta, mu, var = (by_name[n] for n in (f.gamma, f.beta, f.mean, f.var))
        s = weights[:, gamma.slice] / (weights[:, var.slice] + f.eps).sqrt()  # [B, C]
        layer = by_name[f.weight]
        w = weights[:, layer.slice].reshape(len(weights), *layer.shape)
        out[:, layer.slice] = (w * s.reshape(*s.shape, *[1] * (w.dim() - 2))).reshape(len(weights), -1)
        bias = by_name.get(f.bias) if f.bias is not None else None
        b = weights[:, bias.slice] if bias is not None else 0.0
        out[:, beta.slice] = s * (b - weights[:, mu.slice]) + weights[:, beta.slice]
        out[:, gamma.slice] = 0.0
        if bias is not None:
            out[:, bias.slice] = 0.0
    return out


def _check_pair(arch: ArchitectureLike, reference: torch.Tensor, other: torch.Tensor) -> None:
    if reference.dim() != 1 or reference.shape[0] != arch.n_params:
        raise SymmetryError(f"reference must be one model [P] with P = {arch.n_params}, got {list(reference.shape)}")
    if other.shape[-1] != arch.n_params:
        raise SymmetryError(f"other must have P = {arch.n_params} parameters, got {list(other.shape)}")


def weight_matching(
    arch: ArchitectureLike,
    reference: torch.Tensor,
    other: torch.Tensor,
    seed: int = 0,
    max_iter: int = 100,
    return_perm: bool = False,
    kinds: Iterable[str] = KINDS,
    device: torch.device | str | None = None,
    fold_batchnorm: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, SymmetryElement]:
    """``other`` re-expressed in ``reference``'s basis by weight matching (Git Re-Basin, Algorithm 1).

    ``reference`` [P]; ``other`` [P] (or [B, P]: each row matched independently, in one batched run).
    Coordinate descent over permutation groups in random order (``seed``), each step solving
    ``max_P <W_ref, P W_other>`` summed over every axis the group moves, until no step of a pass removes
    :data:`PERMUTATION_PROGRESS` of the squared distance after the sweep on normal forms (an orbit invariant; the
    joint descent below stops at :data:`~wslviz.understand.factors.PROGRESS` of it), or ``max_iter`` passes;
    it starts from the better of the identity and one layer-by-layer sweep matching each unit's incoming weights
    only. Weight matching minimises ``||reference - g·other||`` over
    the parameters (BatchNorm running statistics move with their channels but are left out: they are not
    learned, and measure only the scale the BatchNorm divides away);
    with ``kinds`` including ``"scale"`` (ReLU units) or ``"sign"`` (odd units) two more candidates
    follow: the layer-by-layer sweep on scale/sign normal forms (which undoes a planted rescaling or sign
    flip exactly), and, from the closer so far, a coordinate descent choosing each group's permutation
    together with its units' best scales or signs. Per model the closest candidate is kept, so the
    distance with more ``kinds`` is never larger than with permutations alone.
    ``kinds=("permutation",)`` runs plain Git Re-Basin only. The result computes the same function as
    ``other``. With ``return_perm`` also the group element ``g`` with ``apply_symmetry(arch, other, g)``
    the result. ``device`` (default the CPU): where the permutation descent keeps the weights and computes
    the cost matrices (the part that grows with the parameter count); the assignment problems, the
    scale/sign candidates and the result are on the CPU. With ``fold_batchnorm`` (module architectures with
    BatchNorm) the permutation descent matches the BatchNorm-folded weights (:func:`fold_batchnorm`) instead of
    the raw ones, the permutation it finds applied to the raw tensors.
    """
    _check_pair(arch, reference, other)
    kinds = check_kinds(kinds)
    w, single = as_batch(other, arch)
    reference = reference.float()
    dev = resolve_device(device)
    fold = fold_batchnorm_weights if fold_batchnorm else (lambda _, x: x)
    ref_f, w_f = fold(arch, reference.unsqueeze(0))[0].to(dev), fold(arch, w.float()).to(dev)
    # Both descents stop at steps that remove less than a fraction (PERMUTATION_PROGRESS, then PROGRESS) of one
    # squared distance: that of the sweep on normal forms under every symmetry the architecture has (normal forms,
    # then one assignment per layer), which depends only on the model's orbit. So whichever kinds are asked for, the
    # permutation stage is the same (more kinds never end farther than permutations alone), and aligning an aligned
    # model again stops where the first alignment did.
    swept, g_swept = _swept(arch, ref_f, w_f, seed, max_iter)
    g = _match_batch(arch, ref_f, w_f, seed, max_iter, ("permutation",),
                     floor=(PERMUTATION_PROGRESS / 2 * swept).cpu().numpy())  # a gain removes twice its size
    if dev.type != "cpu":
        g = SymmetryElement([p.cpu() for p in g.perms], [s.cpu() for s in g.scales])
    aligned = apply_symmetry(arch, w, g)
    normalises = any(k in group.kinds for group in arch.perm_spec.groups for k in kinds if k != "permutation")
    if normalises:
        # the sweep on normal forms under every kind, on the raw weights on the CPU, is the one just measured
        same = kinds == KINDS and not fold_batchnorm and dev.type == "cpu"
        g_norm = g_swept if same else _match_batch(arch, reference, w.float(), seed, max_iter, kinds, descend=False)
        if fold_batchnorm:
            swept, _ = _swept(arch, reference, w.float(), seed, max_iter)
        aligned, g = _closer(arch, reference, w, (aligned, g), g_norm)
        refined = compose(refine_factors(arch, reference, aligned, kinds, seed, max_iter,
                                         progress_scale=swept.cpu()), g)
        aligned, g = _closer(arch, reference, w, (aligned, g), refined)
    if single:
        aligned, g = aligned[0], SymmetryElement([p[0] for p in g.perms], [s[0] for s in g.scales])
    return (aligned, g) if return_perm else aligned


PERMUTATION_PROGRESS = 1e-4
"""The permutation descent's :data:`~wslviz.understand.factors.PROGRESS`: a tenth of the joint descent's, because
where it stops decides which permutations the joint descent starts from (at 1e-3 the kernel-density generator's
samples no longer beat the noise baseline on moons-mlp, ``tests/test_generation.py``)."""


def _swept(arch: ArchitectureLike, reference: torch.Tensor, weights: torch.Tensor, seed: int,
           max_iter: int) -> tuple[torch.Tensor, SymmetryElement]:
    """Per model (``weights`` [B, P]) the squared distance to ``reference`` after the layer-by-layer sweep on normal
    forms under every kind of symmetry the architecture has (a function of the model's orbit, float64 ``[B]``), and
    that sweep's element."""
    g = _match_batch(arch, reference, weights, seed, max_iter, KINDS, descend=False)
    return (apply_symmetry(arch, weights, g) - reference).double().square().sum(1), g


def _closer(arch: ArchitectureLike, reference: torch.Tensor, weights: torch.Tensor,
            current: tuple[torch.Tensor, SymmetryElement], candidate: SymmetryElement
            ) -> tuple[torch.Tensor, SymmetryElement]:
    """Per model, whichever of ``current`` (aligned weights, element) and ``candidate`` (an element
    for ``weights`` [B, P]) lies closer to ``reference``; ties keep ``current``."""
    aligned, g = current
    moved = apply_symmetry(arch, weights, candidate)
    closer = ((moved - reference).norm(dim=1) < (aligned - reference).norm(dim=1)).unsqueeze(1)
    pick = lambda x, y: torch.where(closer, x, y)
    return pick(moved, aligned), SymmetryElement([pick(p, q) for p, q in zip(candidate.perms, g.perms, strict=True)],
                                                 [pick(p, q) for p, q in zip(candidate.scales, g.scales, strict=True)])


def _activations(arch: ArchitectureLike, weights: torch.Tensor, x: torch.Tensor,
                 device: torch.device | str | None = None) -> list[torch.Tensor]:
    """Per group, activations ``[B, n_units, samples]`` of ``weights`` [B, P] on inputs ``x`` (computed on
    ``device``, kept there)."""
    spec = arch.perm_spec
    # a sequential group captures a layer index, a module's a (node, axis) pair whose node is "" where untraced
    missing = [g.name for g in spec.groups if g.capture is None or (isinstance(g.capture, tuple) and not g.capture[0])]
    if missing:
        raise SymmetryError(f"activation matching needs every group's activations; the traced graph gives none for "
                            f"{', '.join(missing)} (use weight matching)")
    with torch.no_grad():
        _, captured = forward(arch, weights, x, capture={g.capture for g in spec.groups}, device=device)
    out = []
    for group in spec.groups:
        h = captured[group.capture]  # [B, N, C, (H, W)]
        h = h.movedim(2, 1).reshape(h.shape[0], group.size, -1)
        out.append(h.double())
    return out


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlations ``[B, n, n]`` between the units of ``a`` [1 or B, n, S] and ``b`` [B, n, S];
    a constant unit (a dead ReLU) correlates 0 with everything."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    na, nb = a.norm(dim=-1), b.norm(dim=-1)
    a = a / torch.where(na > 0, na, 1.0).unsqueeze(-1)
    b = b / torch.where(nb > 0, nb, 1.0).unsqueeze(-1)
    return a @ b.transpose(1, 2)


def activation_matching(
    arch: ArchitectureLike,
    task,
    reference: torch.Tensor,
    other: torch.Tensor,
    n_samples: int = 512,
    seed: int = 0,
    return_perm: bool = False,
    kinds: Iterable[str] = KINDS,
    device: torch.device | str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, SymmetryElement]:
    """``other`` re-expressed in ``reference``'s basis by activation matching (Git Re-Basin, Sec. 3.1).

    On ``n_samples`` training inputs of ``task`` (chosen with ``seed``), each group's units are paired by
    maximising the summed correlation of their activations (one linear assignment per group; groups are
    independent because a unit's transform is undone before the next layer, so it does not change the
    activations of other layers). Tied groups (attention: the query/key and the value dimensions of the same
    heads, :meth:`~wslviz.core.permutation.PermutationSpec.tie_classes`) are solved together, as
    block-structured permutations (:func:`wslviz.understand.heads.assign`): one head order for the class, within
    each head one permutation per group, maximising the correlation summed over the class. Where ``kinds`` let a
    group's units flip sign (odd activations), the pairing maximises the correlation's magnitude and a
    negatively correlated unit is flipped; where they let ReLU units rescale (correlation is blind to scale), the
    matched units' scales are then chosen to bring the weights closest to the reference's, the pairing kept.
    ``other`` [P] or [B, P]; the result computes the same function as ``other``. ``device`` (module
    architectures; default the CPU): where the forward passes and correlations run; the assignment problems and
    the result stay on the CPU.
    """
    if task is None:
        raise ValueError("activation matching needs data: this zoo has no task")
    _check_pair(arch, reference, other)
    kinds = check_kinds(kinds)
    spec = arch.perm_spec
    w, single = as_batch(other.float(), arch)
    b = w.shape[0]
    gen = torch.Generator().manual_seed(seed)
    x = task.x_train
    x = x[torch.randperm(len(x), generator=gen)[:n_samples]]
    acts_ref = _activations(arch, reference.float().unsqueeze(0), x, device)
    acts_oth = _activations(arch, w, x, device)
    corrs = [_correlation(a_ref, a_oth).cpu() for a_ref, a_oth in zip(acts_ref, acts_oth, strict=True)]
    signed = ["sign" in kinds and "sign" in group.kinds for group in spec.groups]
    costs = [c.abs() if sg else c for c, sg in zip(corrs, signed, strict=True)]
    perms: list[torch.Tensor] = [torch.empty(0)] * len(spec.groups)
    for members in spec.tie_classes():
        groups = [spec.groups[m] for m in members]
        if heads.is_structured(groups):
            cols = heads.assign([costs[m] for m in members], groups, require_gain=False)[0]
        else:
            cols = [torch.stack([torch.from_numpy(linear_sum_assignment(c.numpy(), maximize=True)[1])
                                 for c in costs[members[0]]])]  # one assignment problem per model
        for m, col in zip(members, cols, strict=True):
            perms[m] = col
    scales = [torch.where(torch.gather(c, 2, p.unsqueeze(-1)).squeeze(-1) < 0, -1.0, 1.0) if sg
              else torch.ones(b, p.shape[1]) for c, p, sg in zip(corrs, perms, signed, strict=True)]
    g = SymmetryElement(perms, scales)
    aligned = apply_symmetry(arch, w, g)
    if any("scale" in kinds and "scale" in group.kinds for group in spec.groups):
        # correlations are blind to ReLU scales: choose them by the weight distance, the units staying put
        h = refine_factors(arch, reference.float(), aligned, ("scale",), seed, 100, permute=False)
        g = compose(h, g)
        aligned = apply_symmetry(arch, w, g)
    if single:
        aligned, g = aligned[0], SymmetryElement([p[0] for p in g.perms], [s[0] for s in g.scales])
    return (aligned, g) if return_perm else aligned


def align_zoo(
    arch: ArchitectureLike,
    weights: torch.Tensor,
    reference: torch.Tensor,
    method: str = "weight",
    progress: Progress = None,
    task=None,
    kinds: Iterable[str] = KINDS,
    seed: int = 0,
    chunk_size: int = 64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Every model of ``weights`` [B, P] re-expressed in the basis of ``reference`` [P] -> ``[B, P]``.

    ``method``: ``"weight"`` (:func:`weight_matching`) or ``"activation"`` (:func:`activation_matching`,
    needs ``task``). Models are matched in batched chunks of ``chunk_size``; ``progress(done, total)``
    is called after each chunk. ``device``: passed on to the matching (default the CPU).
    """
    if method not in METHODS:
        raise ValueError(f"unknown alignment method {method!r}; known: {', '.join(METHODS)}")
    if method == "activation" and task is None:
        raise ValueError("activation matching needs data: pass task= (this zoo has no task?)")
    w, _ = as_batch(weights, arch)
    out = torch.empty_like(w, dtype=torch.float32)
    for start in range(0, len(w), chunk_size):
        part = w[start:start + chunk_size]
        if method == "weight":
            out[start:start + chunk_size] = weight_matching(arch, reference, part, seed=seed, kinds=kinds,
                                                               device=device)
        else:
            out[start:start + chunk_size] = activation_matching(arch, task, reference, part, seed=seed,
                                                                   kinds=kinds, device=device)
        if progress:
            progress(min(start + chunk_size, len(w)), len(w))
    return out


def align_to_average(
    arch: ArchitectureLike,
    weights: torch.Tensor,
    n_iter: int = 5,
    progress: Progress = None,
    kinds: Iterable[str] = KINDS,
    seed: int = 0,
) -> torch.Tensor:
    """Align all models to their running average, iteratively -> ``[B, P]``.

    Start from the first model as reference; each round aligns every model (weight matching) to the
    mean of the previous round's aligned models, until the alignment stops changing or ``n_iter``
    rounds (the "average model" reference used for zoo merging, cf. Ainsworth et al. 2023, Sec. 5).
    """
    w, _ = as_batch(weights, arch)
    w = w.float()
    aligned = align_zoo(arch, w, w[0], kinds=kinds, seed=seed)
    for it in range(n_iter):
        new = align_zoo(arch, w, aligned.mean(0), kinds=kinds, seed=seed)
        if progress:
            progress(it + 1, n_iter)
        if torch.equal(new, aligned):
            break
        aligned = new
    if progress:
        progress(n_iter, n_iter)
    return aligned


def merge(
    arch: ArchitectureLike,
    weights: torch.Tensor,
    reference: torch.Tensor | None = None,
    task=None,
    kinds: Iterable[str] = KINDS,
) -> torch.Tensor:
    """One model ``[P]`` from ``weights`` [K, P]: the average after alignment.

    Aligned to ``reference`` [P] when given, else to their running average (:func:`align_to_average`).
    Averaging breaks BatchNorm running statistics (the average of per-model statistics does not
    describe the merged model's activations), so they are *reset*: recomputed layer by layer from the
    training inputs of ``task`` when one is passed (the "REPAIR"-style reset of Jordan et al. 2023),
    else set to mean 0, variance 1.
    """
    w, _ = as_batch(weights, arch)
    if len(w) == 0:
        raise ValueError("merge needs at least one model")
    aligned = align_zoo(arch, w, reference, kinds=kinds) if reference is not None else align_to_average(arch, w,
                                                                                                        kinds=kinds)
    merged = aligned.mean(0)
    return reset_batchnorm(arch, merged, task)


@dataclass(frozen=True, eq=False)
class MatchingMatrix(Report):
    """What the matching saw for one permutation group (see :func:`matching_matrices`)."""

    group: str
    similarity: np.ndarray
    """``[n, n]``: cosine similarity of the reference's units (rows) and the other model's (columns)."""
    assignment: np.ndarray
    """``[n]``: reference unit ``j`` was matched to the other's unit ``assignment[j]``."""
    moved: int
    size: int
    on_row_best: int
    """Reference units matched to their most similar unit (the matching need not: it maximises the total)."""


def matching_matrices(arch: ArchitectureLike, reference: torch.Tensor, other: torch.Tensor,
                      g: SymmetryElement) -> list[MatchingMatrix]:
    """Per permutation group, what the matching saw: cosine similarity ``[n, n]`` between the reference's
    units (rows) and ``other``'s units in their original order (columns), every other group already
    aligned by ``g`` (as returned by ``weight_matching(..., return_perm=True)``), and the assignment:
    reference unit ``j`` was matched to other unit ``assignment[j]``.

    Returns one :class:`MatchingMatrix` per group (``on_row_best``: how many reference units were matched to
    their most similar unit, which the matching need not do: it maximises the total over the whole network,
    outgoing weights included, with one partner per unit).
    """
    spec = arch.perm_spec
    ref = reference.unsqueeze(0).double()
    aligned = apply_symmetry(arch, other.unsqueeze(0).double(), g)
    out = []
    for group, perm in zip(spec.groups, g.perms, strict=True):
        back = apply_group(arch, aligned, group, torch.argsort(perm).unsqueeze(0))
        incoming = [r for r in group.refs if r.incoming]
        a = torch.cat([unit_view(arch, ref, r) for r in incoming], -1)[0]
        b = torch.cat([unit_view(arch, back, r) for r in incoming], -1)[0]
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
        b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
        similarity = (a @ b.T).numpy()
        out.append(MatchingMatrix(group.name, similarity, perm.numpy(), int((perm != torch.arange(group.size)).sum()),
                                  group.size, int((similarity.argmax(1) == perm.numpy()).sum())))
    return out


def pairwise_distances(weights: torch.Tensor) -> np.ndarray:
    """Euclidean distances between all pairs of models in ``weights`` [B, P] (condensed, ``B(B-1)/2``)."""
    return torch.nn.functional.pdist(weights.double()).numpy()


def symmetry_spread(
    arch: ArchitectureLike,
    weights: torch.Tensor,
    reference_index: int = 0,
    progress: Progress = None,
) -> dict[str, np.ndarray]:
    """Pairwise distances of a zoo as given, after aligning every model to one reference by permutations,
    and by permutations with unit scales (ReLU) or signs (odd activations) matched as well, and with
    every model's units sorted into canonical order (no reference, see
    :func:`wslviz.understand.symmetry.canonicalize`): ``{label: distances}``. The drop from the first to
    the others is the part of the zoo's spread that is only symmetry.

    Each model's distance *to the reference* never grows from "permutations" to "permutations +
    scale/sign" (:func:`weight_matching` keeps the closer candidate); distances between two other models
    are those of their images in the reference's basis, an upper bound on their own aligned distance, so
    they usually but not necessarily shrink too."""
    w, _ = as_batch(weights, arch)
    reference = w[reference_index].float()
    settings = {"permutations": ("permutation",), "permutations + scale/sign": KINDS}
    out = {"as trained": pairwise_distances(w)}
    for i, (label, kinds) in enumerate(settings.items()):
        step = None if progress is None else (lambda d, t, i=i: progress(i * t + d, 2 * t))
        out[label] = pairwise_distances(align_zoo(arch, w, reference, kinds=kinds, progress=step))
    # permutation-only canonical order: normalising ReLU scales would change the norms being compared
    out["canonical unit order"] = pairwise_distances(canonicalize(arch, w, kinds=("permutation",)))
    return out
