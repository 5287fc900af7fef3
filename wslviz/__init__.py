"""wslviz: weight space learning as an interactive instrument.

The public API is re-exported here lazily (heavy modules such as umap load on first use)::

    import wslviz as wv
    zoo = wv.load_zoo("sample_zoo/moons-mlp")
    wv.evaluate(zoo.arch, zoo.task, zoo.weights)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
# A module never shares a name with a function exported here: importing ``wslviz.evaluate`` would
# replace the function ``wv.evaluate`` with the module (hence ``evaluation``, ``generation``).
_API: dict[str, str] = {
    "Architecture": "wslviz.arch",
    "ArchitectureError": "wslviz.arch",
    "ParamInfo": "wslviz.arch",
    "infer_architecture": "wslviz.arch",
    "mlp_spec": "wslviz.arch",
    "Task": "wslviz.tasks",
    "TaskError": "wslviz.tasks",
    "make_task": "wslviz.tasks",
    "evaluate": "wslviz.evaluation",
    "evaluate_affine": "wslviz.evaluation",
    "model_outputs": "wslviz.evaluation",
    "forward": "wslviz.evaluation",
    "Zoo": "wslviz.zoo",
    "load_zoo": "wslviz.zoo",
    "save_zoo": "wslviz.zoo",
    "ZooFormatError": "wslviz.formats",
    "import_archive": "wslviz.formats.archive",
    "safe_torch_load": "wslviz.safeio",
    "safe_unpack": "wslviz.safeio",
    # symmetry / alignment
    "permutation_spec": "wslviz.symmetry",
    "random_symmetry": "wslviz.symmetry",
    "apply_symmetry": "wslviz.symmetry",
    "weight_matching": "wslviz.align",
    "activation_matching": "wslviz.align",
    "SymmetryError": "wslviz.symmetry",
    "PermutationSpec": "wslviz.symmetry",
    "SymmetryElement": "wslviz.symmetry",
    "compose": "wslviz.symmetry",
    "inverse": "wslviz.symmetry",
    "equivalence_gap": "wslviz.symmetry",
    "group_size_log10": "wslviz.symmetry",
    "canonicalize": "wslviz.symmetry",
    "layer_distances": "wslviz.symmetry",
    "align_zoo": "wslviz.align",
    "align_to_average": "wslviz.align",
    "merge": "wslviz.align",
    "reset_batchnorm": "wslviz.align",
    "matching_matrices": "wslviz.align",
    "symmetry_spread": "wslviz.align",
    # landscape
    "interpolate": "wslviz.landscape",
    "loss_barrier": "wslviz.landscape",
    "accuracy_barrier": "wslviz.landscape",
    "paths": "wslviz.landscape",
    "barriers": "wslviz.landscape",
    "pair_barriers": "wslviz.landscape",
    "barrier_matrix": "wslviz.landscape",
    "plane": "wslviz.landscape",
    "random_plane": "wslviz.landscape",
    "random_line": "wslviz.landscape",
    "filter_normalized_directions": "wslviz.landscape",
    "trajectory": "wslviz.landscape",
    "bezier_curve": "wslviz.landscape",
    # representations
    "compute_features": "wslviz.features",
    "project": "wslviz.embed",
    "predict_property": "wslviz.predict",
    "feature_set": "wslviz.features",
    "feature_names": "wslviz.features",
    "FeatureSet": "wslviz.features",
    "FeatureError": "wslviz.features",
    "Projector": "wslviz.embed",
    "leaderboard": "wslviz.predict",
    "HyperRepresentation": "wslviz.hyperrep",
    "nearest_neighbours": "wslviz.retrieval",
    "function_similarity": "wslviz.retrieval",
    "retrieval_benchmark": "wslviz.retrieval",
    # generation
    "generate": "wslviz.generation",
    "novelty": "wslviz.generation",
    "make_generator": "wslviz.generation",
    "NoveltyIndex": "wslviz.generation",
    "noise_baseline": "wslviz.generation",
    "compare_with_baseline": "wslviz.generation",
    # training (make-zoo)
    "train": "wslviz.training",
    "train_zoo": "wslviz.training",
    "init_weights": "wslviz.training",
    "Recipe": "wslviz.training",
    "RECIPES": "wslviz.training",
    # precompute cache (Dask)
    "precompute_zoo": "wslviz.precompute",
    "open_cache": "wslviz.precompute",
    "PrecomputeCache": "wslviz.precompute",
    "CacheError": "wslviz.precompute",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'wslviz' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
