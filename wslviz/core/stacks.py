"""Sequential stacks in a state dict of any key naming: which tensors chain into layers, in which order, and
what the state dict cannot tell.

A state dict records tensor names and shapes only. :func:`find_stacks` reads them as people save them
(``l1.weight``, ``fc2.bias``, ``conv1.weight``, ``features.3.weight``, ``classifier.1.bias``,
``layers.0.linear.weight``, ``net.0.weight``, ``mlp_extractor.policy_net.0.weight``):

1. *Modules*: keys ``<prefix>.<role>`` grouped by prefix, role one of ``weight``, ``bias``, ``running_mean``,
   ``running_var`` (``num_batches_tracked`` is a counter, not a weight). A rank-2 weight is a linear layer
   ``[out, in]``, rank 4 a square conv ``[out, in, k, k]``, rank 1 with running statistics a BatchNorm, rank 1
   without a LayerNorm; a layer may lack its bias.
2. *Order*: modules sharing a parent prefix (a *family*: ``features`` for ``features.3``, the root for ``fc2``)
   keep the file's order, except that index-keyed families (``net.0``, ``net.2``, ``net.10``) and files whose
   keys are sorted by name (safetensors sorts them, so the order is lost) are ordered by the numbers in the
   names (``l2`` before ``l10``).
3. *Chains*: consecutive weight modules of a family chain when the shapes fit: a layer's input width equals
   the previous output width, or, after a conv of ``C`` channels, equals ``C`` (global average pooling) or
   ``C * s * s`` (a flatten of ``s x s`` positions). Chains of different families are then linked the same way:
   first by name (``value_net`` continues ``mlp_extractor.value_net``), then to the nearest earlier chain
   (any chain when the file order is lost). Each BatchNorm/LayerNorm joins the weight module of its width with
   the same number (``bn1`` with ``conv1``), else the nearest one before it in its family.

What is left over are separate :class:`Stack` objects (an actor and a critic) and tensors that fit no stack
(``log_std``, attention projections); :func:`stack_spec` turns one stack into a sequential spec, choosing
what the state dict cannot tell (activation, input size, padding and pooling, the flatten) and recording
each choice as *assumed*. Pure functions of names and shapes: nothing here builds a network.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wslviz.core.layout import ACTIVATIONS, ArchitectureError, conv_out

TENSOR_ROLES = ("weight", "bias", "running_mean", "running_var")
"""Key suffixes that name a layer's tensor, in the order a layer stores them."""
COUNTERS = ("num_batches_tracked",)
"""Key suffixes of integer counters that are not weights."""
WRAPPERS = ("module.", "model.", "_orig_mod.")
"""Prefixes added by ``DataParallel``, Lightning modules and ``torch.compile``, stripped when every key has one."""
POOL = 2
"""The pooling window assumed between convs when the flatten width asks for it (``2 x 2`` max-pool, stride 2)."""
INPUT_SIZES = {1: (28, 32, 8, 16, 64), 3: (32, 28, 64, 96, 224)}
"""Image sizes tried, in order, for a CNN whose input size is not stated (by its input channels)."""
OTHER_SIZES = (32, 28, 64, 8, 16, 224)


def strip_wrappers(names: Iterable[str]) -> dict[str, str]:
    """``{stripped name: name}``: the prefixes of :data:`WRAPPERS` that *every* name shares removed, repeatedly
    (``module._orig_mod.fc1.weight`` -> ``fc1.weight``), so nothing can collide."""
    names = list(names)
    stripped = names
    changed = True
    while changed and stripped:
        changed = False
        for w in WRAPPERS:
            if all(n.startswith(w) and len(n) > len(w) for n in stripped):
                stripped = [n[len(w):] for n in stripped]
                changed = True
    return dict(zip(stripped, names, strict=True))


def _natural(text: str) -> list:
    """Sort key that orders the numbers in a name numerically (``l2`` < ``l10``)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text) if t]


def _number(prefix: str) -> str:
    """The trailing number of a module's own name (``conv1`` -> ``1``, ``layers.2`` -> ``2``), or ``""``."""
    m = re.search(r"(\d+)$", prefix.rsplit(".", 1)[-1])
    return m.group(1) if m else ""


