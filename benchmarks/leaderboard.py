"""Property-prediction leaderboard on a sample zoo (default digits-cnn): every feature set x predictor,
scored by model-grouped 5-fold cross-validation for test accuracy, on all checkpoints, on the trained ones
(epoch > 0) and on final checkpoints only; the anchor (stats + gradient boosting) also fitted to ranks;
retrieval precision@10 against function space; hyper-representation reconstruction.

Writes ``benchmarks/results/leaderboard.json`` and prints markdown tables for the README. Usage:
    .venv/bin/python benchmarks/leaderboard.py [--zoo sample_zoo/digits-cnn] [--target test_acc] [--kinds ...]
        [--models linear gbm knn] [--no-hyperrep] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import pandas as pd

import wslviz as wv
from wslviz.represent.features import aligned_weights, feature_set
from wslviz.represent.hyperrep import HyperRepresentation, reconstruction_quality
from wslviz.represent.predict import leaderboard, predict_property
from wslviz.represent.retrieval import retrieval_benchmark

ROOT = Path(__file__).resolve().parents[1]
warnings.filterwarnings("ignore", category=ImportWarning)


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--zoo", default=str(ROOT / "sample_zoo" / "digits-cnn"))
    ap.add_argument("--target", default="test_acc")
    ap.add_argument("--kinds", nargs="+", default=["flat", "aligned", "stats", "spectral", "functional", "learned"])
    ap.add_argument("--models", nargs="+", default=["linear", "gbm", "knn"])
    ap.add_argument("--no-hyperrep", action="store_true", help="skip the hyper-representation reconstruction check")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "leaderboard.json"))
    args = ap.parse_args()
    zoo = wv.load_zoo(args.zoo)
    kinds = args.kinds
    feats, seconds = {}, {}
    for kind in kinds:
        t = time.perf_counter()
        feats[kind] = feature_set(zoo, kind).values
        seconds[kind] = time.perf_counter() - t
        print(f"{kind:>10}: {feats[kind].shape[1]:5d} features in {seconds[kind]:.1f} s", flush=True)
    boards = {}
    for rows in ("all", "trained", "final"):
        t = time.perf_counter()
        board = leaderboard(zoo, args.target, kinds, args.models, rows=rows, features=feats)
        boards[rows] = board
        print(f"\n### {args.target}, {rows} checkpoints ({board['n_rows'].iloc[0]} rows, {zoo.n_models} models, "
              f"grouped 5-fold CV; {time.perf_counter() - t:.0f} s)\n")
        print(markdown(board[["features", "model", "r2", "kendall_tau", "mae", "n_features"]]))
    retrieval = retrieval_benchmark(zoo, kinds, k=10, features=feats)
    table = retrieval.pivot_table(index="features", columns="function", values="precision_at_k").reset_index()
    table = table.sort_values("agreement", ascending=False)
    print("\n### retrieval: precision@10 of feature-space neighbours against function-space neighbours "
          f"({zoo.n_models} final checkpoints)\n")
    print(markdown(table))
    hyperrep: dict = {}
    if not args.no_hyperrep and zoo.task is not None:
        w = aligned_weights(zoo.subset(zoo.final_index()))
        t = time.perf_counter()
        hr = HyperRepresentation(random_state=0).fit((zoo.arch, w))
        hyperrep = {"fit_seconds": time.perf_counter() - t, "rows": len(w), **reconstruction_quality(hr, zoo.task, w)}
        print(f"\n### hyper-representation (latent 16) on {len(w)} aligned final checkpoints\n")
        print(json.dumps(hyperrep, indent=1))
    anchor = {}
    if "stats" in feats:
        print("\n### anchor: stats + gradient boosting, raw and rank-fitted target\n")
        for rows in boards:
            for transform in ("none", "rank"):
                r = predict_property(zoo, args.target, feats["stats"], "gbm", rows=rows, importances=False,
                                     target_transform=transform)
                anchor[f"{rows}/{transform}"] = {"rows": r["n_rows"], "r2": r["r2"], "kendall_tau": r["kendall_tau"]}
                print(f"{rows:>8} {transform:>5}: {r['n_rows']:5d} rows  R² {r['r2']:.3f}  τ {r['kendall_tau']:.3f}")
    result = {
        "zoo": zoo.name, "models": zoo.n_models, "checkpoints": zoo.n_checkpoints, "target": args.target,
        "feature_seconds": seconds,
        "leaderboard": {k: b.to_dict(orient="records") for k, b in boards.items()},
        "retrieval_precision_at_10": retrieval.to_dict(orient="records"),
        "hyperrep": hyperrep,
        "anchor": {**anchor, "targets": {"r2": 0.9, "kendall_tau": 0.8}},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(f"\nanchor (stats + gbm): {json.dumps(anchor)} -> {args.out}")


if __name__ == "__main__":
    main()
