"""Model lineage: how well each direction score and distance recovers known family trees, against two baselines.

Zoos: ``digits-lineage`` (3 roots, 9 fine-tunes, 18 fine-tunes of those: 27 known edges), ``digits-finetunes``
(one base, 30 fine-tunes), and a planted synthetic forest of 200 models (5 roots, 3 children per node, depth 3;
heavy-tailed roots, children = parent + noise). Per zoo and setting: directed edge accuracy, direction accuracy,
whether the families are exact, whether the roots are found, and seconds. Baselines (on the same distances and
families): each model's nearest neighbour as its parent, and the undirected minimum spanning tree oriented from the
true root. Also draws the 200-model forest (``docs/screenshots/lineage-200.png``, through kaleido and Debian's
chromium) to show that the graph stays readable at that size.

    .venv/bin/python benchmarks/lineage_table.py [--no-figure]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import wslviz as wv
from wslviz.plots import lineage as P
from wslviz.understand import lineage as LN

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "lineage_table.json"
FIGURE = ROOT / "docs" / "screenshots" / "lineage-200.png"


def zoos() -> dict:
    return {"digits-lineage": wv.load_zoo(ROOT / "sample_zoo" / "digits-lineage", cache=False),
            "digits-finetunes": wv.load_zoo(ROOT / "sample_zoo" / "digits-finetunes", cache=False),
            "synthetic-200": LN.synthetic_forest(n_roots=5, children=3, depth=3, seed=0)}


def truth_of(name: str, zoo, lin) -> np.ndarray:
    if name == "digits-finetunes":  # model 0 is the base of every fine-tune
        return np.where(lin.model_ids == 0, -1, int(np.flatnonzero(lin.model_ids == 0)[0]))
    return LN.true_parents(zoo, lin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-figure", action="store_true", help="skip the 200-model PNG")
    args = parser.parse_args()
    rows = []
    for name, zoo in zoos().items():
        for score in LN.SCORES:
            for distance in LN.DISTANCES:
                start = time.perf_counter()
                lin = wv.lineage(zoo, score=score, distance=distance)
                seconds = time.perf_counter() - start
                truth = truth_of(name, zoo, lin)
                s = LN.lineage_scores(lin, truth)
                kids = truth >= 0
                row = {"zoo": name, "score": score, "distance": distance, **s, "seconds": seconds,
                       "nearest_neighbour": float(np.mean(LN.nearest_parent_baseline(lin)[kids] == truth[kids])),
                       "rooted_mst": float(np.mean(LN.rooted_mst_baseline(lin, np.flatnonzero(truth < 0))[kids]
                                                   == truth[kids]))}
                rows.append(row)
                print(f"{name:17s} {score:10s} {distance:9s} edges {s['edge_accuracy']:.3f} "
                      f"directions {s['direction_accuracy']:.3f} families {s['families_exact']:.0f} "
                      f"roots {s['roots_found']:.2f} | nearest-neighbour {row['nearest_neighbour']:.3f} "
                      f"rooted MST {row['rooted_mst']:.3f} | {seconds:.1f} s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1))
    print(f"wrote {OUT.relative_to(ROOT)}")
    if not args.no_figure:
        zoo = LN.synthetic_forest(n_roots=5, children=3, depth=3, seed=0)
        lin = wv.lineage(zoo)
        truth = LN.true_parents(zoo, lin)
        meta = zoo.metadata.iloc[lin.rows].reset_index(drop=True)
        fig = P.lineage_figure(lin.parent, lin.family, lin.confidence, [f"model {m}" for m in lin.model_ids],
                               lin.rows, meta["depth"], None, truth, (),
                               title="200 models in 5 planted families, recovered (kurtosis, layer-max)", height=620)
        os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
        FIGURE.write_bytes(fig.to_image(format="png", width=1400, height=620, scale=1))
        print(f"wrote {FIGURE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
