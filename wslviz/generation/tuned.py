"""Generator settings per bundled zoo, chosen on a validation split (never the test split).

Written by ``benchmarks/tune_generators.py`` (scores in ``benchmarks/results/tuned_generators.json``);
do not edit by hand. The Generate page opens on these settings.
"""

TUNED: dict[str, dict[str, dict]] = {'digits-cnn': {'conditional': {'steps': 800},
                'diffusion': {'steps': 1500, 'top_fraction': 0.1},
                'hyperrep': {'bandwidth_scale': 0.5, 'steps': 300, 'top_fraction': 0.1},
                'interpolate': {'t_max': 1.0, 't_min': 0.0},
                'kde': {'bandwidth': 0.25, 'top_fraction': 0.05},
                'merge': {'alpha': 10.0},
                'pca_gaussian': {'k': 2, 'temperature': 0.5, 'top_fraction': 0.1}},
 'moons-mlp': {'conditional': {'steps': 800, 'temperature': 0.5},
               'diffusion': {'steps': 1500, 'top_fraction': 0.1},
               'hyperrep': {'bandwidth_scale': 0.5, 'steps': 300, 'top_fraction': 0.1},
               'interpolate': {},
               'kde': {'bandwidth': 0.25, 'top_fraction': 0.05},
               'merge': {'alpha': 10.0},
               'pca_gaussian': {'k': 2, 'temperature': 0.5, 'top_fraction': 0.1}}}
"""zoo name -> generator -> constructor options."""


def tuned_options(zoo_name: str, method: str) -> dict:
    """The tuned options of ``method`` for the zoo called ``zoo_name`` ({} when none were tuned)."""
    return dict(TUNED.get(zoo_name, {}).get(method, {}))
