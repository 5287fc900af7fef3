"""What a LoRA zoo's weights tell, and how adapters merge: the tables in the README's LoRA section.

On the bundled ``sample_zoo/digits-lora`` (108 adapters of one digits MLP: 3 tasks x ranks 2/4/8 x 50/200/800
fine-tuning examples x 4 seeds; ``wslviz make-zoo --only digits-lora``):

1. Property prediction, 5-fold cross-validation grouped by adapter (:func:`wslviz.represent.predict.predict_property`,
   linear model and gradient boosting): the task and the fine-tuning set size from GL(r)-invariant features
   (singular values, norms, energy shares and canonical SVD factors of ``delta_W = B A``) against the same
   predictors on the raw ``A``/``B`` entries (``flat``); the rank too.
2. Merging: for every seed and rank, the three task adapters trained on 800 examples are merged on ``delta_W``
   (mean, task arithmetic, TIES, DARE; :mod:`wslviz.generation.lora_merge`) and by the naive mean of ``A`` and ``B``;
   each merge, each input adapter and the base are evaluated on every task's test split. Means over 4 seeds x 3 ranks.

Run: ``python benchmarks/lora_table.py`` (about a minute on 2 cores); prints Markdown tables.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import wslviz as wv
from wslviz.core.tasks import make_task
from wslviz.generation.lora_merge import LABELS, LORA_METHODS, factor_average, merge_adapters
from wslviz.represent.predict import predict_property

ZOO = Path(__file__).resolve().parent.parent / "sample_zoo" / "digits-lora"


def markdown(df: pd.DataFrame) -> str:
    """A Markdown table of ``df`` (index as the first column when it is not a plain range), floats to 3 digits."""
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index(names="")
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


def prediction_table(zoo) -> pd.DataFrame:
    rows = []
    for target, score in (("task", "accuracy"), ("rank", "kendall_tau"), ("n_train", "kendall_tau")):
        for model in ("linear", "gbm"):
            row = {"target": target, "score": score, "predictor": model}
            for features, label in (("invariant", "invariant (delta_W)"), ("flat", "raw A/B")):
                row[label] = predict_property(zoo, target, features, model=model, importances=False)[score]
            rows.append(row)
    return pd.DataFrame(rows)


def merge_table(zoo) -> tuple[pd.DataFrame, float]:
    meta, arch = zoo.metadata, zoo.arch
    tasks = list(dict.fromkeys(meta["task"]))
    evals = {t: make_task({**zoo.task.spec, "variant": t}) for t in tasks}
    results: dict[str, list[list[float]]] = {}
    errors = []

    def score(label: str, weights: torch.Tensor, inputs: torch.Tensor) -> None:
        size = arch.flat_deltas(weights[None]).norm() / arch.flat_deltas(inputs).norm(dim=1).mean()
        results.setdefault(label, []).append([float(arch.evaluate(evals[t], weights)["accuracy"]) for t in tasks]
                                             + [float(size)])

    big = meta[meta["n_train"] == meta["n_train"].max()]
    for (_, _), group in big.groupby(["seed_group", "rank"]):
        rows = [int(group.index[group["task"] == t][0]) for t in tasks]
        w = zoo.weights[rows]
        score("base (no adapter)", torch.zeros(arch.n_params), w)
        for t, row in zip(tasks, rows, strict=True):
            score(f"input: the {t} adapter", zoo.weights[row], w)
        for method in LORA_METHODS:
            merged = merge_adapters(arch, w, method=method, lam=1.0 / len(rows) if method == "dare" else 1.0)
            score(LABELS[method], merged.weights, w)
            errors.append(max(merged.errors.values()))
        score(LABELS["factor_average"], factor_average(arch, w), w)
    table = pd.DataFrame({label: np.mean(v, axis=0) for label, v in results.items()},
                         index=[*tasks, "norm"]).T
    table.insert(len(tasks), "mean", table[tasks].mean(axis=1))
    table = table.rename(columns={"norm": "update norm / inputs'"})
    return table, float(np.mean(errors))


def main() -> int:
    if not ZOO.is_dir():
        print(f"{ZOO} is missing: run `wslviz make-zoo --only digits-lora`", file=sys.stderr)
        return 1
    start = time.perf_counter()
    zoo = wv.load_zoo(ZOO)
    zoo.metadata["seed_group"] = zoo.metadata["seed"] % 1000
    print(f"## {zoo.name}: {zoo.n_models} adapters, {zoo.n_params} parameters each\n")
    print("### Property prediction (5-fold CV grouped by adapter)\n")
    print(markdown(prediction_table(zoo)))
    table, error = merge_table(zoo)
    print("\n### Merging the three task adapters (n_train 800), accuracy per task (mean of 4 seeds x 3 ranks)\n")
    print(markdown(table))
    print(f"\nmean relative error of the rank-r re-factorisation (largest module): {error:.3f}")
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