@dataclass(eq=False)
class Module:
    """One layer of a state dict: the tensors sharing a prefix.

    ``kind``: ``linear``, ``conv2d``, ``batchnorm``, ``layernorm``; ``shapes``: role -> shape, in
    :data:`TENSOR_ROLES` order; ``keys``: role -> the key it was stored under; ``position``: where its first
    key appears in the state dict."""

    prefix: str
    kind: str
    shapes: dict[str, tuple[int, ...]]
    keys: dict[str, str]
    position: int

    @property
    def family(self) -> str:
        return self.prefix.rsplit(".", 1)[0] if "." in self.prefix else ""

    @property
    def name(self) -> str:
        return self.prefix.rsplit(".", 1)[-1]

    @property
    def out_width(self) -> int:
        return self.shapes["weight"][0]

    @property
    def in_width(self) -> int:
        return self.shapes["weight"][1]

    @property
    def has_weights(self) -> bool:
        """A linear or conv layer (as opposed to a normalisation)."""
        return self.kind in ("linear", "conv2d")

    def label(self) -> str:
        return self.prefix or "(root)"


@dataclass(eq=False)
class Stack:
    """A chain of weight modules in layer order, each with the normalisation modules that follow it."""

    layers: list[tuple[Module, list[Module]]]

    @property
    def name(self) -> str:
        """``"conv1 -> fc3"``: the first and last weight module."""
        first, last = self.layers[0][0].label(), self.layers[-1][0].label()
        return first if first == last else f"{first} -> {last}"

    @property
    def keys(self) -> list[str]:
        """The state-dict keys of the stack in layer order (each module's tensors in role order)."""
        return [m.keys[r] for w, norms in self.layers for m in (w, *norms) for r in TENSOR_ROLES if r in m.keys]

    @property
    def modules(self) -> list[Module]:
        return [m for w, norms in self.layers for m in (w, *norms)]


@dataclass
class StackSearch:
    """What :func:`find_stacks` found: ``stacks`` in order of their first key, and ``unplaced`` (key -> why it
    is in no stack)."""

    stacks: list[Stack]
    unplaced: dict[str, str] = field(default_factory=dict)
    breaks: list[str] = field(default_factory=list)
    """Why neighbouring modules of one family did not chain (one phrase each)."""

    @property
    def reason(self) -> str | None:
        """Why the state dict is not one sequential stack (None when it is)."""
        if not self.stacks and not self.unplaced:
            return "the state dict holds no weight tensors"
        parts = []
        if len(self.stacks) > 1:
            names = "; ".join(s.name for s in self.stacks)
            parts.append(f"it holds {len(self.stacks)} separate stacks ({names})"
                         + (f" because {'; '.join(self.breaks)}" if self.breaks else ""))
        elif not self.stacks:
            parts.append("no tensor forms a linear or conv layer")
        if self.unplaced:
            shown = "; ".join(f"{k}: {why}" for k, why in list(self.unplaced.items())[:4])
            more = f" and {len(self.unplaced) - 4} more" if len(self.unplaced) > 4 else ""
            parts.append(f"{len(self.unplaced)} tensor(s) fit no sequential layer ({shown}{more})")
        return " and ".join(parts) if parts else None

    def pick(self, stack: int | str | None = None) -> Stack:
        """The one stack (``stack=None``: the state dict must be exactly one), or the stack of that index or
        whose name contains that text. Raises :class:`ArchitectureError` saying why."""
        if stack is None:
            if self.reason is not None:
                raise ArchitectureError(f"not one sequential stack: {self.reason}")
            return self.stacks[0]
        if isinstance(stack, bool) or not isinstance(stack, int | str):
            raise ArchitectureError(f"stack must be an index or a name, got {stack!r}")
        if isinstance(stack, int):
            if not 0 <= stack < len(self.stacks):
                raise ArchitectureError(f"stack {stack} does not exist; found {len(self.stacks)}: "
                                        f"{'; '.join(s.name for s in self.stacks)}")
            return self.stacks[stack]
        hits = [s for s in self.stacks if s.name == stack] or [s for s in self.stacks
                                                                if any(stack in m.prefix for m in s.modules)]
        if len(hits) != 1:
            raise ArchitectureError(f"stack {stack!r} matches {len(hits)} of the stacks found "
                                    f"({'; '.join(s.name for s in self.stacks)})")
        return hits[0]


