"""Choose each generator's settings for a zoo on a validation split, never the test split.

For each zoo (default the sample zoos ``moons-mlp`` and ``digits-cnn``) the zoo is re-expressed on a
validation task (:func:`wslviz.core.tasks.validation_split`: the last fifth of the training split plays
the test split) with its ``test_acc``/``test_loss`` columns recomputed there, so every choice a generator
makes from accuracies (its reference, its "best fraction" of checkpoints) sees validation data only. Every
configuration of :data:`GRID` is fitted (seed 0), samples ``--n`` models, and is placed against the
validation noise frontier (:func:`wslviz.generation.novelty.noise_frontier`, error-IoU novelty). Per
generator the chosen settings are the first of: beyond the frontier with mean accuracy >= the zoo's
median final (validation) accuracy, by largest margin; else at the median, by margin; else the most
accurate.

Writes ``wslviz/generation/tuned.py`` (the Generate page opens on these settings) and
``benchmarks/results/tuned_generators.json``. Run::

    .venv/bin/python benchmarks/tune_generators.py          # both zoos, ~10 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import pprint
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from wslviz import generation as G
from wslviz.core.evaluation import evaluate
from wslviz.core.tasks import validation_split
from wslviz.core.zoo import Zoo
from wslviz.scale.cache import load_zoo

ROOT = Path(__file__).resolve().parents[1]

GRID: dict[str, list[dict]] = {
    "interpolate": [{}, {"t_min": 0.0, "t_max": 1.0}],
    "merge": [{}, {"alpha": 10.0}],
    "pca_gaussian": [{}, {"k": 2, "top_fraction": 0.1, "temperature": 0.5}, {"k": 4, "top_fraction": 0.25,
                                                                            "temperature": 0.5}],
    "kde": [{}, {"top_fraction": 0.05, "bandwidth": 0.25}, {"top_fraction": 0.05, "bandwidth": 0.5},
            {"top_fraction": 0.1, "bandwidth": 0.25}],
    "hyperrep": [{"top_fraction": 0.25, "steps": 300}, {"top_fraction": 0.1, "steps": 300, "bandwidth_scale": 0.5}],
    "conditional": [{"steps": 800}, {"steps": 800, "temperature": 0.5}],
    "diffusion": [{"top_fraction": 0.25, "steps": 1500}, {"top_fraction": 0.1, "steps": 1500}],
}
"""Per generator, the configurations tried (the defaults and variants fitted near the best checkpoints)."""


def validation_zoo(zoo: Zoo) -> Zoo:
    """The zoo on its validation task, with ``test_acc``/``test_loss`` recomputed there."""
    task = validation_split(zoo.task)
    r = evaluate(zoo.arch, task, zoo.weights)
    meta = zoo.metadata.copy()
    meta["test_acc"], meta["test_loss"] = r["accuracy"].numpy().astype(float), r["loss"].numpy().astype(float)
    return replace(zoo, task=task, metadata=meta, cache=None)


def choose(results: list[dict]) -> dict:
    done = [r for r in results if r["done"]]
    if done:
        return max(done, key=lambda r: r["margin"])
    at_median = [r for r in results if r["meets_median"]]
    if at_median:
        return max(at_median, key=lambda r: r["margin"])
    return max(results, key=lambda r: r["accuracy"])


def tune(path: Path, n: int, seed: int) -> dict:
    zoo = validation_zoo(load_zoo(path))
    t0 = time.perf_counter()
    index = G.NoveltyIndex(zoo).fit()
    frontier = G.noise_frontier(zoo, index, seed=seed)
    median = float(np.median(zoo.metadata["test_acc"].to_numpy()[zoo.final_index()]))
    print(f"{zoo.name}: validation index and frontier in {time.perf_counter() - t0:.1f} s, median {median:.3f}",
          flush=True)
    out = {}
    for method, configs in GRID.items():
        results = []
        for options in configs:
            t0 = time.perf_counter()
            weights = G.make_generator(method, random_state=seed, **options).fit(zoo).sample(n, seed=seed)
            v = G.frontier_verdict(frontier, index.query(weights), median)
            results.append({"options": options, **{k: v[k] for k in ("accuracy", "error_novelty", "distance",
                                                                      "margin", "beyond", "meets_median", "done")}})
            print(f"  {method} {options}: val acc {v['accuracy']:.3f}, novelty {v['error_novelty']:.3f}, margin "
                  f"{v['margin']:+.3f}, done {v['done']} ({time.perf_counter() - t0:.1f} s)", flush=True)
        best = choose(results)
        out[method] = {"options": best["options"], "validation": {k: best[k] for k in best if k != "options"}}
    return {"zoo": zoo.name, "median_validation_accuracy": median, "generators": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", action="append", type=Path, help="zoo folder (repeatable)")
    parser.add_argument("--n", type=int, default=16, help="models sampled per configuration")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    zoos = args.zoo or [ROOT / "sample_zoo" / "moons-mlp", ROOT / "sample_zoo" / "digits-cnn"]
    runs = [tune(p, args.n, args.seed) for p in zoos]
    tuned = {r["zoo"]: {m: g["options"] for m, g in r["generators"].items()} for r in runs}
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "tuned_generators.json").write_text(
        json.dumps({"runs": runs, "n": args.n, "seed": args.seed}, indent=2) + "\n")
    module = ROOT / "wslviz" / "generation" / "tuned.py"
    module.write_text(
        '"""Generator settings per bundled zoo, chosen on a validation split (never the test split).\n\n'
        "Written by ``benchmarks/tune_generators.py`` (scores in ``benchmarks/results/tuned_generators.json``);\n"
        'do not edit by hand. The Generate page opens on these settings.\n"""\n\n'
        f"TUNED: dict[str, dict[str, dict]] = {pprint.pformat(tuned, width=110, sort_dicts=True)}\n"
        '"""zoo name -> generator -> constructor options."""\n\n\n'
        "def tuned_options(zoo_name: str, method: str) -> dict:\n"
        '    """The tuned options of ``method`` for the zoo called ``zoo_name`` ({} when none were tuned)."""\n'
        "    return dict(TUNED.get(zoo_name, {}).get(method, {}))\n")
    print(f"wrote {module}")


if __name__ == "__main__":
    main()
