"""The architecture registry: which kinds exist, specs to architectures, and the helpers every caller uses.

Every kind implements one protocol, the abstract base :class:`wslviz.core.kind.ArchitectureBase` (exported here
as :data:`ArchitectureLike`, the type every library function and page takes as ``arch``):

================  =================================================  ===========================================
``kind``          class                                              forward
================  =================================================  ===========================================
``sequential``    :class:`wslviz.core.arch.Architecture`             its own fast batched kernels on the CPU
``module``        :class:`wslviz.core.module_arch.ModuleArchitecture` an ``nn.Module`` (built-in, factory or
                                                                     instance), its graph giving the symmetries
``weights-only``  :class:`wslviz.core.weights_only.WeightsOnlyLayout`  none: named tensors in file order
``lora``          :class:`wslviz.core.lora.LoraArchitecture`          the base model's, each adapter merged in
                                                                     (none when the zoo carries no base)
``hf``            :class:`wslviz.core.hf_arch.HuggingFaceArchitecture` a ``transformers`` model built from its
                                                                     ``config.json`` (``wslviz[hf]``)
================  =================================================  ===========================================

A kind's constructor takes its spec (:func:`from_spec` dispatches on ``spec["kind"]``), so ``zoo.json``
round-trips every kind. Adding a kind is one module (a subclass of ``ArchitectureBase``) and one line: an entry
in :data:`KINDS`, or :func:`register_kind` from outside the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from wslviz.core.arch import infer_architecture
from wslviz.core.families import recognise
from wslviz.core.kind import ArchitectureBase, require_forward
from wslviz.core.layout import ArchitectureError, NoForwardError
from wslviz.core.stacks import find_stacks
from wslviz.core.weights_only import WeightsOnlyLayout

ArchitectureLike = ArchitectureBase
"""The type of ``arch`` everywhere: any kind of architecture (the protocol's abstract base)."""

KINDS: dict[str, str | type[ArchitectureBase]] = {
    "sequential": "wslviz.core.arch:Architecture",
    "module": "wslviz.core.module_arch:ModuleArchitecture",
    "weights-only": "wslviz.core.weights_only:WeightsOnlyLayout",
    "lora": "wslviz.core.lora:LoraArchitecture",
    "hf": "wslviz.core.hf_arch:HuggingFaceArchitecture",
}
"""kind -> the class whose constructor takes the spec, or ``"module:class"`` (imported on first use)."""


def register_kind(kind: str, cls: str | type[ArchitectureBase]) -> None:
    """Make ``kind`` known to :func:`from_spec`: ``cls`` (a subclass of :class:`ArchitectureBase`, or its
    ``"module:class"`` path) builds an architecture from a spec with ``"kind": kind``."""
    if isinstance(cls, type) and not issubclass(cls, ArchitectureBase):
        raise ArchitectureError(f"{cls.__name__} does not implement the architecture protocol (ArchitectureBase)")
    KINDS[kind] = cls


def spec_kind(spec: Mapping[str, Any]) -> str:
    """The kind a spec describes (``"sequential"`` when it names none)."""
    return str(spec.get("kind", "sequential"))


def from_spec(spec: Mapping[str, Any], allow_code: bool = False, base: Any = None) -> ArchitectureLike:
    """The architecture of a spec of any kind. Every kind's constructor takes ``(spec, allow_code, base)``:
    ``allow_code`` lets a module spec run its factory (user code), ``base`` is the folder a relative factory path
    is resolved against. Raises :class:`ArchitectureError` for an unknown kind or a bad spec."""
    if not isinstance(spec, Mapping):
        raise ArchitectureError(f"an architecture spec is a JSON object, got {type(spec).__name__}")
    kind = spec_kind(spec)
    if kind not in KINDS:
        raise ArchitectureError(f"unknown architecture kind {kind!r}; known: {', '.join(KINDS)}")
    cls = KINDS[kind]
    if isinstance(cls, str):
        module, _, name = cls.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise ArchitectureError(f"{kind} architectures are not available in this version of wslviz") from None
    return cls(spec, allow_code=allow_code, base=base)


def as_architecture(arch: Any, allow_code: bool = False, base: Any = None) -> ArchitectureLike:
    """The architecture of a spec (a mapping; see :func:`from_spec`), or ``arch`` itself when it already is one."""
    if isinstance(arch, Mapping):
        return from_spec(arch, allow_code=allow_code, base=base)
    if isinstance(arch, ArchitectureBase):
        return arch
    raise ArchitectureError(f"expected an architecture or its spec, got {type(arch).__name__}")


def infer_layout(state_dict: Mapping[str, torch.Tensor], activation: str | None = None,
                 input_shape: Sequence[int] | None = None, stack: int | str | None = None) -> ArchitectureLike:
    """The best architecture a state dict gives: a recognised family's built-in (:mod:`wslviz.core.families`:
    torchvision and CIFAR ResNets) when its names and shapes are exactly that family's, else a sequential
    ``Architecture`` when its tensors form one stack (or ``stack`` picks one; see
    :func:`wslviz.core.arch.infer_architecture`), else a
    :class:`WeightsOnlyLayout` of all its floating tensors that says why and lists the stacks it found (also
    when one stack makes no network for any common image size). A stated ``stack`` or ``input_shape`` that
    does not fit raises :class:`ArchitectureError`."""
    shapes = {k: tuple(torch.as_tensor(v).shape) for k, v in state_dict.items()
              if not k.endswith("num_batches_tracked") and torch.as_tensor(v).is_floating_point()}
    if not shapes:
        raise ArchitectureError("the state dict holds no floating-point tensors")
    family = recognise(shapes, input_shape) if stack is None else None
    if family is not None:
        arch = from_spec({"kind": "module", "builtin": family.name, "kwargs": family.kwargs,
                          "input_shape": list(family.input_shape),
                          "assumed": {"architecture": f"{family.label}, recognised from the key names and shapes",
                                      **family.assumed}})
        if {p.name: p.shape for p in arch.layout} == shapes:
            return arch
    found = find_stacks(shapes)
    reason = found.reason
    if stack is not None or reason is None:
        try:
            return infer_architecture(state_dict, activation=activation, input_shape=input_shape, stack=stack)
        except ArchitectureError as e:
            if stack is not None or input_shape is not None:  # what was stated does not fit: say so
                raise
            reason = str(e)
    return WeightsOnlyLayout.from_shapes(shapes, reason=reason, stacks=[s.name for s in found.stacks])


def has_forward(arch: ArchitectureBase) -> bool:
    """Whether ``arch`` can run."""
    return bool(arch.has_forward)


def assumed_of(arch: ArchitectureBase) -> dict[str, str]:
    """What was assumed in making ``arch`` (``{what: phrase}``; empty where nothing was recorded)."""
    return dict(arch.assumed or {})


def knows_symmetries(arch: ArchitectureBase) -> bool:
    """Whether the permutation symmetries of ``arch`` can be derived (False for weights-only layouts and
    for sequential specs with a layer the derivation cannot place)."""
    return arch.knows_symmetries


def from_module(net: torch.nn.Module, input_shape: Sequence[int], input_dtype: str = "float",
                input_high: int = 0) -> ArchitectureBase:
    """The architecture of an ``nn.Module`` instance you hold (no factory file): its layout, forward and the
    permutation spec derived from its graph. ``input_shape`` is one example input without the batch axis;
    ``input_dtype="int"`` with ``input_high`` for token ids. See
    :meth:`wslviz.core.module_arch.ModuleArchitecture.from_module`."""
    from wslviz.core.module_arch import ModuleArchitecture

    return ModuleArchitecture.from_module(net, input_shape, input_dtype, input_high)


__all__ = ["KINDS", "ArchitectureBase", "ArchitectureError", "ArchitectureLike", "NoForwardError", "as_architecture",
           "assumed_of", "from_module", "from_spec", "has_forward", "infer_layout", "knows_symmetries",
           "register_kind", "require_forward", "spec_kind"]
