"""Weight-space symmetries: which weights can change without changing the function.

Hidden units of a network can be reordered (a permutation of a layer's outputs, undone by the same
permutation of the next layer's inputs); a ReLU/LeakyReLU unit can be scaled by any ``s > 0`` (its
incoming weights times ``s``, outgoing weights divided by ``s``, since ``relu(s*z) = s*relu(z)``); a
unit with an odd activation (tanh, sin) can flip sign. Every such change gives different weights and
the same function (Hecht-Nielsen 1990; for their role in weight space learning see Ainsworth et al.,
"Git Re-Basin", ICLR 2023, and Navon et al., "Equivariant Architectures for Learning in Deep Weight
Spaces", ICML 2023).

Given an architecture's *permutation spec* (:mod:`wslviz.core.permutation`: which tensor axes share
each permutation), this module draws and applies group elements to ``[P]`` or ``[B, P]`` weights,
composes and inverts them, measures functional equivalence and computes canonical forms.

Convention for a group element ``g``: for each permutation group with units ``j``, unit ``j`` of
``g·θ`` is unit ``perm[j]`` of ``θ``, scaled by ``scale[j]`` (``scale`` is a positive factor times a
sign). ``perm`` is ``[n]`` (one element for all models) or ``[B, n]`` (one element per model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from wslviz.core.evaluation import model_outputs
from wslviz.core.permutation import KINDS, AxisRef, PermGroup, PermutationSpec, SymmetryError
from wslviz.core.protocol import ArchitectureLike
from wslviz.understand import heads


def permutation_spec(arch: ArchitectureLike) -> PermutationSpec:
    """The permutation groups of ``arch`` (its ``perm_spec``): which tensor axes share each permutation.

    See :func:`wslviz.core.permutation.sequential_perm_spec` for how a sequential spec's groups are derived."""
    spec = getattr(arch, "perm_spec", None)
    if not isinstance(spec, PermutationSpec):
        raise SymmetryError(f"permutation_spec needs an architecture, got {type(arch).__name__}")
    return spec


@dataclass
class SymmetryElement:
    """A group element: per permutation group a permutation and per-unit scale factors.

    ``perms[i]``: int64 ``[n_i]`` or ``[B, n_i]``; ``scales[i]``: float ``[n_i]`` or ``[B, n_i]``
    (positive factors for scale, ±1 for sign, 1 where neither applies).
    """

    perms: list[torch.Tensor]
    scales: list[torch.Tensor]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        shapes = {tuple(t.shape[:-1]) for t in self.perms + self.scales}
        return max(shapes, key=len) if shapes else ()

    def units_moved(self) -> list[torch.Tensor]:
        """Per group, the number of units whose position changed (``[]`` or ``[B]`` each)."""
        return [(p != torch.arange(p.shape[-1])).sum(-1) for p in self.perms]


# ---------------------------------------------------------------- tensor plumbing
def as_batch(weights: torch.Tensor, arch: ArchitectureLike) -> tuple[torch.Tensor, bool]:
    """``weights`` ``[P]`` or ``[B, P]`` as ``[B, P]``, and whether it was a single vector; raises
    :class:`SymmetryError` for anything else."""
    if not isinstance(weights, torch.Tensor):
        raise SymmetryError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
    if weights.dim() not in (1, 2) or weights.shape[-1] != arch.n_params:
        raise SymmetryError(f"weights must be [P] or [B, P] with P = {arch.n_params}, got {list(weights.shape)}")
    return (weights.unsqueeze(0), True) if weights.dim() == 1 else (weights, False)


def _info(arch: ArchitectureLike):
    return {p.name: p for p in arch.layout}


def _narrow(t: torch.Tensor, ref: AxisRef) -> torch.Tensor:
    """The part ``[start, start + length)`` of axis 1 of ``t`` that ``ref``'s units occupy (all of it by default)."""
    if not (ref.start or ref.length):
        return t
    return t.narrow(1, ref.start, ref.length or t.shape[1] - ref.start)


def unit_view(arch: ArchitectureLike, weights: torch.Tensor, ref: AxisRef) -> torch.Tensor:
    """The entries of ``weights`` [B, P] on one axis, as ``[B, n_units, m]`` (one row per unit)."""
    p = _info(arch)[ref.name]
    t = _narrow(weights[:, p.slice].reshape(weights.shape[0], *p.shape).movedim(ref.axis + 1, 1), ref)
    n = t.shape[1] // ref.block
    return t.reshape(t.shape[0], n, ref.block, *t.shape[2:]).reshape(t.shape[0], n, -1)


