"""The foundation: architectures, tasks, batched evaluation, the ``Zoo`` and batched training.

- :mod:`~wslviz.core.kind`: the architecture protocol, ``ArchitectureBase``, which every kind implements;
  :mod:`~wslviz.core.protocol`: the registry of kinds (``from_spec``, ``register_kind``, ``from_module``,
  ``infer_layout``);
- the kinds: :mod:`~wslviz.core.arch` (sequential specs, ``Architecture``; its CPU kernels in
  :mod:`~wslviz.core.batched` and :mod:`~wslviz.core.seq_eval`), :mod:`~wslviz.core.module_arch` (any
  ``nn.Module``; its forward in :mod:`~wslviz.core.module_eval`, its graph in :mod:`~wslviz.core.fx_graph`,
  its derived permutation spec in :mod:`~wslviz.core.fx_spec` over :mod:`~wslviz.core.fx_units`; built-in
  families in :mod:`~wslviz.core.builtins`), :mod:`~wslviz.core.weights_only` (named tensors, no forward);
- :mod:`~wslviz.core.layout`: the flat parameter layout (``ParamInfo``) and the layer vocabulary;
  :mod:`~wslviz.core.stacks`: sequential stacks in state dicts of any key naming;
  :mod:`~wslviz.core.permutation`: which tensor axes share a permutation, and the one table of which
  elementwise ops let which unit symmetry pass;
- :mod:`~wslviz.core.evaluation`: the public entry points that run any kind (``evaluate``, ``model_outputs``,
  ``forward``, ...); :mod:`~wslviz.core.tasks`: evaluation data (``Task``); :mod:`~wslviz.core.device`;
- :mod:`~wslviz.core.zoo`: the ``Zoo`` dataclass; :mod:`~wslviz.core.report`: the typed results' base;
  :mod:`~wslviz.core.training`: ``make-zoo`` recipes.

Imports nothing else of wslviz: every other subpackage builds on this one.

The names in ``__all__`` are this subpackage's face, imported from its modules; the modules are its
implementation (their own public names are documented there, for code inside wslviz and for the curious).
"""

from __future__ import annotations

from wslviz.core.arch import Architecture, infer_architecture, mlp_spec
from wslviz.core.evaluation import evaluate, evaluate_affine, evaluate_per_model, forward, model_outputs
from wslviz.core.kind import ArchitectureBase
from wslviz.core.layout import ArchitectureError, NoForwardError, ParamInfo
from wslviz.core.lora import LoraArchitecture, lora_spec
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.permutation import PermutationSpec, SymmetryError
from wslviz.core.protocol import ArchitectureLike, from_module, from_spec, infer_layout, register_kind, require_forward
from wslviz.core.report import Report
from wslviz.core.tasks import Task, TaskError, make_task
from wslviz.core.weights_only import WeightsOnlyLayout
from wslviz.core.zoo import Zoo

__all__ = ["Architecture", "ArchitectureBase", "ArchitectureError", "ArchitectureLike", "LoraArchitecture",
           "ModuleArchitecture",
           "NoForwardError", "ParamInfo", "PermutationSpec", "Report", "SymmetryError", "Task", "TaskError",
           "WeightsOnlyLayout", "Zoo", "evaluate", "evaluate_affine", "evaluate_per_model", "forward", "from_module",
           "from_spec", "infer_architecture", "infer_layout", "lora_spec", "make_task", "mlp_spec", "model_outputs",
           "register_kind", "require_forward"]
