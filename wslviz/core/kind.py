"""The architecture protocol as one abstract base: what every kind of network implements.

A zoo's weights are one float32 matrix ``[n_models, P]``; an *architecture* cuts a row into named tensors and,
where it can, runs it. Every kind (sequential specs, ``nn.Module`` networks, weights-only layouts, and any kind a
user registers with :func:`wslviz.core.protocol.register_kind`) subclasses :class:`ArchitectureBase` and so
offers the same things; code outside a kind's own module calls these and never asks which kind it holds:

- the flat layout (``layout``, ``n_params``, ``unflatten``, ``flatten``; from :class:`FlatLayout`), ``layers``
  (one dict per layer with at least ``"type"``), ``weight_layers``, ``input_shape``, ``assumed``, ``spec`` /
  ``to_json()`` / ``fingerprint``, ``describe()``;
- the permutation spec, ``perm_spec``, or :class:`~wslviz.core.permutation.SymmetryError` saying why there is none;
- a batched forward with optional activation capture, :meth:`ArchitectureBase.forward`, and what is built on it:
  :meth:`~ArchitectureBase.model_outputs`, :meth:`~ArchitectureBase.evaluate`,
  :meth:`~ArchitectureBase.evaluate_affine`, :meth:`~ArchitectureBase.evaluate_per_model` (generic chunked
  loops here; a kind with a faster formulation overrides them, as the sequential kind does with its hand-written
  kernels);
- BatchNorm: ``has_batchnorm``, :meth:`~ArchitectureBase.batchnorm_statistics` (the one reset every caller uses),
  :meth:`~ArchitectureBase.batchnorm_folds` and :meth:`~ArchitectureBase.repair_layers` (what REPAIR rescales);
- capabilities: ``has_forward``, ``knows_symmetries``, ``plain_stack`` (the layers are one sequential stack of
  typed layers, as metanetworks and INR renderers read them).

A new kind implements ``__init__(spec)``, ``layout``/``n_params``/``layers``/``spec``, ``describe``, ``flatten``
and, when it can run, ``build``, ``forward`` and ``perm_spec``: everything else has a default here. A ``flatten``
that takes ``out=`` (as :meth:`FlatLayout.pack` does) lets readers pack each checkpoint straight into its row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from wslviz.core.device import Device, resolve_device
from wslviz.core.layout import ArchitectureError, FlatLayout, NoForwardError
from wslviz.core.permutation import PermutationSpec, SymmetryError
from wslviz.core.tasks import Task

Progress = Callable[[int, int], None] | None
"""A progress callback ``progress(done, total)``; pages pass one that drives ``st.progress``."""
DEFAULT_CHUNK_BYTES = 2**28
"""Activation bytes a chunk of models may hold in the generic evaluation loops (256 MiB, as the module kind)."""


class RepairLayer(NamedTuple):
    """A layer whose output channels REPAIR rescales: the ``capture`` key of its output in :meth:`forward`
    (activations ``[B, N, C, ...]``), the weight whose rows are the channels, and the bias (None when absent)."""

    capture: Hashable
    weight: str
    bias: str | None


class BatchNormFold(NamedTuple):
    """A BatchNorm fed directly by a linear/conv layer: the layer's ``weight`` and ``bias`` (None when absent),
    the BatchNorm's ``gamma``, ``beta``, ``mean`` and ``var`` tensor names and its ``eps``."""

    weight: str
    bias: str | None
    gamma: str
    beta: str
    mean: str
    var: str
    eps: float


def require_forward(arch: Any, what: str = "This") -> None:
    """Raise :class:`NoForwardError` when ``arch`` cannot run (a weights-only layout), with one sentence saying
    that ``what`` (e.g. ``"Evaluation"``) needs a forward and how to supply one."""
    if getattr(arch, "has_forward", True):
        return
    raise NoForwardError(f"{what} needs to run the networks, but this zoo is a weights-only layout "
                         f"({arch.describe()}) with no forward: state the architecture "
                         "(wv.load_zoo(path, arch=<spec>), or activation= / input_shape= / stack= where the tensors "
                         "form sequential stacks; the same on the home page) and attach a task (a .npz with x and "
                         "y) to run it")


