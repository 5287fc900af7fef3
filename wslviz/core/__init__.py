"""The foundation: architectures, tasks, batched evaluation, the ``Zoo`` and batched training.

- :mod:`~wslviz.core.layout`: the flat parameter layout (``ParamInfo``) and the layer vocabulary;
- :mod:`~wslviz.core.protocol`: the architecture protocol every function takes (kinds: sequential, module,
  weights-only), ``from_spec``, ``infer_layout``, ``require_forward``;
- :mod:`~wslviz.core.arch`: the sequential spec (``Architecture``) <-> ``nn.Module``, ``infer_architecture``;
- :mod:`~wslviz.core.stacks`: sequential stacks in state dicts of any key naming, and what they leave assumed;
- :mod:`~wslviz.core.weights_only`: named tensors without a forward (``WeightsOnlyLayout``);
- :mod:`~wslviz.core.permutation`: which tensor axes of an architecture share a permutation;
- :mod:`~wslviz.core.tasks`: evaluation data (``Task``); :mod:`~wslviz.core.batched`: the batched forward pass
  (one formulation per layer type); :mod:`~wslviz.core.evaluation`: the evaluator (chunks, streams, planes);
- :mod:`~wslviz.core.zoo`: the ``Zoo`` dataclass; :mod:`~wslviz.core.training`: ``make-zoo`` recipes.

Imports nothing else of wslviz: every other subpackage builds on this one.

The names in ``__all__`` are this subpackage's face, imported from its modules; the modules are its
implementation (their own public names are documented there, for code inside wslviz and for the curious).
"""

from __future__ import annotations

from wslviz.core.arch import Architecture, infer_architecture, mlp_spec
from wslviz.core.evaluation import evaluate, evaluate_affine, evaluate_per_model, forward, model_outputs
from wslviz.core.kind import ArchitectureBase
from wslviz.core.layout import ArchitectureError, NoForwardError, ParamInfo
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.permutation import PermutationSpec, SymmetryError
from wslviz.core.protocol import ArchitectureLike, from_module, from_spec, infer_layout, register_kind, require_forward
from wslviz.core.report import Report
from wslviz.core.tasks import Task, TaskError, make_task
from wslviz.core.weights_only import WeightsOnlyLayout
from wslviz.core.zoo import Zoo

__all__ = ["Architecture", "ArchitectureBase", "ArchitectureError", "ArchitectureLike", "ModuleArchitecture",
           "NoForwardError", "ParamInfo", "PermutationSpec", "Report", "SymmetryError", "Task", "TaskError",
           "WeightsOnlyLayout", "Zoo", "evaluate", "evaluate_affine", "evaluate_per_model", "forward", "from_module",
           "from_spec", "infer_architecture", "infer_layout", "make_task", "mlp_spec", "model_outputs",
           "register_kind", "require_forward"]
