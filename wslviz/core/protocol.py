"""The architecture protocol: what every library function and page takes as ``arch``.

A zoo's weights are one float32 matrix ``[n_models, P]``; its *architecture* says how to cut a row into named
tensors and, where it can, how to run it. Three kinds implement one protocol:

================  =================================================  ===========================================
``kind``          class                                              forward
================  =================================================  ===========================================
``sequential``    :class:`wslviz.core.arch.Architecture`             the fast batched evaluator of specs
``module``        ``wslviz.core.module_arch.ModuleArchitecture``     an ``nn.Module`` (built-in or a user's
                                                                     factory), its graph giving the symmetries
``weights-only``  :class:`wslviz.core.weights_only.WeightsOnlyLayout`  none: named tensors in file order
================  =================================================  ===========================================

Every kind has (see :class:`ArchitectureLike`): ``kind``; ``layout`` (``ParamInfo`` per tensor, ``layer``
indexing ``layers``) and ``n_params``; ``layers`` (one dict per layer with at least ``"type"``) and
``weight_layers``; ``input_shape`` (None when unknown); ``has_forward``; ``assumed`` (``{what: phrase}``, what
was chosen because a state dict does not record it); ``spec`` (JSON-able, ``"kind"`` in it except for
sequential specs, which predate kinds), ``to_json()``, ``fingerprint``, ``describe()``; ``unflatten(weights)``
and ``flatten(state_dict, by_order=False)``; ``perm_spec`` (raises
:class:`~wslviz.core.permutation.SymmetryError` when no symmetry can be derived) and ``build(weights=None)``
(raises :class:`~wslviz.core.layout.NoForwardError` without a forward).

Functions that only read weights take any kind. Functions that run the network call :func:`require_forward`
first, so a weights-only zoo gets one sentence saying what is missing and how to supply it. A kind's
constructor takes its spec (:func:`from_spec` dispatches on ``spec["kind"]``), so ``zoo.json`` round-trips
every kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from wslviz.core.arch import infer_architecture
from wslviz.core.layout import ArchitectureError, NoForwardError, ParamInfo
from wslviz.core.permutation import PermutationSpec, SymmetryError
from wslviz.core.stacks import find_stacks
from wslviz.core.weights_only import WeightsOnlyLayout

KINDS: dict[str, str] = {
    "sequential": "wslviz.core.arch:Architecture",
    "module": "wslviz.core.module_arch:ModuleArchitecture",
    "weights-only": "wslviz.core.weights_only:WeightsOnlyLayout",
}
"""kind -> ``module:class`` whose constructor takes the spec (imported on first use)."""


class ArchitectureLike(Protocol):
    """What every architecture kind offers (see the module docstring)."""

    kind: str
    layout: tuple[ParamInfo, ...]
    n_params: int
    layers: list[dict[str, Any]]
    input_shape: tuple[int, ...] | None
    has_forward: bool
    assumed: dict[str, str]
    spec: dict[str, Any]

    @property
    def weight_layers(self) -> list[int]: ...

    @property
    def perm_spec(self) -> PermutationSpec: ...

    @property
    def fingerprint(self) -> str: ...

    def unflatten(self, weights: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def flatten(self, state_dict: Mapping[str, torch.Tensor], by_order: bool = False) -> torch.Tensor: ...

    def build(self, weights: torch.Tensor | None = None) -> nn.Module: ...

    def describe(self) -> str: ...

    def to_json(self) -> str: ...


def spec_kind(spec: Mapping[str, Any]) -> str:
    """The kind a spec describes (``"sequential"`` when it names none)."""
    return str(spec.get("kind", "sequential"))


def from_spec(spec: Mapping[str, Any], **options: Any) -> ArchitectureLike:
    """The architecture of a spec of any kind; ``options`` go to the kind's constructor (``allow_code=`` for
    module factories). Raises :class:`ArchitectureError` for an unknown kind or a bad spec."""
    if not isinstance(spec, Mapping):
        raise ArchitectureError(f"an architecture spec is a JSON object, got {type(spec).__name__}")
    kind = spec_kind(spec)
    if kind not in KINDS:
        raise ArchitectureError(f"unknown architecture kind {kind!r}; known: {', '.join(KINDS)}")
    module, _, name = KINDS[kind].partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ArchitectureError(f"{kind} architectures are not available in this version of wslviz") from None
    return cls(spec, **options)


def as_architecture(arch: Any, **options: Any) -> ArchitectureLike:
    """The architecture of a spec (a mapping), or ``arch`` itself when it already is one of any kind."""
    if isinstance(arch, Mapping):
        return from_spec(arch, **options)
    if hasattr(arch, "layout") and hasattr(arch, "unflatten"):
        return arch
    raise ArchitectureError(f"expected an architecture or its spec, got {type(arch).__name__}")


def infer_layout(state_dict: Mapping[str, torch.Tensor], activation: str | None = None,
                 input_shape: Sequence[int] | None = None, stack: int | str | None = None) -> ArchitectureLike:
    """The best architecture a state dict gives: a sequential ``Architecture`` when its tensors form one
    stack (or ``stack`` picks one; see :func:`wslviz.core.arch.infer_architecture`), else a
    :class:`WeightsOnlyLayout` of all its floating tensors that says why and lists the stacks it found (also
    when one stack makes no network for any common image size). A stated ``stack`` or ``input_shape`` that
    does not fit raises :class:`ArchitectureError`."""
    shapes = {k: tuple(torch.as_tensor(v).shape) for k, v in state_dict.items()
              if not k.endswith("num_batches_tracked") and torch.as_tensor(v).is_floating_point()}
    if not shapes:
        raise ArchitectureError("the state dict holds no floating-point tensors")
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


def has_forward(arch: Any) -> bool:
    """Whether ``arch`` can run (an object without the ``has_forward`` attribute is taken to have a forward)."""
    return bool(getattr(arch, "has_forward", True))


def assumed_of(arch: Any) -> dict[str, str]:
    """What was assumed in making ``arch`` (``{what: phrase}``; empty where nothing was recorded)."""
    return dict(getattr(arch, "assumed", None) or {})


def require_forward(arch: Any, what: str = "This") -> None:
    """Raise :class:`NoForwardError` when ``arch`` cannot run (a weights-only layout), with one sentence saying
    that ``what`` (e.g. ``"Evaluation"``) needs a forward and how to supply one."""
    if has_forward(arch):
        return
    raise NoForwardError(f"{what} needs to run the networks, but this zoo is a weights-only layout "
                         f"({arch.describe()}) with no forward: state the architecture "
                         "(wv.load_zoo(path, arch=<spec>), or activation= / input_shape= / stack= where the tensors "
                         "form sequential stacks; the same on the home page) and attach a task (a .npz with x and "
                         "y) to run it")


def knows_symmetries(arch: Any) -> bool:
    """Whether the permutation symmetries of ``arch`` can be derived (False for weights-only layouts and
    for sequential specs with a layer the derivation cannot place)."""
    try:
        spec = arch.perm_spec
    except SymmetryError:
        return False
    return spec is not None


__all__ = ["KINDS", "ArchitectureError", "ArchitectureLike", "NoForwardError", "as_architecture", "assumed_of",
           "from_spec", "has_forward", "infer_layout", "knows_symmetries", "require_forward", "spec_kind"]
