"""Weight generators on the sample zoos: accuracy of what they make, and whether it is new.

For each zoo (default ``sample_zoo/moons-mlp`` and ``sample_zoo/digits-cnn``) and each generator
configuration below, fit on the zoo (seed 0), sample ``--n`` models and report:

* ``acc``: mean test accuracy of the generated models; ``zoo median``: median test accuracy of the
  zoo's final checkpoints;
* ``NN dist``: mean L2 distance from each generated model to its nearest zoo checkpoint (all
  checkpoints, every epoch), after aligning everything to one common reference (the best final
  checkpoint) by weight matching (:class:`wslviz.generation.generators.NoveltyIndex`);
* ``max agree``: mean over generated models of the highest prediction agreement on the test set with
  any zoo checkpoint (1.0 = functionally a copy of some zoo model; Zeng et al. 2025);
* the same two numbers for the **noise baseline** (:func:`wslviz.generation.generators.noise_baseline`): zoo final
  checkpoints at least as accurate as the generated mean, plus per-tensor Gaussian noise
  ``s * std(tensor)`` with the largest ``s`` that keeps their mean accuracy >= the generated mean.

Verdicts, with ``slack = 1 / n_test`` (one test example) since the baseline is calibrated from above:

* **beats (L2)**: ``NN dist > baseline NN dist`` and ``acc >= baseline acc - slack``: farther from every
  zoo model in (aligned) weight space than noise that costs the same accuracy;
* **beats (function)**: ``max agree < baseline max agree`` and ``acc >= baseline acc - slack``:
  functionally less like any zoo model than noisy copies of the zoo at the same accuracy;
* **done** (the issue's criterion): a learned generator (``pca_gaussian``, ``kde``, ``hyperrep``,
  ``conditional``, ``diffusion``) with ``acc >= zoo median`` and beats (L2).

Writes ``benchmarks/results/generators.json`` and prints a markdown table. Run::

    .venv/bin/python benchmarks/generators_table.py            # both sample zoos, ~5 min on 2 cores
    .venv/bin/python benchmarks/generators_table.py --zoo sample_zoo/moons-mlp --n 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from wslviz import generation as G
from wslviz.scale.cache import load_zoo

ROOT = Path(__file__).resolve().parents[1]

CONFIGS: list[tuple[str, dict]] = [
    ("interpolate", {"aligned": False}),
    ("interpolate", {"aligned": True}),
    ("merge", {}),
    ("pca_gaussian", {}),
    ("pca_gaussian", {"k": 2, "top_fraction": 0.1, "temperature": 0.5}),
    ("kde", {}),
    ("kde", {"top_fraction": 0.05, "bandwidth": 0.25}),
    ("kde", {"top_fraction": 0.05, "bandwidth": 0.5}),
    ("hyperrep", {"top_fraction": 0.25, "steps": 300}),
    ("conditional", {"steps": 800}),
    ("diffusion", {"top_fraction": 0.25, "steps": 1500}),
]
"""(method, options): the defaults, plus variants fitted on the best final checkpoints."""


def run_zoo(path: Path, n: int, seed: int) -> list[dict]:
    zoo = load_zoo(path)
    t0 = time.perf_counter()
    index = G.NoveltyIndex(zoo).fit()
    print(f"{zoo}: aligned {len(index.rows)} checkpoints to reference row {index.reference} in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for method, options in CONFIGS:
        t0 = time.perf_counter()
        try:
            gen = G.make_generator(method, random_state=seed, **options).fit(zoo)
        except ImportError as e:  # a generator whose dependency module is missing
            print(f"  {method} {options}: skipped ({e})", flush=True)
            continue
        fit_s = time.perf_counter() - t0
        weights = gen.sample(n, seed=seed)
        r = G.compare_with_baseline(zoo, weights, index, seed=seed)
        row = {
            "zoo": zoo.name, "method": method, "options": options, "learned": method in G.LEARNED,
            "fit_seconds": round(fit_s, 2), "n": n, "seed": seed,
            "accuracy": r["accuracy"], "zoo_final_median": r["zoo_final_median"],
            "nn_distance": r["distance"], "baseline_nn_distance": r["baseline_distance"],
            "max_agreement": r["max_agreement"], "baseline_max_agreement": r["baseline_max_agreement"],
            "baseline_accuracy": r["baseline_accuracy"], "noise_scale": r["noise_scale"],
            "beats_l2": r["beats_baseline"], "beats_function": r["beats_function"],
        }
        row["done"] = bool(row["learned"] and r["accuracy"] >= r["zoo_final_median"] and row["beats_l2"])
        rows.append(row)
        print(f"  {method} {options}: acc {row['accuracy']:.3f} (median {row['zoo_final_median']:.3f}), NN dist "
              f"{row['nn_distance']:.2f} vs noise {row['baseline_nn_distance']:.2f}, max agree "
              f"{row['max_agreement']:.3f} vs {row['baseline_max_agreement']:.3f}, fit {fit_s:.1f} s", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| zoo | generator | options | acc | zoo median | NN dist | noise NN dist | max agree | noise max agree "
            "| noise acc | beats (L2) | beats (function) | done |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    yes = {True: "yes", False: "no"}
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults"
        lines.append(f"| {r['zoo']} | {r['method']}{' (learned)' if r['learned'] else ''} | {opts} | "
                     f"{r['accuracy']:.3f} | {r['zoo_final_median']:.3f} | {r['nn_distance']:.2f} | "
                     f"{r['baseline_nn_distance']:.2f} | {r['max_agreement']:.3f} | "
                     f"{r['baseline_max_agreement']:.3f} | "
                     f"{r['baseline_accuracy']:.3f} | {yes[r['beats_l2']]} | {yes[r['beats_function']]} | "
                     f"{yes[r['done']]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", action="append", type=Path,
                        help="zoo folder (repeatable); default: sample_zoo/moons-mlp and sample_zoo/digits-cnn")
    parser.add_argument("--n", type=int, default=32, help="models generated per configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generators.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared; more threads only contend
    zoos = args.zoo or [ROOT / "sample_zoo" / "moons-mlp", ROOT / "sample_zoo" / "digits-cnn"]
    rows = [row for path in zoos for row in run_zoo(path, args.n, args.seed)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "command": "python benchmarks/generators_table.py",
                                    "n": args.n, "seed": args.seed}, indent=2) + "\n")
    print()
    print(markdown(rows))
    for zoo in dict.fromkeys(r["zoo"] for r in rows):
        done = [f"{r['method']} {r['options'] or ''}".strip() for r in rows if r["zoo"] == zoo and r["done"]]
        print(f"\n{zoo}: done-when met by {', '.join(done) if done else 'no learned generator'}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
