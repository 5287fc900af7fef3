"""Weights-only layouts: the named tensors of a state dict in file order, with no forward.

The *weights-only* kind of the architecture protocol (:mod:`wslviz.core.protocol`), for checkpoints whose
network wslviz cannot rebuild (several independent stacks, attention, residual blocks, tensors that fit no
sequential layer). Everything computed from the weights alone works on it: histograms, spectra and norms
per tensor, ``flat`` / ``stats`` / ``spectral`` features, projections, property prediction, retrieval,
samplers that do not evaluate, exports. Everything that runs the network (evaluation, landscapes,
functional features, activation matching) raises :class:`~wslviz.core.layout.NoForwardError` through
:func:`wslviz.core.protocol.require_forward`, and deriving symmetries raises
:class:`~wslviz.core.permutation.SymmetryError`: without the wiring, which hidden units may be permuted is
unknown. Both say how to state the architecture.

What each tensor is, is guessed from its name and rank (and listed as assumed): the last name component
``weight``/``bias``/``running_mean``/``running_var`` gives the role (``*_weight``/``*kernel`` weight,
``*_bias`` bias, anything else ``other``), the owning module is the key without its last component, and a
module's type comes from its weight's rank (2: linear, 3: conv1d, 4: conv2d, 1: batchnorm with running
statistics, else a norm). The spec is JSON-able::

    {"kind": "weights-only", "tensors": [{"name": "action_net.weight", "shape": [2, 64], "role": "weight"}, ...],
     "reason": "it holds 2 separate stacks (...)", "stacks": ["mlp_extractor.policy_net.0 -> action_net", ...]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from wslviz.core.kind import ArchitectureBase
from wslviz.core.layout import STATISTICS, ArchitectureError, ParamInfo
from wslviz.core.permutation import PermutationSpec, SymmetryError

KIND = "weights-only"
ROLE_NAMES = ("weight", "bias", *STATISTICS)
MODULE_TYPES = {2: "linear", 3: "conv1d", 4: "conv2d"}


def guess_role(name: str) -> str:
    """A tensor's role from its name: ``fc1.weight`` -> ``weight``, ``attn.in_proj_bias`` -> ``bias``,
    ``log_std`` -> ``other`` (see the module docstring)."""
    leaf = name.rpartition(".")[2]
    if leaf in ROLE_NAMES:
        return leaf
    lower = leaf.lower()
    if lower.endswith(("weight", "kernel")):
        return "weight"
    if lower.endswith("bias"):
        return "bias"
    return "other"


def _module_type(infos: list[tuple[str, tuple[int, ...], str]]) -> str:
    roles = {role: shape for _, shape, role in infos}
    w = roles.get("weight")
    if w is None:
        return "tensor"
    if len(w) == 1:
        return "batchnorm" if "running_mean" in roles else "norm"
    return MODULE_TYPES.get(len(w), "tensor")


class WeightsOnlyLayout(ArchitectureBase):
    """Named tensors in file order, no forward (see the module docstring).

    Attributes: ``spec``, ``layout`` (one :class:`ParamInfo` per tensor, ``layer`` indexing ``layers``),
    ``layers`` (one ``{"type", "name"}`` per owning module, the type guessed), ``n_params``, ``reason`` (why
    no network could be built), ``stacks`` (names of the sequential stacks found, one of which
    ``stack=`` can open as a network), ``assumed``. ``input_shape`` is None and ``has_forward`` False.
    """

    kind = KIND
    has_forward = False
    input_shape = None

    def __init__(self, spec: Mapping[str, Any], allow_code: bool = False, base: Any = None):
        """``allow_code`` and ``base`` are the protocol's constructor options; a layout runs no code."""
        if not isinstance(spec, Mapping) or spec.get("kind") != KIND or not isinstance(spec.get("tensors"), list):
            raise ArchitectureError('a weights-only spec needs "kind": "weights-only" and a list of "tensors"')
        tensors = []
        for t in spec["tensors"]:
            if not isinstance(t, Mapping) or not isinstance(t.get("name"), str) or not isinstance(t.get("shape"), list):
                raise ArchitectureError(f"a weights-only tensor needs a name and a shape, got {t!r}")
            tensors.append((t["name"], tuple(int(s) for s in t["shape"]), str(t.get("role") or guess_role(t["name"]))))
        if not tensors:
            raise ArchitectureError("a weights-only layout needs at least one tensor")
        if len({name for name, _, _ in tensors}) != len(tensors):
            raise ArchitectureError("a weights-only layout names each tensor once")
        if any(s < 0 for _, shape, _ in tensors for s in shape):
            raise ArchitectureError("tensor shapes cannot be negative")
        self.reason = str(spec.get("reason") or "")
        self.stacks = [str(s) for s in spec.get("stacks") or []]
        self.spec: dict[str, Any] = {"kind": KIND, "tensors": [{"name": n, "shape": list(s), "role": r}
                                                              for n, s, r in tensors]}
        if self.reason:
            self.spec["reason"] = self.reason
        if self.stacks:
            self.spec["stacks"] = list(self.stacks)
        owners: dict[str, list[tuple[str, tuple[int, ...], str]]] = {}
        for t in tensors:
            owners.setdefault(t[0].rpartition(".")[0], []).append(t)
        index = {owner: i for i, owner in enumerate(owners)}
        self.layers = [{"type": _module_type(infos), "name": owner} for owner, infos in owners.items()]
        layout, offset = [], 0
        for name, shape, role in tensors:
            info = ParamInfo(name, shape, offset, index[name.rpartition(".")[0]], role)
            layout.append(info)
            offset += info.numel
        self.layout = tuple(layout)
        self.n_params = offset
        self.assumed = {"layers": "what each tensor is was guessed from its name and rank (no forward: the "
                                  "wiring between tensors is not recorded)"}

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, Sequence[int]], reason: str = "",
                    stacks: Sequence[str] = ()) -> WeightsOnlyLayout:
        """The layout of a state dict given as ``{name: shape}`` in file order."""
        return cls({"kind": KIND, "tensors": [{"name": k, "shape": list(s), "role": guess_role(k)}
                                              for k, s in shapes.items()],
                    "reason": reason, "stacks": list(stacks)})

    @property
    def weight_layers(self) -> list[int]:
        """Indices (into :attr:`layers`) of the modules whose weight is a matrix or a kernel."""
        return [i for i, layer in enumerate(self.layers) if layer["type"] in MODULE_TYPES.values()]

    @property
    def perm_spec(self) -> PermutationSpec:
        """Never: raises :class:`SymmetryError` (the wiring that decides which units may be permuted is unknown)."""
        raise SymmetryError("a weights-only layout records tensors but not how they are wired, so which hidden "
                            "units may be permuted is unknown: state the architecture (arch=<spec>, or "
                            "activation= / input_shape= / stack= where the tensors form sequential stacks) to "
                            "derive its symmetries")

    def flatten(self, state_dict: Mapping[str, torch.Tensor], by_order: bool = False,
                out: torch.Tensor | None = None) -> torch.Tensor:
        """A state dict with exactly these tensors -> float32 ``[P]``, into ``out`` when given (integer tensors and
        ``num_batches_tracked`` counters are not weights). ``by_order=True`` matches the floating tensors to
        the layout in order, whatever their names; shapes must agree either way."""
        tensors = {k: torch.as_tensor(v) for k, v in state_dict.items()
                   if not k.endswith("num_batches_tracked") and torch.as_tensor(v).is_floating_point()}
        if by_order:
            if len(tensors) != len(self.layout):
                raise ArchitectureError(f"state dict has {len(tensors)} tensors, the layout {len(self.layout)}")
            tensors = {p.name: t for p, t in zip(self.layout, tensors.values(), strict=True)}
        return self.pack(tensors, "this layout", out=out)

    def describe(self) -> str:
        """A one-line summary such as ``"weights only: 9 tensors in 5 modules, 4,610 params"``."""
        return f"weights only: {len(self.layout)} tensors in {len(self.layers)} modules, {self.n_params:,} params"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeightsOnlyLayout) and self.spec["tensors"] == other.spec["tensors"]

    def __hash__(self) -> int:
        return hash(json.dumps(self.spec["tensors"], sort_keys=True))
