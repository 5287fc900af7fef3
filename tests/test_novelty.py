"""Honest novelty: error-IoU novelty (Zeng et al. 2025), the noise frontier, verdicts, and the Generate page
drawing two generators against the frontier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from wslviz import generation as G
from wslviz.generation.novelty import SUMMARY_COLUMNS, summary_table
from wslviz.plots import generate as PG
from wslviz.plots import novelty as PN
from wslviz.plots.zoo import singular_values

PAGE = Path(__file__).resolve().parents[1] / "pages" / "6_Generate.py"


def test_error_iou_on_small_sets():
    a = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    z = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    iou = G.error_iou(a, z)
    assert iou.tolist() == [[pytest.approx(1 / 3), 0.0], [0.0, 1.0], [0.0, 1.0]]


@pytest.fixture(scope="module")
def moons_frontier(moons_zoo):
    index = G.NoveltyIndex(moons_zoo).fit()
    return index, G.noise_frontier(moons_zoo, index, amplitudes=(0.0, 0.1, 0.5, 1.0), n_sources=4, n_draws=2)


def test_zoo_models_are_not_novel_and_noise_makes_them_so(moons_zoo, moons_frontier):
    index, fr = moons_frontier
    final = moons_zoo.final_index()[:5]
    own = index.query(moons_zoo.weights[torch.as_tensor(final)])
    assert (own["max_error_iou"] == 1.0).all() and (own["error_novelty"] == 0.0).all()
    assert np.allclose(own["distance"], 0.0, atol=1e-3)
    assert len(fr.points) == 4 * 2 * 4 and len(fr.curve) == 4 * 4
    for _, c in fr.curve.groupby("source_row"):
        assert list(c["amplitude"]) == [0.0, 0.1, 0.5, 1.0]
        assert c["error_novelty"].iloc[0] == 0.0 and c["distance"].iloc[0] < 1e-3
        assert c["distance"].is_monotonic_increasing  # more noise, farther away
    # the frontier's sources are the zoo's most accurate final checkpoints
    acc = moons_zoo.metadata["test_acc"].to_numpy()
    final_acc = np.sort(acc[moons_zoo.final_index()])
    assert acc[fr.points["source_row"]].min() >= final_acc[-4]
    line = fr.line()
    assert line["error_novelty"].is_monotonic_increasing and line["accuracy"].is_monotonic_decreasing
    assert line["accuracy"].iloc[0] == pytest.approx(final_acc[-1])  # no noise: the best zoo model


def test_beyond_the_frontier_means_above_its_upper_envelope():
    curve = pd.DataFrame({"amplitude": [0.0, 0.1, 0.2, 0.3], "accuracy": [0.9, 0.8, 0.6, 0.7],
                          "distance": [0.0, 1.0, 2.0, 3.0], "error_novelty": [0.0, 0.2, 0.4, 0.3]})
    fr = G.NoiseFrontier(points=curve, curve=curve)
    # sorted by novelty: (0, .9), (.2, .8), (.3, .7), (.4, .6): already non-increasing
    np.testing.assert_allclose(fr.envelope([0.0, 0.1, 0.25, 0.5]), [0.9, 0.85, 0.75, 0.6])
    assert fr.beyond([0.1, 0.1, 0.5], [0.86, 0.84, 0.61]).tolist() == [True, False, True]
    assert not fr.beyond([0.0], [0.99])[0]  # a copy of a zoo model is never beyond, however accurate
    # a dip in the curve does not lower the bar: the envelope keeps the best accuracy at equal or more novelty
    dip = curve.assign(error_novelty=[0.0, 0.2, 0.3, 0.4], accuracy=[0.9, 0.6, 0.5, 0.7])
    fr = G.NoiseFrontier(points=dip, curve=dip)
    np.testing.assert_allclose(fr.envelope([0.2, 0.3]), [0.7, 0.7])
    # several sources: the frontier is the best any one of them reaches
    two = pd.concat([curve.assign(source_row=0), curve.assign(source_row=1, accuracy=curve["accuracy"] - 0.05,
                                                               error_novelty=curve["error_novelty"] + 0.1)])
    np.testing.assert_allclose(G.NoiseFrontier(points=two, curve=two).envelope([0.1, 0.35]), [0.85, 0.70])
    gen = pd.DataFrame({"accuracy": [0.95, 0.65], "error_novelty": [0.3, 0.3], "distance": [1.0, 1.0]})
    v = G.frontier_verdict(fr, gen, zoo_final_median=0.8)
    assert v["beyond"] and v["meets_median"] and v["done"] and v["share_beyond"] == 0.5
    assert v["margin"] == pytest.approx(0.8 - 0.7)
    text = G.frontier_statement({"a": v}, 0.8)
    assert text.startswith("Beyond the noise frontier") and "a" in text
    worse = dict(v, beyond=False, done=False, margin=-0.02)
    assert "No generator beats" in G.frontier_statement({"a": worse}, 0.8) and "0.020 accuracy below" in \
        G.frontier_statement({"a": worse}, 0.8)


def test_frontier_figure_draws_noise_curve_and_each_generator(moons_frontier, moons_zoo):
    index, fr = moons_frontier
    gen = {"kde": index.query(G.generate(moons_zoo, "kde", n=4))}
    fig = PN.frontier(fr.points, fr.line(), gen, reference=0.9)
    names = [t.name for t in fig.data]
    assert names == ["zoo + noise", "noise frontier", "kde", "kde (mean)"]
    assert len(fig.data[1].x) == len(fr.line()) and len(fig.data[2].x) == 4
    with pytest.raises(ValueError, match="measure"):
        PN.frontier(fr.points, fr.line(), gen, measure="magic")


def test_generate_page_draws_two_generators_against_the_frontier(moons_zoo):
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.session_state["zoo_path"] = str(moons_zoo.path)
    at.run()
    for method in ("pca_gaussian", "kde"):
        at.selectbox(key="gen_method").select(method).run()
        assert at.toggle(key=f"gen_tuned_{method}").value is True  # the page opens on the tuned settings
        at.slider(key="gen_n").set_value(8).run()
        at.button(key="gen_go").click().run()
        assert not at.exception and not at.error
    at.button(key="gen_frontier_go").click().run()
    assert not at.exception and not at.error
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    spec = next(v for k, v in charts.items() if "gen_frontier" in k)
    names = [t.get("name") for t in spec["data"]]
    assert names[:2] == ["zoo + noise", "noise frontier"] and {"pca_gaussian", "kde"} <= set(names)
    statement = [m.value for m in at.markdown if "noise frontier" in m.value]
    assert statement and ("Beyond the noise frontier" in statement[-1] or "No generator beats" in statement[-1])
    at.radio(key="gen_frontier_measure").set_value("distance").run()
    assert not at.exception


def test_tuned_settings_are_valid_generator_options():
    from wslviz.generation.tuned import TUNED, tuned_options

    assert {"moons-mlp", "digits-cnn"} <= set(TUNED)
    for zoo_name, methods in TUNED.items():
        assert set(methods) == set(G.GENERATORS)
        for method in methods:
            G.make_generator(method, **tuned_options(zoo_name, method))  # every option is one the generator takes
    assert tuned_options("no-such-zoo", "kde") == {}
    opts = tuned_options("moons-mlp", "kde")
    opts["changed"] = 1
    assert "changed" not in tuned_options("moons-mlp", "kde")  # a copy, not the table itself


# ------------------------------------------------------------------ Generate figures: baselines, weights, spectra
def test_summary_table_has_verdicts_first_and_every_number_beside_its_baseline():
    comparison = {key: float(i) for i, key in enumerate(SUMMARY_COLUMNS)}
    table = summary_table({"kde": comparison, "merge": comparison}, learned=("kde",))
    assert list(table.columns) == ["generator", *SUMMARY_COLUMNS.values(), "learned"]
    assert list(table.columns[1:3]) == ["beats L2", "beats function"]
    assert table["learned"].tolist() == [True, False]
    assert table.loc[0, "noise NN distance"] == comparison["baseline_distance"]


def test_violins_draw_each_baseline_grey_beside_its_generator():
    fig = PG.accuracy_violins({"zoo final": [0.9, 0.95], "kde": [0.8, 0.9], "noise baseline (kde)": [0.85, 0.9],
                               "merge": [0.7], "noise baseline (merge)": [0.75]}, reference=0.92)
    colors = [t.line.color for t in fig.data]
    assert colors[2] == colors[4] == PG.BASELINE_COLOR
    assert len({colors[0], colors[1], colors[3]}) == 3 and PG.BASELINE_COLOR not in colors[:2]


def test_weight_distributions_are_densities_of_each_set(mlp_arch):
    g = torch.Generator().manual_seed(0)
    sets = {"zoo": torch.randn(5, mlp_arch.n_params, generator=g), "gen": 3 * torch.randn(4, mlp_arch.n_params,
                                                                                          generator=g)}
    fig = PG.weight_distributions(mlp_arch, sets, bins=20)
    matrices = [p for p in mlp_arch.layout if p.role == "weight"]
    assert len(fig.data) == len(sets) * len(matrices)
    for t in fig.data:  # each curve is a density on its panel's shared bins: it integrates to 1
        x = np.asarray(t.x)
        assert np.sum(np.asarray(t.y)) * (x[1] - x[0]) == pytest.approx(1.0, rel=1e-6)
    assert [t.name for t in fig.data[:2]] == ["zoo", "gen"]


def test_spectra_by_set_draw_the_median_singular_values(mlp_arch):
    g = torch.Generator().manual_seed(1)
    sets = {"zoo": torch.randn(5, mlp_arch.n_params, generator=g), "gen": torch.randn(3, mlp_arch.n_params,
                                                                                      generator=g)}
    fig = PG.spectra_by_set(mlp_arch, sets)
    lines = [t for t in fig.data if t.fill is None]
    expected = [np.median(singular_values(mlp_arch, w)[layer], axis=0)
                for layer in singular_values(mlp_arch, sets["zoo"]) for w in sets.values()]
    assert len(lines) == len(expected)
    for t, e in zip(lines, expected, strict=True):
        np.testing.assert_allclose(np.asarray(t.y), e, rtol=1e-6)
