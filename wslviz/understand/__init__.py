"""Weight Space Understanding: symmetries, alignment and the loss landscape between models.

- :mod:`~wslviz.understand.symmetry`: group elements (permutations, ReLU scales, sign flips), canonical forms;
- :mod:`~wslviz.understand.align`: weight and activation matching, aligned merging, BatchNorm reset;
- :mod:`~wslviz.understand.landscape`: interpolation paths and barriers (and the helpers the next two share);
- :mod:`~wslviz.understand.surfaces`: planes through models, random filter-normalised planes, trajectories;
- :mod:`~wslviz.understand.curves`: trained Bezier curves between two models.

May import ``core`` and ``formats``.

(``repair`` and ``lineage`` stay the modules' names here: their functions are ``wslviz.understand.repair.repair``
and ``wslviz.understand.lineage.lineage``, the latter also ``wv.lineage``.)
The names in ``__all__`` are this subpackage's face, imported from its modules; the modules are its
implementation (their own public names are documented there, for code inside wslviz and for the curious).
"""

from __future__ import annotations

from wslviz.understand.align import (
    activation_matching,
    align_to_average,
    align_zoo,
    matching_matrices,
    weight_matching,
)
from wslviz.understand.curves import bezier_curve
from wslviz.understand.inversion import Inversion, distil, invert
from wslviz.understand.landscape import (
    accuracy_barrier,
    barrier_matrix,
    barrier_table,
    barriers,
    interpolate,
    loss_barrier,
    pair_barriers,
    paths,
)
from wslviz.understand.lineage import Lineage
from wslviz.understand.lowrank import gl_effects, pair_distances, random_coordinates, rank_agreement
from wslviz.understand.reconstruction import Reconstruction, reconstruct_training_data
from wslviz.understand.repair import repair_to, reset_batchnorm
from wslviz.understand.summaries import AlignmentReport, alignment_report
from wslviz.understand.surfaces import filter_normalized_directions, plane, random_line, random_plane, trajectory
from wslviz.understand.symmetry import (
    SymmetryElement,
    apply_symmetry,
    canonicalize,
    equivalence_gap,
    layer_distances,
    permutation_spec,
    random_symmetry,
)

__all__ = ["AlignmentReport", "Inversion", "Lineage", "SymmetryElement", "accuracy_barrier", "activation_matching",
           "align_to_average", "align_zoo", "alignment_report", "apply_symmetry", "barrier_matrix", "barrier_table",
           "barriers", "bezier_curve", "canonicalize", "distil", "equivalence_gap", "filter_normalized_directions",
           "gl_effects", "interpolate", "invert", "layer_distances", "loss_barrier", "matching_matrices",
           "pair_barriers", "pair_distances", "paths", "permutation_spec", "plane", "random_coordinates",
           "random_line", "random_plane", "random_symmetry", "rank_agreement", "Reconstruction",
           "reconstruct_training_data", "repair_to", "reset_batchnorm", "trajectory", "weight_matching"]