def _transform_ref(arch: ArchitectureLike, out: torch.Tensor, ref: AxisRef, perm: torch.Tensor | None,
                   scale: torch.Tensor | None) -> None:
    """In place on ``out`` [B, P]: permute one axis by ``perm`` [B, n] and apply ``scale ** power``."""
    if perm is None and (scale is None or ref.power == 0):
        return
    p = _info(arch)[ref.name]
    b = out.shape[0]
    whole = out[:, p.slice].reshape(b, *p.shape).movedim(ref.axis + 1, 1)
    t = _narrow(whole, ref)
    moved_shape = t.shape
    n = t.shape[1] // ref.block
    t = t.reshape(b, n, -1)
    if perm is not None:
        t = torch.gather(t, 1, perm.unsqueeze(-1).expand(-1, -1, t.shape[-1]))
    if scale is not None and ref.power != 0:
        t = t * scale.to(t.dtype).pow(ref.power).unsqueeze(-1)
    if t.shape[1] * ref.block != whole.shape[1]:  # the units share the axis: write their range back into it
        whole = whole.clone()
        _narrow(whole, ref).copy_(t.reshape(moved_shape))
        t = whole
    out[:, p.slice] = t.reshape(whole.shape).movedim(1, ref.axis + 1).reshape(b, -1)


def _expand(t: torch.Tensor | None, b: int) -> torch.Tensor | None:
    if t is None:
        return None
    return t.expand(b, -1) if t.dim() == 1 else t


def apply_group_(arch: ArchitectureLike, weights: torch.Tensor, group: PermGroup, perm: torch.Tensor | None,
                 scale: torch.Tensor | None = None) -> torch.Tensor:
    """Apply one group's permutation/scales to ``weights`` [B, P] in place (and return it): for loops over the
    groups of a tensor they own, which a copy per group made slow at size (a GPT-2-small matching made 1,000
    copies of 0.5-1 GB: two thirds of its time)."""
    perm, scale = _expand(perm, weights.shape[0]), _expand(scale, weights.shape[0])
    for ref in group.refs:
        _transform_ref(arch, weights, ref, perm, scale)
    return weights


def apply_group(arch: ArchitectureLike, weights: torch.Tensor, group: PermGroup, perm: torch.Tensor | None,
                scale: torch.Tensor | None = None) -> torch.Tensor:
    """Apply one group's permutation/scales to ``weights`` [B, P]; returns a new tensor."""
    return apply_group_(arch, weights.clone(), group, perm, scale)


def apply_symmetry(arch: ArchitectureLike, weights: torch.Tensor, g: SymmetryElement) -> torch.Tensor:
    """``g·θ`` for ``weights`` [P] or [B, P]: same function, other weights (same shape as given).

    A ``g`` with batched entries ``[B, n]`` applies one element per model.
    """
    w, single = as_batch(weights, arch)
    spec = arch.perm_spec
    _check_element(spec, g)
    batch = g.batch_shape
    if batch and single:
        w = w.expand(batch[0], -1)
    elif batch and batch[0] != w.shape[0]:
        raise SymmetryError(f"group element is batched over {batch[0]} models, weights over {w.shape[0]}")
    out = w.clone()
    for group, perm, scale in zip(spec.groups, g.perms, g.scales, strict=True):
        is_identity_scale = bool((scale == 1).all())
        apply_group_(arch, out, group, perm, None if is_identity_scale else scale)
    return out[0] if single and not batch else out


def _check_element(spec: PermutationSpec, g: SymmetryElement) -> None:
    if len(g.perms) != len(spec.groups) or len(g.scales) != len(spec.groups):
        raise SymmetryError(f"group element has {len(g.perms)} permutations, "
                            f"the architecture has {len(spec.groups)} groups")
    for group, perm, scale in zip(spec.groups, g.perms, g.scales, strict=True):
        if perm.shape[-1] != group.size or scale.shape[-1] != group.size:
            raise SymmetryError(f"{group.name}: element has {perm.shape[-1]} units, expected {group.size}")


