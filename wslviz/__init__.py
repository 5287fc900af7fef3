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
# A subpackage never shares a name with a function exported here: importing ``wslviz.generate`` would
# replace the function ``wv.generate`` with the package (hence ``generation``).
_API: dict[str, str] = {
    "Architecture": "wslviz.core.arch",
    "ArchitectureError": "wslviz.core.arch",
    "ParamInfo": "wslviz.core.arch",
    "infer_architecture": "wslviz.core.arch",
    "ArchitectureLike": "wslviz.core.protocol",
    "ArchitectureBase": "wslviz.core.protocol",
    "register_kind": "wslviz.core.protocol",
    "from_module": "wslviz.core.protocol",
    "NoForwardError": "wslviz.core.protocol",
    "WeightsOnlyLayout": "wslviz.core.weights_only",
    "LoraArchitecture": "wslviz.core.lora",
    "lora_spec": "wslviz.core.lora",
    "from_spec": "wslviz.core.protocol",
    "infer_layout": "wslviz.core.protocol",
    "require_forward": "wslviz.core.protocol",
    "mlp_spec": "wslviz.core.arch",
    "Task": "wslviz.core.tasks",
    "TaskError": "wslviz.core.tasks",
    "make_task": "wslviz.core.tasks",
    "evaluate": "wslviz.core.evaluation",
    "evaluate_affine": "wslviz.core.evaluation",
    "model_outputs": "wslviz.core.evaluation",
    "forward": "wslviz.core.evaluation",
    "evaluate_per_model": "wslviz.core.evaluation",
    "Zoo": "wslviz.core.zoo",
    "load_zoo": "wslviz.scale.cache",
    "save_zoo": "wslviz.formats",
    "ZooFormatError": "wslviz.formats",
    "import_archive": "wslviz.formats.archive",
    "safe_torch_load": "wslviz.formats.safeio",
    "safe_unpack": "wslviz.formats.safeio",
    # symmetry / alignment
    "permutation_spec": "wslviz.understand.symmetry",
    "random_symmetry": "wslviz.understand.symmetry",
    "apply_symmetry": "wslviz.understand.symmetry",
    "weight_matching": "wslviz.understand.align",
    "activation_matching": "wslviz.understand.align",
    "SymmetryError": "wslviz.understand.symmetry",
    "PermutationSpec": "wslviz.understand.symmetry",
    "SymmetryElement": "wslviz.understand.symmetry",
    "compose": "wslviz.understand.symmetry",
    "inverse": "wslviz.understand.symmetry",
    "equivalence_gap": "wslviz.understand.symmetry",
    "group_size_log10": "wslviz.understand.symmetry",
    "canonicalize": "wslviz.understand.symmetry",
    "layer_distances": "wslviz.understand.symmetry",
    "align_zoo": "wslviz.understand.align",
    "align_to_average": "wslviz.understand.align",
    "merge": "wslviz.generation.merging",
    "reset_batchnorm": "wslviz.understand.repair",
    "lineage": "wslviz.understand.lineage",
    "invert": "wslviz.understand.inversion",
    "gl_effects": "wslviz.understand.lowrank",
    "pair_distances": "wslviz.understand.lowrank",
    "merge_adapters": "wslviz.generation.lora_merge",
    "distil": "wslviz.understand.inversion",
    "reconstruct_training_data": "wslviz.understand.reconstruction",
    "matching_matrices": "wslviz.understand.align",
    "symmetry_spread": "wslviz.understand.align",
    # landscape
    "interpolate": "wslviz.understand.landscape",
    "loss_barrier": "wslviz.understand.landscape",
    "accuracy_barrier": "wslviz.understand.landscape",
    "paths": "wslviz.understand.landscape",
    "barriers": "wslviz.understand.landscape",
    "pair_barriers": "wslviz.understand.landscape",
    "barrier_matrix": "wslviz.understand.landscape",
    "plane": "wslviz.understand.surfaces",
    "random_plane": "wslviz.understand.surfaces",
    "random_line": "wslviz.understand.surfaces",
    "filter_normalized_directions": "wslviz.understand.surfaces",
    "trajectory": "wslviz.understand.surfaces",
    "bezier_curve": "wslviz.understand.curves",
    # representations
    "compute_features": "wslviz.represent.features",
    "project": "wslviz.represent.projection",
    "predict_property": "wslviz.represent.predict",
    "feature_set": "wslviz.represent.features",
    "feature_names": "wslviz.represent.features",
    "FeatureSet": "wslviz.represent.features",
    "FeatureError": "wslviz.represent.features",
    "Projector": "wslviz.represent.projection",
    "leaderboard": "wslviz.represent.predict",
    "HyperRepresentation": "wslviz.represent.hyperrep",
    "nearest_neighbours": "wslviz.represent.retrieval",
    "function_similarity": "wslviz.represent.retrieval",
    "retrieval_benchmark": "wslviz.represent.retrieval",
    # metanetworks and INRs
    "MetanetClassifier": "wslviz.represent.metanet.estimator",
    "MetanetRegressor": "wslviz.represent.metanet.estimator",
    "EquivariantMetanet": "wslviz.represent.metanet.models",
    "WeightSpace": "wslviz.represent.metanet.weightspace",
    "fit_inrs": "wslviz.core.inr",
    "render_inrs": "wslviz.core.inr",
    # generation
    "generate": "wslviz.generation.generators",
    "novelty": "wslviz.generation.novelty",
    "make_generator": "wslviz.generation.generators",
    "NoveltyIndex": "wslviz.generation.novelty",
    "noise_baseline": "wslviz.generation.novelty",
    "compare_with_baseline": "wslviz.generation.novelty",
    "task_vectors": "wslviz.generation.merging",
    "task_arithmetic": "wslviz.generation.merging",
    "ties": "wslviz.generation.merging",
    "dare": "wslviz.generation.merging",
    "slerp": "wslviz.generation.merging",
    "greedy_soup": "wslviz.generation.merging",
    "fisher_merge": "wslviz.generation.merging",
    "repair": "wslviz.generation.merging",
    "fedavg": "wslviz.generation.merging",
    "aligned_fedavg": "wslviz.generation.merging",
    # training (make-zoo)
    "train": "wslviz.core.training",
    "train_zoo": "wslviz.core.training",
    "init_weights": "wslviz.core.training",
    "Recipe": "wslviz.core.training",
    "RECIPES": "wslviz.core.training",
    # precompute cache (Dask)
    "precompute_zoo": "wslviz.scale.precompute",
    "open_cache": "wslviz.scale.cache",
    "PrecomputeCache": "wslviz.scale.cache",
    "CacheError": "wslviz.scale.cache",
    "read_zoo": "wslviz.formats",
    "decision_grid": "wslviz.core.evaluation",
    "reference_row": "wslviz.core.zoo",
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