def split_key(key: str) -> tuple[str, str] | None:
    """``(prefix, role)`` of a layer tensor's key (``"fc1.weight"`` -> ``("fc1", "weight")``), else None."""
    prefix, _, role = key.rpartition(".")
    return (prefix, role) if role in TENSOR_ROLES else None


def _module(prefix: str, tensors: dict[str, tuple[str, tuple[int, ...]]], position: int) -> Module | str:
    """A :class:`Module` from its role -> (key, shape), or the reason it is not a supported layer."""
    shapes = {r: tensors[r][1] for r in TENSOR_ROLES if r in tensors}
    keys = {r: tensors[r][0] for r in TENSOR_ROLES if r in tensors}
    w = shapes.get("weight")
    stats = "running_mean" in shapes or "running_var" in shapes
    if w is None:
        return f"a {'/'.join(shapes)} without a weight"
    if len(w) == 2 and not stats:
        kind, width = "linear", w[0]
    elif len(w) == 4 and not stats:
        if w[2] != w[3]:
            return f"non-square kernel {list(w)}"
        kind, width = "conv2d", w[0]
    elif len(w) == 1:
        kind, width = ("batchnorm", w[0]) if stats else ("layernorm", w[0])
        if set(shapes) != ({"weight", "bias", "running_mean", "running_var"} if stats else {"weight", "bias"}):
            return f"a normalisation with tensors {sorted(shapes)} (expected weight, bias" \
                   + (", running_mean, running_var)" if stats else ")")
    else:
        return f"weight of rank {len(w)} {list(w)}"
    for role, shape in shapes.items():
        if role != "weight" and shape != (width,):
            return f"{role} of shape {list(shape)} does not match {width} units"
    return Module(prefix, kind, shapes, keys, position)


def fits(a: Module, b: Module) -> bool:
    """Whether weight module ``b`` can take ``a``'s outputs: equal widths, or a flatten / global average
    pool of ``a``'s conv channels into the linear ``b``."""
    if b.kind == "conv2d":
        return a.kind == "conv2d" and b.in_width == a.out_width
    if a.kind == "linear" or b.in_width == a.out_width:
        return b.in_width == a.out_width
    q, r = divmod(b.in_width, a.out_width)
    return r == 0 and math.isqrt(q) ** 2 == q


def find_stacks(shapes: Mapping[str, Sequence[int]]) -> StackSearch:
    """The sequential stacks of a state dict given as ``{key: shape}`` (in the file's order; integer counters
    already left out or named ``*.num_batches_tracked``). See the module docstring for the rules."""
    order_lost = len(shapes) > 1 and list(shapes) == sorted(shapes)
    names = strip_wrappers(k for k in shapes if k.rpartition(".")[2] not in COUNTERS)
    unplaced: dict[str, str] = {}
    grouped: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    first: dict[str, int] = {}
    for i, (name, key) in enumerate(names.items()):
        parts = split_key(name)
        if parts is None:
            unplaced[key] = "its name does not end in weight/bias/running_mean/running_var"
            continue
        grouped.setdefault(parts[0], {})[parts[1]] = (key, tuple(int(s) for s in shapes[key]))
        first.setdefault(parts[0], i)
    modules: list[Module] = []
    for prefix, tensors in grouped.items():
        m = _module(prefix, tensors, first[prefix])
        if isinstance(m, str):
            unplaced.update({key: m for key, _ in tensors.values()})
        else:
            modules.append(m)
    weights = [m for m in modules if m.has_weights]
    chains, breaks = _chains(weights, order_lost)
    norms = _attach_norms([m for m in modules if not m.has_weights], weights, unplaced)
    stacks = [Stack([(w, norms.get(id(w), [])) for w in chain]) for chain in chains]
    stacks.sort(key=lambda s: min(m.position for m in s.modules))
    return StackSearch(stacks, unplaced, breaks if len(stacks) > 1 else [])


