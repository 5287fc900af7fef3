"""Unit sets: the state of the graph pass that derives a module's permutation spec (:mod:`wslviz.core.fx_spec`).

Every tensor axis of the traced graph gets a *label* saying which units index it (:class:`Full`, or the
:class:`Head` / :class:`Dim` halves of an axis split into attention heads). Labels point at *unit sets*
(:class:`Var`), kept in a union-find (:class:`UnitSets`): ops that align two axes merge their sets, ops the
pass cannot follow fix them, tied attention heads are linked in a second union-find of *tie classes*. Each set
records the tensor axes it moves (:class:`Ref`), its producers, activation and where its activations can be
captured. At the end :meth:`UnitSets.spec` turns the sets into a :class:`~wslviz.core.permutation.PermutationSpec`.
This module holds that state and the label algebra (unify, broadcast, reshape); the per-op rules live in
:mod:`wslviz.core.fx_spec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from wslviz.core.permutation import KINDS, AxisRef, FixedAxis, PermGroup, PermutationSpec


@dataclass(frozen=True)
class Full:
    """A tensor axis holding units: the concatenation of ``segs`` ``(var, block)``: each unit of ``var`` owns
    ``block`` consecutive entries, the segments follow each other."""

    segs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Head:
    """The head axis of a unit set split into ``(heads, head_dim)``."""

    var: int


@dataclass(frozen=True)
class Dim:
    """The within-head axis of a unit set split into ``(heads, head_dim)``."""

    var: int


Label = Full | Head | Dim


@dataclass
class Ref:
    name: str
    axis: int
    block: int = 1
    start: int = 0
    length: int = 0
    power: int = 0
    incoming: bool | None = None  # None: a parameter axis whose role the first op using it decides


@dataclass
class Var:
    size: int
    parent: int
    fixed: str | None = None
    heads: int = 1
    refs: list[Ref] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)
    producers: list[str] = field(default_factory=list)
    activation: str | None = None
    capture: tuple[str, int] | None = None
    merged: bool = False



class UnitSets:
    """The unit sets of one architecture's graph (see the module docstring)."""

    def __init__(self, arch: Any):
        self.arch = arch
        self.vars: list[Var] = []
        self.tie: list[int] = []
        self.owner: dict[tuple[str, int, int, int], int] = {}
        self.layout = {p.name: p for p in arch.layout}

    # ------------------------------------------------------------------ union-find
    def new(self, size: int, fixed: str | None = None, kinds: set[str] | None = None) -> int:
        v = len(self.vars)
        self.vars.append(Var(size=size, parent=v, fixed=fixed, kinds=set(kinds or ())))
        self.tie.append(v)
        return v

    def find(self, v: int) -> int:
        while self.vars[v].parent != v:
            self.vars[v].parent = self.vars[self.vars[v].parent].parent
            v = self.vars[v].parent
        return v

    def find_tie(self, v: int) -> int:
        """The representative of ``v``'s tie class (sets whose heads move together)."""
        r = self.find(v)
        while True:
            p = self.find(self.tie[r])
            if p == r:
                return r
            r = p

    def fix(self, v: int, reason: str) -> None:
        r = self.vars[self.find(v)]
        if r.fixed is None:
            r.fixed = reason

    def is_fixed(self, v: int) -> bool:
        return self.vars[self.find(v)].fixed is not None

    def union(self, a: int, b: int, reason: str = "") -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        va, vb = self.vars[ra], self.vars[rb]
        if va.size != vb.size or (va.heads > 1 and vb.heads > 1 and va.heads != vb.heads):
            self.fix(ra, reason or "combined with a differently sized set of units")
            self.fix(rb, reason or "combined with a differently sized set of units")
            return ra
        if ra > rb:
            ra, rb, va, vb = rb, ra, vb, va
        ta, tb = self.find_tie(ra), self.find_tie(rb)
        real_a, real_b = self.decided(va), self.decided(vb)
        vb.parent = ra
        va.fixed = va.fixed or vb.fixed
        va.heads = max(va.heads, vb.heads)
        va.refs += vb.refs
        va.producers += [p for p in vb.producers if p not in va.producers]
        va.activation = va.activation or vb.activation
        va.capture = va.capture or vb.capture
        if real_a and real_b:  # two unit sets with their own tensors become one: no scale symmetry certain
            va.kinds = set()
            va.merged = True
        elif real_b:
            va.kinds, va.merged = set(vb.kinds), vb.merged
        self.tie_heads(ra, ta)
        self.tie_heads(ra, tb)
        return ra

    @staticmethod
    def decided(var: Var) -> bool:
        """Whether a set holds tensors whose role is known (not only a parameter's axes awaiting their first use)."""
        return any(ref.incoming is not None for ref in var.refs) or bool(var.producers)

    def tie_heads(self, a: int, b: int) -> None:
        ta, tb = self.find_tie(a), self.find_tie(b)
        if ta != tb:
            self.tie[max(ta, tb)] = min(ta, tb)

    def add_ref(self, v: int, ref: Ref) -> None:
        """Record that ``v``'s units index ``ref``; a tensor axis already owned by another set links the two
        (tied weights), and a parameter axis awaiting its role takes the role given here."""
        ref.name = self.arch.aliases.get(ref.name, ref.name)
        key = (ref.name, ref.axis, ref.start, ref.length)
        if key in self.owner:
            old = next((r for r in self.vars[self.find(self.owner[key])].refs
                        if (r.name, r.axis, r.start, r.length) == key), None)
            if old is not None and old.incoming is None:
                old.incoming, old.power, old.block = ref.incoming, ref.power, ref.block
            self.union(self.owner[key], v, "a shared (tied) tensor links these units")
            return
        self.owner[key] = v
        self.vars[self.find(v)].refs.append(ref)

    # ------------------------------------------------------------------ labels
    def plain(self, n: int, reason: str) -> Label:
        return Full(((self.new(n, fixed=reason), 1),))

    def label_vars(self, lab: Label) -> list[int]:
        return [v for v, _ in lab.segs] if isinstance(lab, Full) else [lab.var]

    def fix_label(self, lab: Label, reason: str) -> None:
        for v in self.label_vars(lab):
            self.fix(v, reason)

    def fix_value(self, value: Any, reason: str) -> None:
        if isinstance(value, list) and value and all(isinstance(x, Full | Head | Dim) for x in value):
            for lab in value:
                self.fix_label(lab, reason)
        elif isinstance(value, tuple | list):
            for x in value:
                self.fix_value(x, reason)

    def clear_kinds(self, lab: Label, keep: set[str] | None = None) -> None:
        for v in self.label_vars(lab):
            r = self.vars[self.find(v)]
            r.kinds &= keep or set()

    def seg_size(self, v: int, block: int) -> int:
        return self.vars[self.find(v)].size * block

    def unify(self, a: Label, b: Label, reason: str) -> Label:
        """Two labels of aligned axes of the same size: the units must be the same."""
        if isinstance(a, Full) and isinstance(b, Full):
            shape_a = [(self.seg_size(v, k), k) for v, k in a.segs]
            shape_b = [(self.seg_size(v, k), k) for v, k in b.segs]
            if shape_a == shape_b:
                for (va, _), (vb, _) in zip(a.segs, b.segs, strict=True):
                    self.union(va, vb, reason)
                return a
        elif type(a) is type(b) and isinstance(a, Head):
            self.tie_heads(a.var, b.var)
            return a
        elif type(a) is type(b) and isinstance(a, Dim):
            self.union(a.var, b.var, reason)
            return a
        self.fix_label(a, reason)
        self.fix_label(b, reason)
        return a

    def finalize_pending(self, lab: Label, incoming: bool) -> None:
        for v in self.label_vars(lab):
            for r in self.vars[self.find(v)].refs:
                if r.incoming is None:
                    r.incoming, r.power = incoming, (1 if incoming else -1)

    # ------------------------------------------------------------------ label algebra
    def broadcast(self, operands: list[tuple[list[Label], tuple[int, ...]]], shape: tuple[int, ...],
                  reason: str) -> list[Label]:
        out: list[Label] = []
        for i in range(1, len(shape) + 1):
            present = [labs[-i] for labs, shp in operands if len(shp) >= i and shp[-i] != 1]
            size_one = [labs[-i] for labs, shp in operands if len(shp) >= i and shp[-i] == 1 and shape[-i] != 1]
            for lab in size_one:  # a size-1 axis broadcast over units: its tensor stays fixed there
                self.finalize_pending(lab, True)
            if not present:
                out.append(self.plain(shape[-i], "broadcast axis"))
                continue
            lab = present[0]
            for other in present[1:]:
                self.finalize_pending(other, True)
                self.finalize_pending(lab, True)
                lab = self.unify(lab, other, reason)
            out.append(lab)
        return out[::-1]

    def map_reshape(self, x: list[Label], src: tuple[int, ...], dst: tuple[int, ...]) -> list[Label]:
        """Labels of a view from shape ``src`` to ``dst``: axes are grouped into chunks of equal product."""
        ins = [(lab, n) for lab, n in zip(x, src, strict=True) if n != 1]
        for lab, n in zip(x, src, strict=True):
            if n == 1:
                self.finalize_pending(lab, True)
        outs = [i for i, n in enumerate(dst) if n != 1]
        result: list[Label | None] = [None] * len(dst)
        for i, n in enumerate(dst):
            if n == 1:
                result[i] = self.plain(1, "size-one axis")
        i = j = 0
        while i < len(ins) and j < len(outs):
            chunk_in, chunk_out = [ins[i]], [outs[j]]
            p_in, p_out = ins[i][1], dst[outs[j]]
            i, j = i + 1, j + 1
            while p_in != p_out:
                if p_in < p_out:
                    chunk_in.append(ins[i])
                    p_in *= ins[i][1]
                    i += 1
                else:
                    chunk_out.append(outs[j])
                    p_out *= dst[outs[j]]
                    j += 1
            labs = self.map_chunk([lab for lab, _ in chunk_in], [n for _, n in chunk_in],
                                  [dst[k] for k in chunk_out])
            for k, lab in zip(chunk_out, labs, strict=True):
                result[k] = lab
        return [lab if lab is not None else self.plain(n, "reshaped axis") for lab, n in zip(result, dst, strict=True)]

    def map_chunk(self, labs: list[Label], sizes: list[int], out: list[int]) -> list[Label]:
        if len(labs) == 1 and len(out) == 1:
            return [labs[0]]
        moving = [not all(self.is_fixed(v) for v in self.label_vars(lab)) for lab in labs]
        if len(out) == 1:  # several axes merged into one
            first = labs[0]
            if (len(labs) == 2 and isinstance(first, Head) and isinstance(labs[1], Dim)
                    and self.find_tie(first.var) == self.find_tie(labs[1].var)
                    and self.vars[self.find(labs[1].var)].heads == sizes[0]):
                return [Full(((labs[1].var, 1),))]
            if isinstance(first, Full) and not any(moving[1:]):
                rest = math.prod(sizes[1:])
                return [Full(tuple((v, k * rest) for v, k in first.segs))]
            for lab in labs:
                self.fix_label(lab, "a reshape mixing a unit axis with other axes")
            return [self.plain(out[0], "reshaped axis")]
        if len(labs) == 1:  # one axis split into several
            lab = labs[0]
            if isinstance(lab, Full) and not moving[0]:
                return [self.plain(n, "reshaped axis") for n in out]
            if isinstance(lab, Full) and len(lab.segs) == 1:
                v, block = lab.segs[0]
                r = self.vars[self.find(v)]
                if block == 1 and len(out) == 2 and r.heads in (1, out[0]) and out[0] * out[1] == r.size:
                    r.heads = out[0]
                    return [Head(v), Dim(v)]
                if block > 1 and out[0] == r.size and math.prod(out[1:]) == block:
                    return [Full(((v, 1),))] + [self.plain(n, "spatial position") for n in out[1:]]
            if isinstance(lab, Full) and len({k for _, k in lab.segs}) == 1 and lab.segs[0][1] > 1:
                block = lab.segs[0][1]
                units = sum(self.vars[self.find(v)].size for v, _ in lab.segs)
                if out[0] == units and math.prod(out[1:]) == block:
                    return [Full(tuple((v, 1) for v, _ in lab.segs))] + [self.plain(n, "spatial position")
                                                                          for n in out[1:]]
        for lab in labs:
            self.fix_label(lab, "a reshape mixing a unit axis with other axes")
        return [self.plain(n, "reshaped axis") for n in out]

    # ------------------------------------------------------------------ the result
    def spec(self) -> PermutationSpec:
        roots = sorted({self.find(v) for v in range(len(self.vars))})
        # a tie class with a fixed member, or with members of different head counts, is fixed as a whole
        classes: dict[int, list[int]] = {}
        for r in roots:
            classes.setdefault(self.find_tie(r), []).append(r)
        for members in classes.values():
            if len(members) > 1:
                heads = {self.vars[r].heads for r in members}
                bad = next((self.vars[r].fixed for r in members if self.vars[r].fixed), None)
                if bad or len(heads) > 1:
                    for r in members:
                        self.fix(r, f"its attention heads are tied to units that stay fixed ({bad})" if bad else
                                 "tied attention heads of different counts")
        groups, fixed, seen_fixed = [], [], set()
        order = sorted(roots)
        for r in order:
            var = self.vars[r]
            for ref in var.refs:
                if ref.incoming is None:
                    ref.incoming, ref.power = True, 0
            if var.fixed is not None:
                for ref in var.refs:
                    key = (ref.name, ref.axis)
                    if key not in seen_fixed and self.layout[ref.name].shape[ref.axis] > 1:
                        seen_fixed.add(key)
                        fixed.append(FixedAxis(ref.name, ref.axis, var.fixed))
                continue
            if var.size < 2 or not var.refs:
                continue
            groups.append(self.group(r, var, classes))
        used = {name for name, *_ in self.owner}
        fixed += [FixedAxis(p.name, -1, "no traced operation uses it (inside an opaque module, or unused)")
                  for p in self.arch.layout if p.name not in used]
        return PermutationSpec(tuple(groups), self.arch.n_params, tuple(fixed))

    def group(self, r: int, var: Var, classes: dict[int, list[int]]) -> PermGroup:
        refs = var.refs
        producers_linear = [p for p in var.producers]
        simple = (len(producers_linear) == 1 and not var.merged and var.heads == 1
                  and all(ref.power in (1, -1) for ref in refs))
        kinds = tuple(k for k in KINDS if k == "permutation" or simple and k in var.kinds)
        if not any(ref.incoming and ref.power == 1 for ref in refs):
            refs = [Ref(**{**ref.__dict__, "power": 1}) if ref.incoming else ref for ref in refs]
        axis_refs = tuple(AxisRef(ref.name, ref.axis, ref.block, ref.power, bool(ref.incoming), ref.start, ref.length)
                          for ref in refs)
        tie_root = self.find_tie(r)
        tie = f"heads {tie_root}" if var.heads > 1 and len(classes.get(tie_root, [])) > 1 else ""
        layer = min((self.layout[ref.name].layer for ref in refs if ref.incoming), default=0)
        name = self.group_name(var, refs)
        capture = var.capture or ("", 1)
        return PermGroup(name, layer, var.size, axis_refs, kinds, var.activation if simple else None, capture,
                         heads=var.heads, tie=tie)

    def group_name(self, var: Var, refs: list[Ref]) -> str:
        producers = var.producers or sorted({ref.name.rsplit(".", 1)[0] for ref in refs if ref.incoming})
        kinds = {self.arch.layers[self.layout[ref.name].layer]["type"] for ref in refs if ref.incoming}
        unit = "channels" if "conv2d" in kinds else "units"
        if var.heads > 1:
            return f"{', '.join(producers)} ({var.heads} heads x {var.size // var.heads})"
        if len(producers) > 1:
            shown = ", ".join(producers[:3]) + (f" +{len(producers) - 3}" if len(producers) > 3 else "")
            return f"residual: {shown} ({var.size} {unit})"
        return f"{producers[0] if producers else 'tensor'} ({var.size} {unit})"
