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
"""