def _family_order(members: list[Module], order_lost: bool) -> list[Module]:
    if order_lost or all(m.name.isdigit() for m in members):
        return sorted(members, key=lambda m: _natural(m.name))
    return members


def _chains(weights: list[Module], order_lost: bool) -> tuple[list[list[Module]], list[str]]:
    """Weight modules -> chains in layer order (segments within families, then linked across families)."""
    families: dict[str, list[Module]] = {}
    for m in weights:
        families.setdefault(m.family, []).append(m)
    segments: list[list[Module]] = []
    breaks: list[str] = []
    for members in families.values():
        run: list[Module] = []
        for m in _family_order(members, order_lost):
            if run and not fits(run[-1], m):
                if m.name.isdigit() and run[-1].name.isdigit():  # a gap inside one nn.Sequential
                    breaks.append(f"{m.label()} takes {m.in_width} inputs, which does not fit after "
                                  f"{run[-1].label()} ({run[-1].out_width} outputs)")
                segments.append(run)
                run = []
            run.append(m)
        segments.append(run)
    nxt: dict[int, int] = {}
    prv: dict[int, int] = {}

    def head(i: int) -> int:
        while i in prv:
            i = prv[i]
        return i

    def link(a: int, b: int) -> None:
        nxt[a], prv[b] = b, a

    def free(a: int, b: int) -> bool:
        """Whether segment ``b`` may continue segment ``a`` (never backwards within one family)."""
        backwards = segments[a][0].family == segments[b][0].family and a > b
        return (a != b and not backwards and a not in nxt and b not in prv and head(a) != b
                and fits(segments[a][-1], segments[b][0]))

    for b, seg in enumerate(segments):  # by name: value_net continues mlp_extractor.value_net
        for a, other in enumerate(segments):
            if other[-1].family and other[-1].family.rsplit(".", 1)[-1] == seg[0].name and free(a, b):
                link(a, b)
                break
    for b in sorted(range(len(segments)), key=lambda i: segments[i][0].position):
        if b in prv:
            continue
        start = segments[b][0].position
        candidates = [a for a in range(len(segments)) if free(a, b)]
        before = [a for a in candidates if segments[a][-1].position < start]
        if before:
            link(max(before, key=lambda a: segments[a][-1].position), b)
        elif order_lost and candidates:
            link(min(candidates, key=lambda a: abs(segments[a][-1].position - start)), b)
    chains = []
    for i in range(len(segments)):
        if i in prv:
            continue
        chain = list(segments[i])
        while i in nxt:
            i = nxt[i]
            chain += segments[i]
        chains.append(chain)
    return chains, breaks


def _attach_norms(norms: list[Module], weights: list[Module], unplaced: dict[str, str]) -> dict[int, list[Module]]:
    """``{id(weight module): [norm modules after it]}``: each norm joins a weight module of its width, the one
    with its number in its family (``bn1`` -> ``conv1``), else the nearest one before it in its family, else
    the nearest before it at all. LayerNorm only follows linear layers (it normalises flat features here)."""
    out: dict[int, list[Module]] = {}
    for n in norms:
        ok = [w for w in weights if w.out_width == n.out_width and (n.kind == "batchnorm" or w.kind == "linear")]
        same = [w for w in ok if w.family == n.family]
        numbered = [w for w in same if _number(n.prefix) and _number(w.prefix) == _number(n.prefix)]
        before_family = [w for w in same if w.position < n.position]
        before = [w for w in ok if w.position < n.position]
        pool = numbered or before_family or before
        if not pool:
            why = f"a {n.kind} of {n.out_width} features with no layer of that width before it"
            unplaced.update({key: why for key in n.keys.values()})
            continue
        target = numbered[0] if numbered else max(pool, key=lambda w: w.position)
        out.setdefault(id(target), []).append(n)
    for group in out.values():
        group.sort(key=lambda m: m.position)
    return out


