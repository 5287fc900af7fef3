"""Merging and novelty, measured: the tables of the README section "Merging and novelty".

1. **Generators against the noise frontier** (``moons-mlp``, ``digits-cnn``): every generator at the settings
   the Generate page opens on (:data:`wslviz.generation.tuned.TUNED`, chosen on a validation split by
   ``benchmarks/tune_generators.py``), seed 0, ``--n`` models, on the test split: mean accuracy, L2 novelty
   (distance to the nearest aligned zoo checkpoint), error-IoU novelty (Zeng et al. 2025), whether the mean
   point lies beyond the error-IoU frontier and the L2 frontier, and whether the mean accuracy reaches the
   zoo's median final accuracy.
2. **Merge methods on** ``digits-finetunes``: accuracy per task and the average for the base, the 30
   fine-tunes (best and mean), their ensemble, and each merge method; options (``lam``, ``density``,
   ``drop``) chosen on the validation split of every task (the last fifth of each training split, which no
   model trained on), never the test split.
3. **FedAvg vs aligned FedAvg on** ``digits-federated``: one-shot merges of the clients of rounds 1, 5
   and 10, and a whole federated run (10 rounds) with each aggregator.

Writes ``benchmarks/results/merging_novelty.json`` and prints markdown. Run::

    .venv/bin/python benchmarks/merging_novelty_table.py     # ~5 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from wslviz import generation as G
from wslviz.core.tasks import validation_split
from wslviz.core.training import RECIPES, average_clients, federated_rounds, init_weights, non_iid_split
from wslviz.generation import merge_lab as L
from wslviz.generation import merging as M
from wslviz.generation.tuned import tuned_options
from wslviz.scale.cache import load_zoo

ROOT = Path(__file__).resolve().parents[1]
yes = {True: "yes", False: "no"}
SHORT = {"aligned": "Aligned average (weight matching, BatchNorm reset)"}


def generators(path: Path, n: int, seed: int) -> dict:
    zoo = load_zoo(path)
    index = G.NoveltyIndex(zoo).fit()
    frontier = G.noise_frontier(zoo, index, seed=seed)
    median = float(np.median(zoo.metadata["test_acc"].to_numpy()[zoo.final_index()]))
    rows, verdicts = [], {}
    for method in G.GENERATORS:
        options = tuned_options(zoo.name, method)
        t0 = time.perf_counter()
        weights = G.make_generator(method, random_state=seed, **options).fit(zoo).sample(n, seed=seed)
        v = G.frontier_verdict(frontier, index.query(weights), median)
        verdicts[method] = v
        rows.append({"zoo": zoo.name, "method": method, "options": options, "seconds": time.perf_counter() - t0, **v})
        print(f"  {zoo.name} {method} {options}: acc {v['accuracy']:.3f}, L2 {v['distance']:.2f}, IoU novelty "
              f"{v['error_novelty']:.3f}, beyond {v['beyond']}, margin {v['margin']:+.3f}", flush=True)
    return {"zoo": zoo.name, "median": median, "rows": rows, "statement": G.frontier_statement(verdicts, median),
            "frontier": frontier.curve.to_dict(orient="list")}


def _choose(zoo, rows, method, base_row, grid, vtasks) -> tuple[dict, float]:
    """The options of ``grid`` with the best average validation accuracy over the tasks."""
    best, score = {}, -1.0
    for options in grid:
        merged = L.merge_rows(zoo, rows, method, base_row, **options)
        s = float(L.task_accuracies(zoo.arch, vtasks, merged)["average"][0])
        if s > score:
            best, score = options, s
    return best, score


def merges(seed: int) -> dict:
    zoo = load_zoo(ROOT / "sample_zoo" / "digits-finetunes")
    tasks = L.zoo_tasks(zoo)
    vtasks = {k: validation_split(t) for k, t in tasks.items()}
    rows, base_row = L.default_merge_rows(zoo)
    k = len(rows)
    w = zoo.weights[torch.as_tensor(rows)].float()
    fts = L.task_accuracies(zoo.arch, tasks, w)
    table = [{"model": "base", **L.task_accuracies(zoo.arch, tasks, zoo.weights[base_row]).iloc[0].to_dict()},
             {"model": f"best fine-tune (of {k}, by test average)", **fts.loc[fts["average"].idxmax()].to_dict()},
             {"model": "mean over the fine-tunes", **fts.mean().to_dict()},
             {"model": "ensemble of the fine-tunes", **L.ensemble_accuracies(zoo.arch, tasks, w).to_dict()}]
    lams = [c / k for c in (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)]
    plan = [
        ("average", [{}]),
        ("task_arithmetic", [{"lam": lam} for lam in lams]),
        ("ties", [{"density": d, "lam": lam} for d in (0.1, 0.2, 0.5) for lam in (0.5, 1.0, 1.5)]),
        ("dare", [{"drop": p, "lam": lam, "seed": seed} for p in (0.5, 0.9) for lam in lams]),
        ("soup", [{}]),
        ("fisher", [{}]),
        ("aligned", [{}]),
        ("aligned", [{"correction": "repair"}]),
    ]
    for method, grid in plan:
        t0 = time.perf_counter()
        options, val = _choose(zoo, rows, method, base_row, grid, vtasks) if len(grid) > 1 else (grid[0], None)
        merged = L.merge_rows(zoo, rows, method, base_row, **options)
        acc = L.task_accuracies(zoo.arch, tasks, merged).iloc[0].to_dict()
        label = SHORT.get(method, M.METHODS[method]) + (" + REPAIR" if options.get("correction") == "repair" else "")
        table.append({"model": label, "method": method, "options": options, "validation_average": val, **acc,
                      "seconds": time.perf_counter() - t0})
        print(f"  {label} {options}: average {acc['average']:.4f}", flush=True)
    best_ft = float(fts["average"].max())
    for r in table:
        r["beats_every_finetune"] = bool("method" in r and r["average"] > best_ft)
    return {"tasks": list(tasks), "rows": table, "best_finetune_average": best_ft}


def federated(seed: int) -> dict:
    zoo = load_zoo(ROOT / "sample_zoo" / "digits-federated")
    meta = zoo.metadata
    one_shot = []
    for r in (1, 5, 10):
        rows = np.flatnonzero(meta["round"].to_numpy() == r)
        n = meta["n_examples"].to_numpy()[rows]
        w = zoo.weights[torch.as_tensor(rows)].float()
        plain = float(L.task_accuracies(zoo.arch, L.zoo_tasks(zoo), M.fedavg(zoo.arch, w, n))["average"][0])
        aligned = float(L.task_accuracies(zoo.arch, L.zoo_tasks(zoo), M.aligned_fedavg(zoo.arch, w, n))["average"][0])
        best_client = float(meta["test_acc"].to_numpy()[rows].max())
        one_shot.append({"round": r, "fedavg": plain, "aligned_fedavg": aligned, "best_client": best_client})
        print(f"  round {r}: FedAvg {plain:.4f}, aligned FedAvg {aligned:.4f}, best client {best_client:.4f}",
              flush=True)
    recipe = RECIPES["digits-federated"]
    subsets = non_iid_split(zoo.task.y_train, recipe.n_clients, recipe.classes_per_client, seed)
    start = init_weights(zoo.arch, [seed * 100_000])[0]

    def aligned_step(w: torch.Tensor, n) -> torch.Tensor:
        return M.aligned_fedavg(zoo.arch, w, n)

    runs = {}
    for name, aggregate in (("fedavg", average_clients), ("aligned_fedavg", aligned_step)):
        _, glob = federated_rounds(zoo.arch, zoo.task, start, subsets, recipe.hparams, recipe.rounds,
                                   recipe.local_epochs, seed=seed, aggregate=aggregate)
        runs[name] = L.task_accuracies(zoo.arch, L.zoo_tasks(zoo), glob)["average"].tolist()
        print(f"  whole run with {name}: global accuracy per round {np.round(runs[name], 3).tolist()}", flush=True)
    return {"one_shot": one_shot, "runs": runs}


def markdown(gen: list[dict], mer: dict, fed: dict) -> str:
    out = ["| zoo | generator | settings (validation-tuned) | accuracy | zoo median | L2 novelty | error-IoU novelty | "
           "beyond IoU frontier | beyond L2 frontier | >= median |", "|---|---|---|---|---|---|---|---|---|---|"]
    for g in gen:
        for r in g["rows"]:
            opts = ", ".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults"
            out.append(f"| {r['zoo']} | {r['method']} | {opts} | {r['accuracy']:.3f} | {g['median']:.3f} | "
                       f"{r['distance']:.2f} | {r['error_novelty']:.3f} | {yes[r['beyond']]} | {yes[r['beyond_l2']]} | "
                       f"{yes[r['meets_median']]} |")
    out += [""] + [f"- **{g['zoo']}**: {g['statement']}" for g in gen] + [""]
    tasks = mer["tasks"]
    out.append("| model (digits-finetunes) | options (chosen on validation) | " + " | ".join(tasks) + " | average |")
    out.append("|---|---|" + "---|" * (len(tasks) + 1))
    for r in mer["rows"]:
        opts = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.get("options", {}).items()
                         if k != "seed")
        avg = f"**{r['average']:.3f}**" if r.get("beats_every_finetune") else f"{r['average']:.3f}"
        model = r["model"].replace(M.METHODS["aligned"], SHORT["aligned"])
        out.append(f"| {model} | {opts} | " + " | ".join(f"{r[t]:.3f}" for t in tasks) + f" | {avg} |")
    out += ["", "| digits-federated | FedAvg | aligned FedAvg | best single client |", "|---|---|---|---|"]
    for r in fed["one_shot"]:
        out.append(f"| clients of round {r['round']}, merged once | {r['fedavg']:.3f} | {r['aligned_fedavg']:.3f} | "
                   f"{r['best_client']:.3f} |")
    out.append(f"| whole run, global model after round 10 | {fed['runs']['fedavg'][-1]:.3f} | "
               f"{fed['runs']['aligned_fedavg'][-1]:.3f} | |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=16, help="models generated per generator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "merging_novelty.json")
    parser.add_argument("--from-json", action="store_true", help="only print the tables of the saved --out file")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.out.read_text())
        print(markdown(saved["generators"], saved["merges"], saved["federated"]))
        return
    torch.set_num_threads(1)
    fed = federated(args.seed)
    mer = merges(args.seed)
    gen = [generators(ROOT / "sample_zoo" / z, args.n, args.seed) for z in ("moons-mlp", "digits-cnn")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"generators": gen, "merges": mer, "federated": fed, "n": args.n,
                                    "seed": args.seed, "command": "python benchmarks/merging_novelty_table.py"},
                                   indent=2, default=float) + "\n")
    print()
    print(markdown(gen, mer, fed))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
