"""Weight Space Understanding: symmetries, alignment and the loss landscape between models.

- :mod:`~wslviz.understand.symmetry`: group elements (permutations, ReLU scales, sign flips), canonical forms;
- :mod:`~wslviz.understand.align`: weight and activation matching, aligned merging, BatchNorm reset;
- :mod:`~wslviz.understand.landscape`: interpolation paths, barriers, planes, trajectories, curves.

May import ``core`` and ``formats``.
"""