def layer_keys(shapes: Mapping[str, Sequence[int]]) -> list[str]:
    """The keys of a one-stack state dict in layer order (how ``Architecture.flatten(..., by_order=True)``
    matches foreign names to a layout). Raises :class:`ArchitectureError` when it is not one stack."""
    return find_stacks(shapes).pick().keys


# ------------------------------------------------------------------------------------------------ specs
@dataclass(frozen=True)
class _Plan:
    """Per conv of a stack: padding, and whether a 2x2 max-pool follows; ``cost`` counts the departures
    from no padding and no pooling."""

    padding: tuple[int, ...]
    pool: tuple[bool, ...]
    cost: int


def _conv_plans(convs: list[Module], size: tuple[int, int], target: int | None) -> _Plan | None:
    """The cheapest padding/pooling plan taking a ``size`` image through ``convs`` to ``h * w == target``
    positions (``target`` None: any size of at least 1). Dynamic programming over the reachable sizes."""
    states: dict[tuple[int, int], _Plan] = {size: _Plan((), (), 0)}
    for m in convs:
        k = m.shapes["weight"][2]
        nxt: dict[tuple[int, int], _Plan] = {}
        for (h, w), plan in states.items():
            for pad in dict.fromkeys((0, k // 2)):
                for pool in (False, True):
                    hh, ww = conv_out(h, k, 1, pad), conv_out(w, k, 1, pad)
                    if pool:
                        hh, ww = conv_out(hh, POOL, POOL, 0), conv_out(ww, POOL, POOL, 0)
                    if min(hh, ww) < 1:
                        continue
                    cand = _Plan(plan.padding + (pad,), plan.pool + (pool,), plan.cost + (pad > 0) + pool)
                    if (hh, ww) not in nxt or cand.cost < nxt[(hh, ww)].cost:
                        nxt[(hh, ww)] = cand
        states = nxt
    found = [p for (h, w), p in states.items() if target is None or h * w == target]
    return min(found, key=lambda p: p.cost) if found else None


def _positions(n: int) -> str:
    """``16`` -> ``"4x4"`` (square images), else the count."""
    s = math.isqrt(n)
    return f"{s}x{s}" if s * s == n else str(n)


def _describe_plan(convs: list[Module], plan: _Plan) -> tuple[str, str]:
    pooled = [m.label() for m, p in zip(convs, plan.pool, strict=True) if p]
    padded = [f"{m.label()} ({p})" for m, p in zip(convs, plan.padding, strict=True) if p]
    pooling = f"{POOL}x{POOL} max-pool after {', '.join(pooled)}" if pooled else "no pooling between convs"
    return pooling, f"padding {', '.join(padded)}" if padded else "no padding, stride 1"


def stack_spec(stack: Stack, activation: str | None = None,
               input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """A sequential spec (see :mod:`wslviz.core.arch`) of ``stack``, with ``"assumed"``: what the state dict
    did not record and was chosen here, as ``{what: phrase}``.

    ``activation`` goes after every layer but the last (assumed ``relu`` when None). A CNN's ``input_shape``
    ``[C, H, W]``, when not given, is the first size of :data:`INPUT_SIZES` for which a padding/pooling plan
    makes the flatten into the first linear layer fit; the cheapest such plan (no padding and no pooling where
    possible) is assumed. A linear layer as wide as the last conv's channels follows global average pooling.
    Raises :class:`ArchitectureError` when no input size and plan fit.
    """
    assumed: dict[str, str] = {}
    if activation is None:
        activation = "relu"
        assumed["activation"] = "relu after every layer but the last (a state dict does not record activations)"
    if activation not in ACTIVATIONS:
        raise ArchitectureError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    weights = [w for w, _ in stack.layers]
    convs = [w for w in weights if w.kind == "conv2d"]
    first = weights[0]
    if input_shape is not None:
        input_shape = tuple(int(s) for s in input_shape)
        want = 3 if first.kind == "conv2d" else 1
        if len(input_shape) != want or input_shape[0] != first.in_width:
            raise ArchitectureError(f"input_shape {list(input_shape)} does not fit the first layer "
                                    f"{first.label()}, which takes "
                                    + (f"[{first.in_width}, H, W] images" if want == 3 else
                                       f"{first.in_width} features"))
    plan = None
    if convs:
        plan, input_shape = _cnn_input(stack, convs, input_shape, assumed)
    elif input_shape is None:
        input_shape = (first.in_width,)
    layers: list[dict[str, Any]] = []
    for i, (w, norms) in enumerate(stack.layers):
        if i and w.kind == "linear" and weights[i - 1].kind == "conv2d":
            layers.append({"type": "global_avg_pool" if w.in_width == weights[i - 1].out_width else "flatten"})
        bias = "bias" in w.shapes
        if w.kind == "linear":
            layers.append({"type": "linear", "in_features": w.in_width, "out_features": w.out_width, "bias": bias})
        else:
            j = convs.index(w)
            layers.append({"type": "conv2d", "in_channels": w.in_width, "out_channels": w.out_width,
                           "kernel_size": w.shapes["weight"][2], "padding": plan.padding[j], "bias": bias})
        for n in norms:
            layers.append({"type": "batchnorm", "num_features": n.out_width} if n.kind == "batchnorm"
                          else {"type": "layernorm", "normalized_shape": n.out_width})
        if i < len(weights) - 1:
            layers.append({"type": activation})
            if w.kind == "conv2d" and plan.pool[convs.index(w)]:
                layers.append({"type": "maxpool2d", "kernel_size": POOL, "stride": POOL})
    return {"input_shape": list(input_shape), "layers": layers, "assumed": assumed}


def _cnn_input(stack: Stack, convs: list[Module], input_shape: tuple[int, ...] | None,
               assumed: dict[str, str]) -> tuple[_Plan, tuple[int, ...]]:
    """The padding/pooling plan and input shape of a stack with convs (see :func:`stack_spec`)."""
    weights = [w for w, _ in stack.layers]
    last = weights.index(convs[-1])
    after = weights[last + 1] if last + 1 < len(weights) else None
    target = None
    if after is not None and after.in_width != convs[-1].out_width:
        target = after.in_width // convs[-1].out_width
    channels = convs[0].in_width
    sizes = [tuple(input_shape[1:])] if input_shape else [(s, s) for s in INPUT_SIZES.get(channels, OTHER_SIZES)]
    for size in sizes:
        plan = _conv_plans(convs, size, target)
        if plan is not None:
            break
    else:
        where = f"the image size {list(input_shape)} cannot give" if input_shape else "no common image size gives"
        problem = (f"{after.label()} takes {after.in_width} features, which {where} after "
                   f"{convs[-1].label()} ({convs[-1].out_width} channels)" if after is not None
                   else "the image is too small for the convs")
        raise ArchitectureError(f"{problem} with stride-1 convs and {POOL}x{POOL} pooling; state "
                                "input_shape=[C, H, W] or the whole arch=<spec>")
    if not input_shape:
        input_shape = (channels, *size)
        assumed["input_shape"] = (f"{list(input_shape)} (a state dict does not record the image size"
                                  + (f"; this one makes the flatten into {after.label()} fit)" if target else ")"))
    pooling, padding = _describe_plan(convs, plan)
    assumed["pooling"] = pooling + (f" (so that {after.label()} gets {after.in_width} features)" if target else "")
    assumed["padding"] = padding
    if after is not None:
        assumed["flatten"] = (f"global average pooling before {after.label()} (its width equals the "
                              f"{convs[-1].out_width} channels of {convs[-1].label()})" if target is None
                              else f"flatten of {convs[-1].out_width} channels x {_positions(target)} positions "
                                   f"into {after.label()}")
    return plan, tuple(input_shape)