def identity(arch: ArchitectureLike, batch: int | None = None) -> SymmetryElement:
    """The identity element (batched over ``batch`` models when given)."""
    shape = () if batch is None else (batch,)
    perms = [torch.arange(g.size).expand(*shape, g.size).clone() for g in arch.perm_spec.groups]
    scales = [torch.ones(*shape, g.size) for g in arch.perm_spec.groups]
    return SymmetryElement(perms, scales)


def random_symmetry(
    arch: ArchitectureLike,
    seed: int = 0,
    kinds: Iterable[str] = KINDS,
    scale_range: tuple[float, float] = (0.25, 4.0),
) -> SymmetryElement:
    """A random group element: per group a uniform random permutation, and where the layer allows it
    log-uniform positive scales in ``scale_range`` (ReLU/LeakyReLU units) and random signs (odd
    activations: tanh, sin). Only the ``kinds`` asked for and valid for each group are drawn."""
    kinds = check_kinds(kinds)
    lo, hi = scale_range
    if not 0 < lo <= hi:
        raise SymmetryError(f"scale_range must be 0 < low <= high, got {scale_range}")
    gen = torch.Generator().manual_seed(int(seed))
    perms, scales = [], []
    structured = _structured_classes(arch.perm_spec)
    drawn: dict[int, torch.Tensor] = {}
    for gi, group in enumerate(arch.perm_spec.groups):
        n = group.size
        if gi in structured and "permutation" in kinds:  # heads: block-structured, tied heads drawn once
            if gi not in drawn:
                members = structured[gi]
                drawn.update(zip(members, heads.draw([arch.perm_spec.groups[m] for m in members], gen),
                                 strict=True))
            perm = drawn[gi]
        else:
            perm = torch.randperm(n, generator=gen) if "permutation" in kinds else torch.arange(n)
        scale = torch.ones(n)
        if "scale" in kinds and "scale" in group.kinds:
            scale = scale * torch.exp(math.log(lo) + torch.rand(n, generator=gen) * (math.log(hi) - math.log(lo)))
        if "sign" in kinds and "sign" in group.kinds:
            scale = scale * (torch.randint(0, 2, (n,), generator=gen) * 2 - 1).float()
        perms.append(perm)
        scales.append(scale)
    return SymmetryElement(perms, scales)


def _structured_classes(spec: PermutationSpec) -> dict[int, list[int]]:
    """Group index -> the members of its tie class, for the classes that need block-structured treatment
    (attention heads, :mod:`wslviz.understand.heads`); plain groups are absent."""
    out: dict[int, list[int]] = {}
    for members in spec.tie_classes():
        if heads.is_structured([spec.groups[m] for m in members]):
            out.update({m: members for m in members})
    return out


def check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    """``kinds`` (one name or several) as a tuple of known symmetry kinds; raises for an unknown one."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SymmetryError(f"unknown symmetry kind(s) {unknown}; known: {', '.join(KINDS)}")
    return kinds


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[..., index]`` with broadcasting over a leading batch axis on either side."""
    if values.dim() == 1 and index.dim() == 1:
        return values[index]
    b = max(values.shape[0] if values.dim() == 2 else 1, index.shape[0] if index.dim() == 2 else 1)
    return torch.gather(_expand(values, b), 1, _expand(index, b))


def compose(g: SymmetryElement, h: SymmetryElement) -> SymmetryElement:
    """The element ``g∘h``: applying it equals applying ``h`` first, then ``g``."""
    perms = [_take(ph, pg) for pg, ph in zip(g.perms, h.perms, strict=True)]
    scales = [sg * _take(sh, pg) for pg, sg, sh in zip(g.perms, g.scales, h.scales, strict=True)]
    return SymmetryElement(perms, scales)


def inverse(g: SymmetryElement) -> SymmetryElement:
    """The element undoing ``g``."""
    perms = [torch.argsort(p, dim=-1) for p in g.perms]
    scales = [1.0 / _take(s, q) for s, q in zip(g.scales, perms, strict=True)]
    return SymmetryElement(perms, scales)


def group_size_log10(arch: ArchitectureLike) -> float:
    """log10 of the number of permutation symmetries: the product over groups of ``n!`` (for attention heads
    ``h! (n/h)!^h``, see :attr:`wslviz.core.permutation.PermutationSpec.log10_size`)."""
    return arch.perm_spec.log10_size


