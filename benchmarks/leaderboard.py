"""Property-prediction leaderboard on a sample zoo (default digits-cnn): every feature set x predictor,
scored by model-grouped 5-fold cross-validation for test accuracy, on all checkpoints and on final
checkpoints only; retrieval precision@10 against function space; hyper-representation reconstruction.

Writes ``benchmarks/results/leaderboard.json`` and prints markdown tables for the README. Usage:
    .venv/bin/python benchmarks/leaderboard.py [--zoo sample_zoo/digits-cnn] [--target test_acc] [--no-learned]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import pandas as pd

import wslviz as wv
from wslviz.features import aligned_weights, feature_set
from wslviz.hyperrep import HyperRepresentation, reconstruction_quality
from wslviz.predict import leaderboard
from wslviz.retrieval import retrieval_benchmark

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
    ap.add_argument("--no-learned", action="store_true", help="skip the hyper-representation feature set")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "leaderboard.json"))
    args = ap.parse_args()
    zoo = wv.load_zoo(args.zoo)
    kinds = ["flat", "aligned", "stats", "spectral", "functional"] + ([] if args.no_learned else ["learned"])
    feats, seconds = {}, {}
    for kind in kinds:
        t = time.perf_counter()
        feats[kind] = feature_set(zoo, kind).values
        seconds[kind] = time.perf_counter() - t
        print(f"{kind:>10}: {feats[kind].shape[1]:5d} features in {seconds[kind]:.1f} s", flush=True)
    boards = {}
    for rows in ("all", "final"):
        t = time.perf_counter()
        board = leaderboard(zoo, args.target, kinds, rows=rows, features=feats)
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
    final = zoo.subset(zoo.final_index())
    w = aligned_weights(final)
    t = time.perf_counter()
    hr = HyperRepresentation(random_state=0).fit((zoo.arch, w))
    fit_s = time.perf_counter() - t
    quality = reconstruction_quality(hr, zoo.task, w) if zoo.task is not None else {}
    print(f"\n### hyper-representation (latent 16) on {len(w)} aligned final checkpoints, fit {fit_s:.1f} s\n")
    print(json.dumps(quality, indent=1))
    anchor = boards["all"].query("features == 'stats' and model == 'gbm'").iloc[0]
    anchor_final = boards["final"].query("features == 'stats' and model == 'gbm'").iloc[0]
    result = {
        "zoo": zoo.name, "models": zoo.n_models, "checkpoints": zoo.n_checkpoints, "target": args.target,
        "feature_seconds": seconds,
        "leaderboard": {k: b.to_dict(orient="records") for k, b in boards.items()},
        "retrieval_precision_at_10": retrieval.to_dict(orient="records"),
        "hyperrep": {"fit_seconds": fit_s, "rows": len(w), **quality},
        "anchor": {"all": {"r2": float(anchor["r2"]), "kendall_tau": float(anchor["kendall_tau"])},
                   "final": {"r2": float(anchor_final["r2"]), "kendall_tau": float(anchor_final["kendall_tau"])},
                   "targets": {"r2": 0.9, "kendall_tau": 0.8}},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print(f"\nanchor (stats + gbm): all checkpoints R² {anchor['r2']:.3f} τ {anchor['kendall_tau']:.3f}; "
          f"final only R² {anchor_final['r2']:.3f} τ {anchor_final['kendall_tau']:.3f}  -> {args.out}")


if __name__ == "__main__":
    main()
