"""LoRA adapters as an architecture kind: the low-rank updates ``delta_W = B A`` of one base model's weights.

A LoRA adapter (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) adds to each target
weight ``W [out, in]`` of a frozen base model the update ``delta_W = (alpha / r) B A`` with ``A [r, in]`` and
``B [out, r]``. A zoo of adapters of one base is a weight space of its own: its rows hold every module's ``A`` and
``B`` (here with the scaling ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA, already multiplied into ``B``, so
that ``delta_W = B A`` whatever each adapter's rank and alpha), DoRA's magnitude vectors, and any full tensors saved
beside them (PEFT's ``modules_to_save``, e.g. a classifier head).

Only the product matters: for any invertible ``G [r, r]``, ``(B G, G^-1 A)`` is the same adapter (the GL(r)
symmetry; Putterman et al., "Learning on LoRAs: GL-equivariant processing of low-rank weight spaces", 2024). So
comparing adapters by raw ``A`` and ``B`` is meaningless; this module gives what is invariant
(:meth:`LoraArchitecture.deltas`, :meth:`~LoraArchitecture.invariant_features`: singular values, norms and each
module's share of the energy) and a canonical form (:meth:`~LoraArchitecture.canonical`: ``B = U sqrt(S)``,
``A = sqrt(S) V^T`` from the SVD of ``delta_W``, signs fixed), and applies group elements
(:meth:`~LoraArchitecture.apply_gl`). The permutation (and scale/sign) subgroup of GL(r) is the kind's
``perm_spec``, so weight matching and random symmetries work on adapters as on any network.

Adapters of different ranks share one layout: each module holds the largest rank in the zoo, the smaller ones
padded with zero rows of ``A`` and zero columns of ``B`` (which leaves ``B A`` exactly unchanged).

With the base model (its architecture spec and weights, carried in the spec) the adapted network runs: the
forward merges every row into the base weights (``W + delta_W``, or DoRA's ``m (W + delta_W) / ||W + delta_W||``
with the norm over each output unit's inputs) and runs the base. Without it the kind has no forward, like a
weights-only layout. The spec is JSON-able::

    {"kind": "lora", "base_model": "digits-mlp",
     "modules": [{"name": "0", "rank": 8, "a_shape": [8, 64], "b_shape": [32, 8], "target": "0.weight",
                  "target_shape": [32, 64], "transpose": false, "dora": false}, ...],
     "extra": [{"name": "2.bias", "shape": [10]}],
     "base": {"arch": {...base spec...}, "weights": "<base64 of float32 little-endian>"}}

``transpose`` marks targets stored ``[in, out]`` (GPT-2's ``Conv1D``, PEFT's ``fan_in_fan_out``) and embeddings
(whose ``lora_embedding_B @ lora_embedding_A`` is the transposed update); convolutions flatten ``A`` to
``[r, in * kh * kw]`` and ``B`` to ``[out, r]``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from wslviz.core.device import Device
from wslviz.core.kind import ArchitectureBase
from wslviz.core.layout import ArchitectureError, NoForwardError, ParamInfo
from wslviz.core.permutation import AxisRef, PermGroup, PermutationSpec, SymmetryError

KIND = "lora"
GL_KINDS = ("general", "permutation", "scaling", "orthogonal")
"""The group elements :func:`random_gl` draws: any invertible matrix, or the special cases."""


def encode_weights(weights: torch.Tensor) -> str:
    """A float32 vector as base64 text (exact; how the spec carries the base model's weights)."""
    return base64.b64encode(weights.detach().float().contiguous().numpy().astype("<f4").tobytes()).decode()


def decode_weights(text: str, n: int) -> torch.Tensor:
    """The inverse of :func:`encode_weights`, checked to hold ``n`` values."""
    try:
        raw = base64.b64decode(text.encode(), validate=True)
    except (ValueError, TypeError):
        raise ArchitectureError("the LoRA base weights are not valid base64") from None
    if len(raw) != 4 * n:
        raise ArchitectureError(f"the LoRA base weights hold {len(raw) // 4} values, its architecture {n}")
    return torch.from_numpy(np.frombuffer(raw, dtype="<f4").copy())


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise ArchitectureError(f"{what} must be a non-empty list of sizes, got {value!r}")
    if any(not isinstance(v, int) or v < 1 for v in value):
        raise ArchitectureError(f"{what} must hold positive integers, got {value!r}")
    return tuple(value)


def _module(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ArchitectureError(f"a LoRA module needs a name, got {entry!r}")
    name = entry["name"]
    a, b = _shape(entry.get("a_shape"), f"{name}: a_shape"), _shape(entry.get("b_shape"), f"{name}: b_shape")
    target = _shape(entry.get("target_shape"), f"{name}: target_shape")
    r = a[0]
    if len(b) < 2 or b[1] != r or any(s != 1 for s in b[2:]):
        raise ArchitectureError(f"{name}: B {list(b)} does not fit A {list(a)} (B is [out, r] or [out, r, 1, 1])")
    rows, cols = (math.prod(a[1:]), b[0]) if entry.get("transpose") else (b[0], math.prod(a[1:]))
    if rows * cols != math.prod(target) or target[0] != rows:
        raise ArchitectureError(f"{name}: B A gives {b[0]} x {math.prod(a[1:])}, the target weight is {list(target)}")
    return {"name": name, "rank": int(entry.get("rank", r)), "a_shape": list(a), "b_shape": list(b),
            "target": str(entry.get("target") or f"{name}.weight"), "target_shape": list(target),
            "transpose": bool(entry.get("transpose", False)), "dora": bool(entry.get("dora", False))}


class LoraArchitecture(ArchitectureBase):
    """LoRA adapters of one base model (see the module docstring).

    Attributes: ``spec``, ``modules`` (the checked module entries), ``layout`` (per module ``<name>.lora_A``,
    ``<name>.lora_B`` and, for DoRA, ``<name>.lora_magnitude``; then the extra tensors), ``layers`` (one
    ``{"type": "lora", "name", "rank"}`` per module, one ``{"type": "tensor", "name"}`` per extra tensor),
    ``base_arch`` and ``base_weights`` (None without a base), ``input_shape`` (the base's).
    """

    kind = KIND

    def __init__(self, spec: Mapping[str, Any], allow_code: bool = False, base: Any = None):
        """``allow_code`` and ``base`` are the protocol's options, passed on to the base model's spec."""
        if not isinstance(spec, Mapping) or spec.get("kind") != KIND or not isinstance(spec.get("modules"), list):
            raise ArchitectureError('a LoRA spec needs "kind": "lora" and a list of "modules"')
        self.modules = [_module(m) for m in spec["modules"]]
        if not self.modules:
            raise ArchitectureError("a LoRA adapter needs at least one module")
        extra = []
        for t in spec.get("extra") or []:
            if not isinstance(t, Mapping) or not isinstance(t.get("name"), str):
                raise ArchitectureError(f"an extra tensor needs a name and a shape, got {t!r}")
            extra.append({"name": t["name"], "shape": list(_shape(t.get("shape"), t["name"]))})
        self.spec: dict[str, Any] = {"kind": KIND, "base_model": str(spec.get("base_model") or ""),
                                     "modules": self.modules, "extra": extra}
        layout, layers, offset = [], [], 0

        def add(name: str, shape: Sequence[int], role: str) -> None:
            nonlocal offset
            layout.append(ParamInfo(name, tuple(shape), offset, len(layers) - 1, role))
            offset += math.prod(shape)

        for m in self.modules:
            layers.append({"type": "lora", "name": m["name"], "rank": m["a_shape"][0]})
            add(f"{m['name']}.lora_A", m["a_shape"], "weight")
            add(f"{m['name']}.lora_B", m["b_shape"], "weight")
            if m["dora"]:
                add(f"{m['name']}.lora_magnitude", [m["b_shape"][0]], "other")
        for t in extra:
            layers.append({"type": "tensor", "name": t["name"]})
            add(t["name"], t["shape"], "bias" if t["name"].endswith("bias") else "weight")
        if len({p.name for p in layout}) != len(layout):
            raise ArchitectureError("a LoRA layout names each tensor once")
        self.layout, self.layers, self.n_params = tuple(layout), layers, offset
        self.base_arch: ArchitectureBase | None = None
        self.base_weights: torch.Tensor | None = None
        self.has_forward, self.input_shape = False, None
        self.assumed = {"scaling": "each adapter's alpha / r (alpha / sqrt(r) with rsLoRA) is multiplied into B, "
                                   "so delta_W = B A"}
        entry = spec.get("base")
        if entry:
            from wslviz.core.protocol import from_spec

            if not isinstance(entry, Mapping) or not isinstance(entry.get("arch"), Mapping):
                raise ArchitectureError('a LoRA base needs "arch" (its architecture spec) and "weights" or '
                                        '"checkpoint"')
            arch = from_spec(entry["arch"], allow_code=allow_code, base=base)
            if entry.get("checkpoint"):
                self._set_base(arch, read_base(arch, str(entry["checkpoint"])), str(entry["checkpoint"]))
            else:
                self._set_base(arch, decode_weights(str(entry.get("weights") or ""), arch.n_params))

    def _set_base(self, arch: ArchitectureBase, weights: torch.Tensor, checkpoint: str | None = None) -> None:
        names = {p.name: p.shape for p in arch.layout}
        if weights.shape != (arch.n_params,):
            raise ArchitectureError(f"the base weights have shape {list(weights.shape)}, its architecture "
                                    f"{arch.n_params} parameters")
        for m in self.modules:
            if names.get(m["target"]) != tuple(m["target_shape"]):
                raise ArchitectureError(f"module {m['name']}: the base model has no tensor {m['target']} of shape "
                                        f"{m['target_shape']}")
        for t in self.spec["extra"]:
            if names.get(t["name"]) != tuple(t["shape"]):
                raise ArchitectureError(f"saved tensor {t['name']}: the base model has none of shape {t['shape']}")
        self.base_arch, self.base_weights = arch, weights.detach().float()
        self.spec["base"] = ({"arch": arch.spec, "checkpoint": checkpoint} if checkpoint else
                             {"arch": arch.spec, "weights": encode_weights(weights)})
        self.has_forward, self.input_shape = arch.has_forward, arch.input_shape

    @classmethod
    def with_base(cls, spec: Mapping[str, Any], base_arch: ArchitectureBase, base_weights: torch.Tensor,
                  checkpoint: str | None = None) -> LoraArchitecture:
        """The kind of ``spec`` running on ``base_arch`` (any kind, a module instance's included) with
        ``base_weights`` [P_base]. The spec carries the weights themselves, or with ``checkpoint`` (the base's
        ``.safetensors`` file or a folder of them, as :func:`read_base` reads) only that path: a real-size base
        (GPT-2's 124M parameters) would make every spec, ``zoo.json`` and fingerprint hundreds of megabytes."""
        out = cls({k: v for k, v in spec.items() if k != "base"})
        out._set_base(base_arch, torch.as_tensor(base_weights), checkpoint)
        return out

    # ---------------------------------------------------------------- the protocol
    def describe(self) -> str:
        ranks = sorted({m["rank"] for m in self.modules})
        on = f" on {self.spec['base_model']}" if self.spec["base_model"] else ""
        return (f"LoRA{on}: {len(self.modules)} modules, rank {'/'.join(map(str, ranks))}, "
                f"{self.n_params:,} params" + ("" if self.has_forward else " (no base model: no forward)"))

    def flatten(self, state_dict: Mapping[str, torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
        """``{"<module>.lora_A": ..., "<module>.lora_B": ..., extras}`` -> float32 ``[P]`` (into ``out`` when
        given)."""
        return self.pack(state_dict, "this LoRA layout", out=out)

    @property
    def weight_layers(self) -> list[int]:
        return []

    @property
    def perm_spec(self) -> PermutationSpec:
        """The permutation, scale and sign subgroup of GL(r) per module: rank unit ``k`` is row ``k`` of ``A``
        and column ``k`` of ``B`` (a scale ``s`` multiplies the row and divides the column)."""
        groups = []
        for i, m in enumerate(self.modules):
            a, b = f"{m['name']}.lora_A", f"{m['name']}.lora_B"
            groups.append(PermGroup(name=f"{m['name']}.rank", layer=i, size=m["a_shape"][0],
                                    refs=(AxisRef(a, 0, power=1), AxisRef(b, 1, power=-1, incoming=False)),
                                    kinds=("permutation", "scale", "sign"), activation=None, capture=i))
        return PermutationSpec(tuple(groups), self.n_params)

    def build(self, weights: torch.Tensor | None = None) -> torch.nn.Module:
        """The base network with ``weights`` [P] (one adapter) merged in."""
        base = self._require_base("Building the adapted network")
        merged = self.merged(weights.unsqueeze(0))[0] if weights is not None else None
        return base.build(merged)

    def forward(self, weights: torch.Tensor, x: torch.Tensor, capture: set | None = None, train: bool = False,
                device: Device = None) -> tuple[torch.Tensor, dict]:
        """The base network's outputs with each adapter merged in (differentiable in ``weights``)."""
        base = self._require_base("A forward pass")
        if capture:
            raise SymmetryError("a LoRA adapter's rank units are not activations of the merged network: align "
                                "adapters by weight matching or by canonicalisation (LoraArchitecture.canonical)")
        return base.forward(self.merged(weights), x, train=train, device=device)

    def chunk_size(self, n_inputs: int, n_models: int) -> int:
        return self._require_base("Evaluation").chunk_size(n_inputs, n_models)

    def probe_inputs(self, n: int = 256, seed: int = 0) -> torch.Tensor:
        return self._require_base("Probing the network").probe_inputs(n, seed)

    @property
    def output_dim(self) -> int:
        return self._require_base("Probing the network").output_dim

    def _require_base(self, what: str) -> ArchitectureBase:
        if self.base_arch is None or not self.base_arch.has_forward:
            named = self.spec["base_model"] or "not named"
            raise NoForwardError(f"{what} needs the base model these adapters adapt ({named}), and this zoo does "
                                 "not carry it: open the adapters with base= (a base architecture and its weights)")
        return self.base_arch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoraArchitecture) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    # ---------------------------------------------------------------- LoRA's own views
    def factors(self, weights: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per module ``(B [N, out, r], A [N, r, K])`` as matrices (conv kernels flattened), for ``weights`` [N, P]."""
        parts = self.unflatten(weights)
        out = {}
        for m in self.modules:
            n, r = weights.shape[0], m["a_shape"][0]
            out[m["name"]] = (parts[f"{m['name']}.lora_B"].reshape(n, -1, r),
                              parts[f"{m['name']}.lora_A"].reshape(n, r, -1))
        return out

    def deltas(self, weights: torch.Tensor, oriented: bool = False) -> dict[str, torch.Tensor]:
        """Per module the update ``delta_W = B A`` of every adapter, ``[N, *target_shape]`` (float64) as the
        target weight stores it; ``oriented=True`` gives the ``[N, out, K]`` matrices before any transpose."""
        out = {}
        for m, (b, a) in zip(self.modules, self.factors(weights.double()).values(), strict=True):
            d = b @ a
            if not oriented:
                d = (d.transpose(1, 2) if m["transpose"] else d).reshape(len(d), *m["target_shape"])
            out[m["name"]] = d
        return out

    def flat_deltas(self, weights: torch.Tensor) -> torch.Tensor:
        """Every adapter's updates ``[N, out, K]`` of all modules, flattened and concatenated: ``[N, D]`` (float64),
        the vectors merges combine and update distances compare."""
        return torch.cat([d.reshape(len(weights), -1) for d in self.deltas(weights, oriented=True).values()], 1)

    def merged(self, weights: torch.Tensor) -> torch.Tensor:
        """The base model's weights ``[N, P_base]`` with each adapter merged in (float32; differentiable)."""
        base = self._require_base("Merging adapters into the base model")
        w = self.base_weights.to(weights.device).expand(len(weights), -1).clone()
        slots = {p.name: p for p in base.layout}
        parts = self.unflatten(weights)
        for m, d in zip(self.modules, self.deltas(weights.float()).values(), strict=True):
            slot = slots[m["target"]]
            new = w[:, slot.slice].reshape(len(w), *slot.shape) + d.to(w.dtype)
            if m["dora"]:
                oriented = new.transpose(1, 2) if m["transpose"] else new
                norm = oriented.flatten(2).norm(dim=2).reshape(len(w), -1, *[1] * (oriented.dim() - 2))
                oriented = parts[f"{m['name']}.lora_magnitude"].reshape(norm.shape) / norm * oriented
                new = oriented.transpose(1, 2) if m["transpose"] else oriented
            w[:, slot.slice] = new.reshape(len(w), -1)
        for t in self.spec["extra"]:
            w[:, slots[t["name"]].slice] = parts[t["name"]].reshape(len(w), -1)
        return w

    def svd(self, weights: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per module the thin SVD of ``delta_W`` (oriented ``[out, K]``): ``(U [N, out, r], S [N, r],
        V [N, K, r])`` in float64, computed through QR of the factors (cost linear in out and K). Signs are
        fixed: the entry of largest magnitude of each column of ``U`` is positive."""
        out = {}
        for name, (b, a) in self.factors(weights.double()).items():
            qb, rb = torch.linalg.qr(b)
            qa, ra = torch.linalg.qr(a.transpose(1, 2))
            uc, s, vch = torch.linalg.svd(rb @ ra.transpose(1, 2))
            u, v = qb @ uc, qa @ vch.transpose(1, 2)
            pick = u.abs().argmax(dim=1, keepdim=True)
            sign = torch.where(torch.gather(u, 1, pick) < 0, -1.0, 1.0).to(u.dtype)
            out[name] = (u * sign, s, v * sign)
        return out

    def canonical(self, weights: torch.Tensor) -> torch.Tensor:
        """Every adapter in its canonical form, ``[N, P]``: ``B = U sqrt(S)``, ``A = sqrt(S) V^T`` per module (the
        GL(r) orbit's representative; unique where the singular values are distinct and non-zero). Other tensors
        are kept."""
        out = weights.detach().double().clone()
        slots = {p.name: p for p in self.layout}
        for m, (u, s, v) in zip(self.modules, self.svd(weights).values(), strict=True):
            root = s.sqrt().unsqueeze(1)
            out[:, slots[f"{m['name']}.lora_B"].slice] = (u * root).reshape(len(out), -1)
            out[:, slots[f"{m['name']}.lora_A"].slice] = (v * root).transpose(1, 2).reshape(len(out), -1)
        return out.float()

    def apply_gl(self, weights: torch.Tensor, elements: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B G, G^-1 A)`` per module for ``elements`` ``{module name: G [r, r] or [N, r, r]}`` (modules not
        named stay); ``weights`` [N, P] -> [N, P]. The products ``B A`` are unchanged up to rounding."""
        out = weights.detach().double().clone()
        slots = {p.name: p for p in self.layout}
        factors = self.factors(out)
        for name, g in elements.items():
            if name not in factors:
                raise SymmetryError(f"no LoRA module {name!r}; modules: {', '.join(factors)}")
            b, a = factors[name]
            g = torch.as_tensor(g, dtype=torch.float64).expand(len(out), a.shape[1], a.shape[1])
            new_b, new_a = b @ g, torch.linalg.solve(g, a)
            out[:, slots[f"{name}.lora_B"].slice] = new_b.reshape(len(out), -1)
            out[:, slots[f"{name}.lora_A"].slice] = new_a.reshape(len(out), -1)
        return out.float()

    def random_gl(self, kind: str = "general", seed: int = 0) -> dict[str, torch.Tensor]:
        """One random element of GL(r) per module (float64 ``[r, r]``): ``general`` (a Gaussian matrix plus
        shear, a rotation and a diagonal scaling), ``permutation``, ``scaling`` (diagonal, random signs,
        magnitudes in [0.25, 4]) or ``orthogonal`` (Q of a Gaussian matrix's QR)."""
        if kind not in GL_KINDS:
            raise SymmetryError(f"unknown GL(r) element kind {kind!r}; known: {', '.join(GL_KINDS)}")
        gen = torch.Generator().manual_seed(seed)
        out = {}
        for m in self.modules:
            r = m["a_shape"][0]
            match kind:
                case "permutation":
                    g = torch.eye(r, dtype=torch.float64)[torch.randperm(r, generator=gen)]
                case "scaling":
                    mag = 4.0 ** (2 * torch.rand(r, generator=gen, dtype=torch.float64) - 1)
                    g = torch.diag(mag * torch.where(torch.rand(r, generator=gen) < 0.5, -1.0, 1.0).double())
                case "orthogonal":
                    g = torch.linalg.qr(torch.randn(r, r, generator=gen, dtype=torch.float64))[0]
                case _:  # a scaled, sheared rotation: far from the identity, condition number below about 12
                    mag = 2.0 ** (2 * torch.rand(r, generator=gen, dtype=torch.float64) - 1)
                    shear = torch.eye(r, dtype=torch.float64) + 0.5 * torch.randn(
                        r, r, generator=gen, dtype=torch.float64) / math.sqrt(r)
                    g = torch.diag(mag) @ shear @ torch.linalg.qr(torch.randn(r, r, generator=gen,
                                                                              dtype=torch.float64))[0]
            out[m["name"]] = g
        return out

    @property
    def has_invariants(self) -> bool:
        return True

    @property
    def matches_activations(self) -> bool:
        return False  # rank units are not activations of the merged network

    def invariant_names(self) -> list[str]:
        """Column names of :meth:`invariant_features`."""
        names = []
        for m in self.modules:
            n, r = m["name"], m["a_shape"][0]
            names += [f"{n}.sv{i}" for i in range(r)] + [f"{n}.norm", f"{n}.energy"]
            names += [f"{n}.U_sqrtS[{i},{k}]" for i in range(m["b_shape"][0]) for k in range(r)]
            names += [f"{n}.sqrtS_Vt[{k},{j}]" for k in range(r) for j in range(math.prod(m["a_shape"][1:]))]
        return names

    def invariant_features(self, weights: torch.Tensor) -> np.ndarray:
        """GL(r)-invariant features ``[N, F]`` (:meth:`invariant_names`): per module the singular values of
        ``delta_W`` (descending; the DSiRe features of Salama et al. 2024), its Frobenius norm, its share of the
        adapter's total squared norm, and its canonical factors ``U sqrt(S)`` and ``sqrt(S) V^T`` (signs fixed as
        in :meth:`svd`: where an update points, not only how large it is)."""
        svd = self.svd(weights)
        sq = torch.stack([s.square().sum(1) for _, s, _ in svd.values()], 1)
        total = sq.sum(1, keepdim=True).clamp_min(1e-300)
        cols = []
        for i, (u, s, v) in enumerate(svd.values()):
            root = s.sqrt().unsqueeze(1)
            cols += [s, sq[:, i:i + 1].sqrt(), sq[:, i:i + 1] / total, (u * root).flatten(1),
                     (v * root).transpose(1, 2).flatten(1)]
        return torch.cat(cols, 1).numpy()


def read_base(arch: ArchitectureBase, checkpoint: str) -> torch.Tensor:
    """The base model's weights ``[P]`` from ``checkpoint``: a ``.safetensors`` file, or a folder whose
    ``.safetensors`` files together hold the state dict (a Hugging Face model folder, shards included)."""
    from pathlib import Path

    from safetensors.torch import load_file

    where = Path(checkpoint)
    files = [where] if where.is_file() else sorted(where.glob("*.safetensors")) if where.is_dir() else []
    if not files:
        raise ArchitectureError(f"the LoRA base checkpoint {checkpoint} is gone (no .safetensors there)")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        tensors.update(load_file(str(f)))
    return arch.flatten(tensors)


def lora_spec(modules: Sequence[Mapping[str, Any]], extra: Sequence[Mapping[str, Any]] = (),
              base_model: str = "") -> dict[str, Any]:
    """A LoRA spec from module entries (``name``, ``a_shape``, ``b_shape``, ``target_shape`` and optionally
    ``target``, ``rank``, ``transpose``, ``dora``; see the module docstring)."""
    return {"kind": KIND, "base_model": base_model, "modules": [dict(m) for m in modules],
            "extra": [dict(t) for t in extra]}


def linear_targets(arch: ArchitectureBase, names: Sequence[str], rank: int) -> list[dict[str, Any]]:
    """LoRA module entries of rank ``rank`` on the linear layers of ``arch`` whose module names are ``names``
    (e.g. ``["0", "2"]`` of a sequential MLP: their weights ``0.weight``, ``2.weight`` are the targets)."""
    shapes = {p.name: p.shape for p in arch.layout}
    out = []
    for name in names:
        shape = shapes.get(f"{name}.weight")
        if shape is None or len(shape) != 2:
            raise ArchitectureError(f"{arch.describe()} has no linear weight {name}.weight")
        out.append({"name": name, "a_shape": [rank, shape[1]], "b_shape": [shape[0], rank],
                    "target_shape": list(shape)})
    return out


__all__ = ["GL_KINDS", "KIND", "LoraArchitecture", "decode_weights", "encode_weights", "linear_targets",
           "lora_spec", "read_base"]