def group_table(spec: PermutationSpec) -> pd.DataFrame:
    """One row per permutation group: ``group``, ``units``, ``heads`` (blocks moved as wholes; 1 for plain
    groups), ``tied`` (the other groups sharing the head permutation), ``kinds`` and ``tensors`` (every tensor axis
    it moves, ``name[axis]``, with ``xB`` where a unit owns ``B`` entries and ``@start`` where it shares the axis)."""
    rows = []
    for g in spec.groups:
        axes = [f"{r.name}[{r.axis}]" + (f" x{r.block}" if r.block > 1 else "") + (f" @{r.start}" if r.start else "")
                for r in g.refs]
        tied = [h.name for h in spec.groups if g.tie and h.tie == g.tie and h is not g]
        rows.append({"group": g.name, "units": g.size, "heads": g.heads, "tied": ", ".join(tied),
                     "kinds": ", ".join(g.kinds), "tensors": ", ".join(axes)})
    return pd.DataFrame(rows, columns=["group", "units", "heads", "tied", "kinds", "tensors"])


def fixed_table(spec: PermutationSpec) -> pd.DataFrame:
    """One row per tensor axis no group moves (as the spec lists them): ``tensor``, ``axis`` (``all`` for a whole
    tensor), ``reason``."""
    rows = [{"tensor": f.name, "axis": "all" if f.axis < 0 else str(f.axis), "reason": f.reason} for f in spec.fixed]
    return pd.DataFrame(rows, columns=["tensor", "axis", "reason"])


