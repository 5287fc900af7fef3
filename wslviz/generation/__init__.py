"""Weight Space Generation: new weights for a zoo's architecture, whether they are new, and their export.

- :mod:`~wslviz.generation.generators`: ``make_generator`` / ``generate`` (interpolation, aligned merging,
  PCA-Gaussian, KDE, hyper-representation sampling, conditional VAE, latent diffusion);
- :mod:`~wslviz.generation.novelty`: nearest aligned zoo model, prediction agreement, error-IoU novelty (Zeng et
  al. 2025), the noise baseline and the noise frontier;
- :mod:`~wslviz.generation.merging`: ``merge(..., method=...)``: averages, SLERP, task arithmetic, TIES, DARE,
  soups, Fisher, aligned averaging with REPAIR, FedAvg;
- :mod:`~wslviz.generation.lora_merge`: LoRA adapters merged on ``delta_W = B A`` (``merge_adapters``), the factor
  average as a labelled baseline;
- :mod:`~wslviz.generation.export`: generated models as a zoo, JSON, ``.safetensors`` or a zipped zoo;
- :mod:`~wslviz.generation.rows`: the zoo rows generators start from.

May import ``core``, ``formats``, ``understand`` and ``represent``; never ``scale``, ``plots``, ``ui``.
"""

from wslviz.generation.export import as_zoo, metadata_json, safetensors_bytes, zoo_archive_bytes
from wslviz.generation.generators import (
    GENERATORS,
    LEARNED,
    ConditionalVAE,
    HyperRepSampler,
    Interpolation,
    KDESampler,
    LatentDiffusion,
    Merge,
    PCAGaussian,
    PCASpace,
    WeightGenerator,
    generate,
    make_generator,
)
from wslviz.generation.lora_merge import AdapterMerge, factor_average, merge_adapters
from wslviz.generation.novelty import (
    NOISE_AMPLITUDES,
    NoiseFrontier,
    NoveltyIndex,
    compare_with_baseline,
    error_iou,
    frontier_statement,
    frontier_verdict,
    noise_baseline,
    noise_frontier,
    novelty,
    project_with_generated,
)
from wslviz.generation.rows import align_rows, best_final_rows, check_rows
from wslviz.generation.tuned import TUNED, tuned_options

__all__ = ["GENERATORS", "LEARNED", "AdapterMerge", "ConditionalVAE", "HyperRepSampler", "Interpolation", "KDESampler",
           "LatentDiffusion", "Merge", "NOISE_AMPLITUDES", "NoiseFrontier", "NoveltyIndex", "PCAGaussian",
           "PCASpace", "TUNED", "WeightGenerator", "align_rows", "as_zoo", "best_final_rows", "check_rows",
           "compare_with_baseline", "error_iou", "factor_average", "frontier_statement", "frontier_verdict", "generate",
           "make_generator", "merge_adapters", "metadata_json", "noise_baseline", "noise_frontier", "novelty",
           "project_with_generated", "safetensors_bytes", "tuned_options", "zoo_archive_bytes"]
