"""Model lineage (MoTHer): planted trees are recovered exactly, a permuted copy joins its family once aligned, the
bundled trees are recovered, and the Lineage page draws them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, sample_zoo
from pagetest import arr, chart, run_page

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.training import RECIPES
from wslviz.core.zoo import Zoo
from wslviz.understand import lineage as LN


def test_a_planted_forest_is_recovered_exactly():
    """Children are their parent plus noise, which lowers the kurtosis of heavy-tailed weights: every edge, its
    direction and the families come back, on a weights-only layout (no forward, no symmetries needed)."""
    zoo = LN.synthetic_forest(n_roots=3, children=3, depth=2, seed=1)
    assert zoo.arch.kind == "weights-only"
    for distance in LN.DISTANCES:
        lin = wv.lineage(zoo, distance=distance)
        truth = LN.true_parents(zoo, lin)
        assert np.array_equal(lin.parent, truth), distance
        assert LN.lineage_scores(lin, truth) == {"edge_accuracy": 1.0, "direction_accuracy": 1.0,
                                                 "families_exact": 1.0, "roots_found": 1.0}
        assert (lin.orientation == -1).all()  # parents have the higher kurtosis here
        assert len(np.unique(lin.family)) == 3 and np.isfinite(lin.threshold)
    kids = lin.parent >= 0
    assert ((lin.confidence[kids] >= 0) & (lin.confidence[kids] <= 1)).all() and np.isnan(lin.confidence[~kids]).all()


def test_the_direction_decides_where_distances_cannot():
    """A chain root -> child -> grandchild: distances alone cannot tell which end is the root, the kurtosis can; the
    undirected score roots the chain at its middle (its medoid)."""
    zoo = LN.synthetic_forest(n_roots=1, children=1, depth=2, seed=3)
    lin = wv.lineage(zoo)
    assert list(lin.parent) == [-1, 0, 1]
    assert list(wv.lineage(zoo, score="none").parent) == [1, -1, 1]


def permuted_zoo() -> tuple[Zoo, int]:
    """Two independent MLP families (a root and three fine-tune-like children each) and a permuted copy of root 0."""
    arch = Architecture(mlp_spec([8, 32, 32, 4]))
    gen = torch.Generator().manual_seed(0)
    rows, weights = [], []
    for f in range(2):
        root = torch.randn(arch.n_params, generator=gen)
        weights.append(root)
        rows.append({"model_id": len(rows), "parent": None, "family": f})
        me = len(rows) - 1
        for _ in range(3):
            weights.append(root + 0.05 * torch.randn(arch.n_params, generator=gen))
            rows.append({"model_id": len(rows), "parent": me, "family": f})
    copy = wv.apply_symmetry(arch, weights[0], wv.random_symmetry(arch, seed=5, kinds=("permutation",)))
    weights.append(copy)
    rows.append({"model_id": len(rows), "parent": 0, "family": 0})
    meta = pd.DataFrame(rows)
    meta["parent"] = meta["parent"].astype("Int64")
    return Zoo("permuted", meta, torch.stack(weights), arch), len(rows) - 1


def test_a_permuted_copy_of_a_root_joins_its_family_once_aligned():
    zoo, copy = permuted_zoo()
    aligned = wv.lineage(zoo)
    assert aligned.aligned and aligned.family[copy] == aligned.family[0]
    assert aligned.distances[0, copy] == pytest.approx(0.0, abs=1e-4)  # the same function: matched exactly
    assert LN.lineage_scores(aligned, LN.true_parents(zoo, aligned))["families_exact"] == 1.0
    raw = wv.lineage(zoo, aligned=False)
    assert not raw.aligned and raw.family[copy] != raw.family[0]  # far for the wrong reason


def test_the_base_of_digits_finetunes_is_the_root_of_all_30_finetunes():
    zoo = sample_zoo("digits-finetunes")
    lin = wv.lineage(zoo)
    assert len(lin.rows) == 31 and (lin.family == 0).all()
    assert list(lin.model_ids[lin.parent < 0]) == [0]  # the base
    summary = LN.family_summary(lin)
    assert summary["root"].tolist() == [0] and summary["size"].tolist() == [31]


def test_the_bundled_tree_is_its_recipe_and_is_recovered():
    zoo = sample_zoo("digits-lineage")
    plan = RECIPES["digits-lineage"].plan()
    meta = zoo.metadata
    assert meta["model_id"].tolist() == plan["model_id"].tolist()
    assert meta["parent"].astype("Float64").fillna(-1).tolist() == plan["parent"].fillna(-1).tolist()
    assert meta.groupby("depth").size().tolist() == [3, 9, 18]
    lin = wv.lineage(zoo)
    scores = LN.lineage_scores(lin, LN.true_parents(zoo, lin))
    assert scores["families_exact"] == 1.0 and scores["roots_found"] == 1.0
    assert scores["edge_accuracy"] >= 0.95 and scores["direction_accuracy"] >= 0.95
    # the baselines it is compared with in benchmarks/lineage_table.py are worse here
    truth = LN.true_parents(zoo, lin)
    kids = truth >= 0
    assert np.mean(LN.nearest_parent_baseline(lin)[kids] == truth[kids]) < scores["edge_accuracy"]


def test_bad_requests_say_what_is_wrong():
    zoo = LN.synthetic_forest(n_roots=1, children=2, depth=1)
    with pytest.raises(ValueError, match="unknown direction score"):
        wv.lineage(zoo, score="entropy")
    with pytest.raises(ValueError, match="unknown distance"):
        wv.lineage(zoo, distance="cosine")
    with pytest.raises(ValueError, match="rows must be"):
        wv.lineage(zoo, rows=[0, 99])


def test_the_lineage_page_draws_the_recovered_tree(monkeypatch):
    at = run_page(monkeypatch, str(ROOT / "pages" / "9_Lineage.py"), str(ROOT / "sample_zoo" / "digits-lineage"))
    at.button(key="lin_go").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Families"] == "3" and metrics["Families right"] == "yes"
    assert float(metrics["Edges right"].rstrip("%")) >= 95
    fig = chart(at, "lin_chart")
    rows = {int(r) for trace in fig["data"] if "customdata" in trace for r in arr(trace["customdata"]).ravel()}
    assert rows == set(range(30))  # every model is a node, selectable by its zoo row
    assert len(at.dataframe[0].value) == 27  # one edge per non-root model
    assert any("kurtosis" in md.value and "at the root" in md.value for md in at.markdown)



def test_the_lineage_page_runs_on_the_lora_zoo(monkeypatch):
    at = run_page(monkeypatch, str(ROOT / "pages" / "9_Lineage.py"), str(ROOT / "sample_zoo" / "digits-lora"))
    at.button(key="lin_go").click().run()
    assert not at.exception and not at.error
    fig = chart(at, "lin_chart")
    rows = {int(r) for trace in fig["data"] if "customdata" in trace for r in arr(trace["customdata"]).ravel()}
    assert rows == set(range(108))


def test_lora_zoos_run_and_an_adapter_in_other_coordinates_joins_its_original():
    zoo = sample_zoo("digits-lora")
    rows = torch.as_tensor([0, 40, 80])  # one adapter of each task
    scrambled = zoo.arch.apply_gl(zoo.weights[rows], zoo.arch.random_gl("general", 5))
    meta = pd.concat([zoo.metadata.iloc[rows.numpy()], zoo.metadata.iloc[rows.numpy()]], ignore_index=True)
    meta["model_id"] = range(6)
    twins = wv.Zoo("lora-twins", meta, torch.cat([zoo.weights[rows], scrambled]), zoo.arch)
    lin = wv.lineage(twins)
    assert len(set(lin.family)) == 3  # each adapter and its re-expressed copy form a family of their own
    for i in range(3):
        assert lin.family[i] == lin.family[i + 3]