def probe_count(arch: ArchitectureLike, most: int = 256) -> int:
    """How many probe inputs a check of the function uses by default: ``most`` for the networks of the sample zoos,
    fewer (at least 8) where one input is large (2^20 values in all: 8 ImageNet images) or the network is (2^31
    parameter-inputs: 17 sequences through GPT-2-small), so that the check takes seconds at any size."""
    inputs = max(1, math.prod(arch.input_shape))
    return int(min(most, max(8, min(2**20 // inputs, 2**31 // max(arch.n_params, 1)))))


def probe_inputs(arch: ArchitectureLike, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """The architecture's deterministic probe inputs ``[n, *input_shape]`` (standard normal, or token ids for a
    module taking them); ``n`` defaults to :func:`probe_count`."""
    return arch.probe_inputs(probe_count(arch) if n is None else n, seed)


def equivalence_gap(arch: ArchitectureLike, a: torch.Tensor, b: torch.Tensor, x: torch.Tensor | None = None,
                    outputs_a: torch.Tensor | None = None) -> float:
    """Max absolute output difference between models ``a`` and ``b`` ([P] or [B, P] each, paired) on
    probe inputs ``x`` (default: :func:`probe_inputs`); NaN for an architecture that cannot run (a weights-only
    layout, adapters without their base model). ``outputs_a``: ``a``'s outputs on ``x`` when already computed."""
    if not arch.has_forward:
        return float("nan")
    a, _ = as_batch(a, arch)
    b, _ = as_batch(b, arch)
    x = probe_inputs(arch) if x is None else x
    diff = (model_outputs(arch, a, x) if outputs_a is None else outputs_a) - model_outputs(arch, b, x)
    return float(diff.abs().max()) if diff.numel() else 0.0


# ---------------------------------------------------------------- canonical forms
def producer_rows(arch: ArchitectureLike, weights: torch.Tensor, group: PermGroup) -> torch.Tensor:
    """``[B, n, m]``: per unit, the entries a unit scale multiplies (its incoming weights and bias, or
    the normalisation layer's weight and bias right before the nonlinearity)."""
    parts = [unit_view(arch, weights, ref) for ref in group.refs if ref.incoming and ref.power == 1
             and not ref.name.endswith("running_mean")]
    return torch.cat(parts, dim=-1)


def normalising_element(arch: ArchitectureLike, weights: torch.Tensor, group: PermGroup,
                        kinds: Iterable[str]) -> torch.Tensor:
    """Per-unit factors ``[B, n]`` that give every unit of ``group`` unit incoming norm (``"scale"``,
    where valid) and a positive largest-magnitude incoming entry (``"sign"``, where valid)."""
    rows = producer_rows(arch, weights, group).double()
    s = torch.ones(rows.shape[:2], dtype=torch.float64)
    if "scale" in kinds and "scale" in group.kinds:
        norm = rows.norm(dim=-1)
        s = torch.where(norm > 0, 1.0 / norm, torch.ones_like(norm))
    if "sign" in kinds and "sign" in group.kinds:
        top = torch.gather(rows, 2, rows.abs().argmax(-1, keepdim=True)).squeeze(-1)
        s = s * torch.where(top < 0, -1.0, 1.0)
    return s


_RAMP_CACHE: dict[int, torch.Tensor] = {}


def _sort_key(rows: torch.Tensor, normalised: bool) -> torch.Tensor:
    """Per unit key ``[B, n]``: the incoming norm, or (when every norm is 1 after scale normalisation)
    the projection on a fixed ramp, so that the order does not depend on the units' positions."""
    if not normalised:
        return rows.norm(dim=-1)
    m = rows.shape[-1]
    if m not in _RAMP_CACHE:
        _RAMP_CACHE[m] = torch.linspace(1.0, 2.0, m, dtype=torch.float64)
    return rows @ _RAMP_CACHE[m]


def canonicalize(
    arch: ArchitectureLike,
    weights: torch.Tensor,
    kinds: Iterable[str] = KINDS,
    return_element: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, SymmetryElement]:
    """A canonical representative of each model's symmetry orbit; ``[P]`` or ``[B, P]`` as given.

    Group by group in layer order: scale-normalise ReLU units (unit incoming norm), flip odd units so
    their largest-magnitude incoming entry is positive, then sort units by a stable key (incoming norm;
    after scale normalisation a fixed projection of the normalised incoming weights). Invariance:
    ``canonicalize(apply_symmetry(θ, g)) == canonicalize(θ)`` for every ``g`` drawn with the same
    ``kinds`` (to float rounding). With ``return_element`` also the element ``c`` with ``c·θ`` the result.
    """
    kinds = check_kinds(kinds)
    w, single = as_batch(weights, arch)
    out = w.clone()
    perms, scales = [], []
    spec = arch.perm_spec
    structured, done = _structured_classes(spec), {}
    for gi, group in enumerate(spec.groups):
        if gi in structured and "permutation" in kinds:  # heads sorted as wholes, then units inside each head
            if gi not in done:
                members = structured[gi]
                keys = [producer_rows(arch, out, spec.groups[m]).double().norm(dim=-1) for m in members]
                for m, perm in zip(members, heads.sort(keys, [spec.groups[m] for m in members]), strict=True):
                    apply_group_(arch, out, spec.groups[m], perm)
                    done[m] = perm
            perms.append(done[gi])
            scales.append(torch.ones(out.shape[0], group.size))
            continue
        s = normalising_element(arch, out, group, kinds)
        rows = producer_rows(arch, out, group).double() * s.unsqueeze(-1)
        normalised = "scale" in kinds and "scale" in group.kinds
        if "permutation" in kinds:
            perm = torch.argsort(_sort_key(rows, normalised), dim=-1, stable=True)
        else:
            perm = torch.arange(group.size).expand(out.shape[0], -1)
        scale = torch.gather(s, 1, perm).float()
        apply_group_(arch, out, group, perm, scale)
        perms.append(perm)
        scales.append(scale)
    if single:
        out, perms, scales = out[0], [p[0] for p in perms], [s[0] for s in scales]
    return (out, SymmetryElement(perms, scales)) if return_element else out


def layer_distances(arch: ArchitectureLike, a: torch.Tensor, b: torch.Tensor) -> dict[str, np.ndarray]:
    """Euclidean distance per weight layer between ``a`` and ``b`` ([P] or [B, P] each, broadcast):
    ``{"layer i (kind)": [B]}``, plus ``"total"``."""
    a, _ = as_batch(a, arch)
    b, _ = as_batch(b, arch)
    diff = (a - b) ** 2
    out: dict[str, np.ndarray] = {}
    for i, layer in enumerate(arch.layers):
        cols = [p.slice for p in arch.layout if p.layer == i]
        if cols:
            out[f"layer {i} ({layer['type']})"] = torch.stack([diff[:, c].sum(1) for c in cols]).sum(0).sqrt().numpy()
    out["total"] = diff.sum(1).sqrt().numpy()
    return out
