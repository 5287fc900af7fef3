"""Weight Space Understanding: symmetries, alignment and the loss landscape between models.

- :mod:`~wslviz.understand.symmetry`: group elements (permutations, ReLU scales, sign flips), canonical forms;
- :mod:`~wslviz.understand.align`: weight and activation matching, aligned merging, BatchNorm reset;
- :mod:`~wslviz.understand.landscape`: interpolation paths and barriers (and the helpers the next two share);
- :mod:`~wslviz.understand.surfaces`: planes through models, random filter-normalised planes, trajectories;
- :mod:`~wslviz.understand.curves`: trained Bezier curves between two models.

May import ``core`` and ``formats``.
"""