def task_split(arch: Any, task: Task | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [N, ...], y [N])`` of ``task``'s ``split``, checked against the architecture's input shape; raises
    ``ValueError`` for a zoo without a task or inputs of another shape."""
    if task is None:
        raise ValueError("this zoo has no task: attach evaluation data (a .npz with x and y) to evaluate it")
    x, y = task.split(split)
    if tuple(x.shape[1:]) != tuple(arch.input_shape):
        raise ValueError(f"task inputs have shape {list(x.shape[1:])}, the architecture expects "
                         f"{list(arch.input_shape)}")
    return x, y


def chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` cutting ``range(n)`` into pieces of ``chunk``."""
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def even_chunk(n_models: int, chunk: int) -> int:
    """``chunk`` made as even as possible: as many chunks of ``n_models``, of equal size."""
    chunk = min(max(chunk, 1), max(n_models, 1))
    return -(-n_models // -(-n_models // chunk)) if n_models else 1


class ArchitectureBase(FlatLayout):
    """The architecture protocol (see the module docstring); every kind subclasses it."""

    kind: ClassVar[str] = ""
    has_forward: ClassVar[bool] = True
    input_shape: tuple[int, ...] | None = None
    layers: list[dict[str, Any]]
    assumed: dict[str, str]

    # ---------------------------------------------------------------- capabilities
    @property
    def plain_stack(self) -> bool:
        """Whether ``layers`` is one sequential stack of typed layers run in order (a plain MLP/CNN)."""
        return False

    @property
    def knows_symmetries(self) -> bool:
        """Whether a permutation spec can be derived (``perm_spec`` does not raise)."""
        try:
            return self.perm_spec is not None
        except SymmetryError:
            return False

    @property
    def matches_activations(self) -> bool:
        """Whether activation matching can run: the forward captures the units of every permutation group."""
        return bool(self.has_forward) and self.knows_symmetries

    @property
    def has_invariants(self) -> bool:
        """Whether the kind has a continuous symmetry beyond ``perm_spec`` and offers features it leaves unchanged
        (:meth:`invariant_features`; LoRA adapters' GL(r))."""
        return False

    def canonical(self, weights: torch.Tensor) -> torch.Tensor:
        """``weights`` [N, P] each put in the canonical form of the kind's continuous symmetry, without a reference
        (LoRA adapters: SVD factors of each update); unchanged for kinds without one."""
        return weights

    def invariant_names(self) -> list[str]:
        """Column names of :meth:`invariant_features`."""
        raise SymmetryError(f"{self.describe()} offers no invariant features")

    def invariant_features(self, weights: torch.Tensor) -> Any:
        """Features ``[N, F]`` (numpy) of ``weights`` [N, P] that the kind's symmetry group leaves unchanged."""
        raise SymmetryError(f"{self.describe()} offers no invariant features")

    @property
    def capabilities(self) -> dict[str, bool]:
        """What this architecture can do: ``has_forward``, ``knows_symmetries``, ``has_batchnorm``, ``plain_stack``."""
        return {"has_forward": self.has_forward, "knows_symmetries": self.knows_symmetries,
                "has_batchnorm": self.has_batchnorm, "plain_stack": self.plain_stack}

    @property
    def has_batchnorm(self) -> bool:
        return any(layer.get("type") == "batchnorm" for layer in self.layers)

    @property
    def weight_layers(self) -> list[int]:
        """Indices (into ``layers``) of the linear and conv layers, in order."""
        return [i for i, layer in enumerate(self.layers) if layer.get("type") in ("linear", "conv1d", "conv2d")]

    def weight_name(self, layer: int) -> str:
        """The name of the weight tensor of ``layers[layer]`` (its matrix or kernel)."""
        found = [p.name for p in self.layout if p.layer == layer and p.role == "weight"]
        if not found:
            raise ArchitectureError(f"layer {layer} of {self.describe()} has no weight tensor")
        return found[0]

    @property
    def perm_spec(self) -> PermutationSpec:
        raise SymmetryError(f"{self.describe()} derives no permutation symmetries")

    # ---------------------------------------------------------------- running
    def build(self, weights: torch.Tensor | None = None) -> nn.Module:
        """An ``nn.Module`` of this architecture in eval mode, loaded with ``weights`` [P] when given."""
        raise NoForwardError(f"{self.describe()} has no network to build: state the architecture (arch=<spec>)")

    def probe_inputs(self, n: int = 256, seed: int = 0) -> torch.Tensor:
        """Deterministic probe inputs ``[n, *input_shape]``: standard normal unless the kind knows better."""
        require_forward(self, "Probing the network")
        return torch.randn(n, *self.input_shape, generator=torch.Generator().manual_seed(seed))

    @property
    def output_dim(self) -> int:
        """Outputs per input (the network run once on two probe inputs)."""
        with torch.no_grad():
            out = self.build()(self.probe_inputs(2))
        return math.prod(out.shape[1:])

    def forward(self, weights: torch.Tensor, x: torch.Tensor, capture: set | None = None, train: bool = False,
                device: Device = None) -> tuple[torch.Tensor, dict]:
        """Outputs ``[B, N, out]`` of ``weights`` [B, P] on ``x`` ([N, ...] shared, or [B, N, ...] one batch per
        model), and for each key in ``capture`` (a permutation group's ``capture``, a :class:`RepairLayer`'s) the
        activations ``[B, N, C, ...]`` with the units on axis 2. Differentiable; ``train`` uses batch statistics
        and dropout."""
        require_forward(self, "A forward pass")
        raise ArchitectureError(f"{type(self).__name__} declares a forward but does not implement forward()")

    def chunk_size(self, n_inputs: int, n_models: int) -> int:
        """Models per chunk in the evaluation loops: a chunk's activations within :data:`DEFAULT_CHUNK_BYTES`,
        estimated at 64 floats per input value (a kind that knows its activations better overrides this)."""
        per_model = max(1, 64 * 4 * math.prod(self.input_shape or (1,)) * max(n_inputs, 1))
        return even_chunk(n_models, DEFAULT_CHUNK_BYTES // per_model)

    @torch.no_grad()
    def model_outputs(self, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
                      progress: Progress = None, device: Device = None) -> torch.Tensor:
        """Outputs ``[B, N, out]`` of B models (``weights`` [B, P] or [P]) on inputs ``x`` [N, ...], in eval mode."""
        dev = resolve_device(device)
        single = weights.dim() == 1
        w = weights.unsqueeze(0) if single else weights
        chunk = chunk_size or self.chunk_size(len(x), len(w))
        outs = []
        for start, stop in chunks(len(w), chunk):
            outs.append(self.forward(w[start:stop].float(), x, device=dev)[0].cpu())
            if progress:
                progress(stop, len(w))
        out = torch.cat(outs) if outs else torch.zeros(0, len(x), self.output_dim)
        return out[0] if single else out

    @torch.no_grad()
    def evaluate(self, task: Task, weights: torch.Tensor, split: str = "test", chunk_size: int | None = None,
                 progress: Progress = None, device: Device = None) -> dict[str, torch.Tensor]:
        """Loss and accuracy of every model on a task split: ``weights [B, P] -> {"loss": [B], "accuracy": [B]}``
        (NaN accuracy for regression)."""
        x, y = task_split(self, task, split)
        single = weights.dim() == 1
        w = weights.unsqueeze(0) if single else weights
        chunk = chunk_size or self.chunk_size(len(x), len(w))
        dev = resolve_device(device)
        xd, yd = x.to(dev), y.to(dev)
        losses, correct = [], []
        for start, stop in chunks(len(w), chunk):
            out = self.forward(w[start:stop].float(), xd, device=dev)[0]
            loss, right = task.loss_and_correct(out, yd)
            losses.append(loss.cpu())
            correct.append(right.cpu())
            if progress:
                progress(stop, len(w))
        loss = torch.cat(losses) if losses else torch.zeros(0)
        acc = torch.cat(correct) / len(y) if correct else torch.zeros(0)
        if not task.is_classification:
            acc = torch.full_like(loss, float("nan"))
        result = {"loss": loss, "accuracy": acc}
        return {k: v[0] for k, v in result.items()} if single else result

    @torch.no_grad()
    def evaluate_affine(self, task: Task, origin: torch.Tensor, directions: torch.Tensor, coords: torch.Tensor,
                        split: str = "test", chunk_size: int | None = None, progress: Progress = None,
                        device: Device = None) -> dict[str, torch.Tensor]:
        """:meth:`evaluate` of the G models ``origin + coords @ directions`` (``origin`` [P], ``directions``
        [D, P], ``coords`` [G, D]: a line or plane through weight space), built chunk by chunk so that only one
        chunk of points is ever in memory."""
        origin, directions = origin.detach().double(), directions.detach().double()
        coords = torch.as_tensor(coords, dtype=torch.float64)
        x, _ = task_split(self, task, split)
        chunk = chunk_size or self.chunk_size(len(x), len(coords))
        parts: dict[str, list[torch.Tensor]] = {"loss": [], "accuracy": []}
        for start, stop in chunks(len(coords), chunk):
            points = (origin + coords[start:stop] @ directions).float()
            r = self.evaluate(task, points, split, chunk_size=len(points), device=device)
            for k in parts:
                parts[k].append(r[k])
            if progress:
                progress(stop, len(coords))
        return {k: torch.cat(v) if v else torch.zeros(0) for k, v in parts.items()}

    @torch.no_grad()
    def evaluate_per_model(self, task: Task, weights: torch.Tensor, split: str = "test",
                           device: Device = None) -> dict[str, torch.Tensor]:
        """Reference implementation: :meth:`build`, ``load_state_dict`` and forward, one model at a time (on
        ``device``): ``weights [B, P] -> {"loss": [B], "accuracy": [B]}`` on the CPU. Tests use it as ground
        truth for :meth:`evaluate`, benchmarks as the loop baseline."""
        dev = resolve_device(device)
        x, y = (t.to(dev) for t in task_split(self, task, split))
        model = self.build().to(dev)
        losses, accs = [], []
        for w in weights:
            model.load_state_dict(self.unflatten(w.float().to(dev)), strict=False)
            out = model(x).reshape(1, len(x), -1)
            losses.append(task.loss(out, y)[0].cpu())
            accs.append(task.correct(out, y)[0].cpu() / len(y))
        return {"loss": torch.stack(losses), "accuracy": torch.stack(accs)}

    # ---------------------------------------------------------------- BatchNorm and REPAIR
    def batchnorm_statistics(self, weights: torch.Tensor, x: torch.Tensor, chunk_size: int | None = None,
                             device: Device = None) -> torch.Tensor:
        """``weights`` [B, P] with every BatchNorm's running mean and (unbiased) variance replaced by the
        statistics of its input over ``x`` [N, ...] (Ioffe & Szegedy 2015, Sec. 3.1). Networks without BatchNorm
        come back unchanged (a copy)."""
        if self.has_batchnorm:
            raise ArchitectureError(f"{type(self).__name__} has BatchNorm but does not recompute its statistics")
        return weights.detach().float().clone()

    def repair_layers(self) -> list[RepairLayer]:
        """The layers whose output channels REPAIR rescales, in forward order: with BatchNorm the BatchNorm
        layers, else the hidden linear/conv layers (not the outputs)."""
        return []

    def batchnorm_folds(self) -> list[BatchNormFold]:
        """Every BatchNorm fed directly by a linear/conv layer (what BatchNorm-aware weight matching folds)."""
        return []
