"""The Symmetry page under AppTest: apply a symmetry, align two models, align a zoo; the figures carry
the library's numbers; zoos without a task and tanh zoos work."""

from __future__ import annotations

import numpy as np
import pagetest
import pytest
from conftest import ROOT, SAMPLE, random_zoo, sample_zoo
from pagetest import arr, chart
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.evaluation import model_outputs
from wslviz.core.tasks import make_task
from wslviz.formats import save_zoo
from wslviz.understand import align as A
from wslviz.understand import symmetry as S

PAGE = str(ROOT / "pages" / "3_Symmetry.py")


def make_zoo(tmp_path, activation: str = "relu", task: bool = True) -> str:
    arch = Architecture(mlp_spec([2, 8, 6, 2], activation))
    zoo = random_zoo(arch, make_task("moons") if task else None, n_models=5, epochs=(0, 1))
    path = tmp_path / f"zoo-{activation}-{task}"
    save_zoo(zoo, path)
    return str(path)


def run_page(monkeypatch, path: str, selection: list[int] | None = None) -> AppTest:
    return pagetest.run_page(monkeypatch, PAGE, path, selection, timeout=120)


def test_apply_symmetry_shows_moved_weights_and_same_function(monkeypatch, tmp_path):
    path = make_zoo(tmp_path)
    at = run_page(monkeypatch, path, selection=[3, 7])
    zoo = ui.open_zoo(path)
    first, second = ui.default_rows(zoo, 2, [3, 7])  # two trained checkpoints of distinct models, best first
    assert {first, second} == {3, 7}
    assert zoo.metadata["test_acc"].iloc[first] >= zoo.metadata["test_acc"].iloc[second]
    assert at.selectbox(key="sym_model").value == first
    assert at.selectbox(key="sym_a").value == first and at.selectbox(key="sym_b").value == second
    theta = zoo.weights[first]
    moved = S.apply_symmetry(zoo.arch, theta, S.random_symmetry(zoo.arch, seed=0))
    heat = chart(at, "sym_heatmaps")["data"]  # default: the last hidden layer, permuted on both sides
    np.testing.assert_allclose(arr(heat[0]["z"]), zoo.arch.unflatten(theta)["2.weight"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(arr(heat[1]["z"]), zoo.arch.unflatten(moved)["2.weight"].numpy(), rtol=1e-6)
    bars = chart(at, "sym_dist_vs_out")["data"]
    assert list(bars[0]["x"]) == ["permutation", "ReLU rescaling", "permutation + ReLU rescaling"]
    assert min(arr(bars[0]["y"])) > 0.1 and max(arr(bars[1]["y"])) <= 1e-5  # far in weights, same outputs
    # the button draws a new element
    at.button(key="sym_apply").click().run()
    assert not at.exception and at.number_input(key="sym_seed").value == 1
    moved1 = S.apply_symmetry(zoo.arch, theta, S.random_symmetry(zoo.arch, seed=1))
    np.testing.assert_allclose(arr(chart(at, "sym_heatmaps")["data"][1]["z"]),
                               zoo.arch.unflatten(moved1)["2.weight"].numpy(), rtol=1e-6)
    at.selectbox(key="sym_layer").set_value(0).run()
    assert arr(chart(at, "sym_heatmaps")["data"][0]["z"]).shape == (8, 2)


def test_align_two_models(monkeypatch, tmp_path):
    path = make_zoo(tmp_path)
    at = run_page(monkeypatch, path, selection=[1, 4])
    assert "sym_moved" not in str([c.proto.id for c in at.get("plotly_chart")])
    at.button(key="sym_align").click().run()
    assert not at.exception, at.exception
    zoo = ui.open_zoo(path)
    assert ui.default_rows(zoo, 2, [1, 4]) == [1, 4]  # row 4 is an untrained checkpoint: it comes second
    a, b = zoo.weights[1], zoo.weights[4]
    aligned, g = A.weight_matching(zoo.arch, a, b, return_perm=True)  # default: permutations + scale/sign
    moved = chart(at, "sym_moved")["data"][0]
    assert list(arr(moved["x"])) == [int(n) for n in g.units_moved()]
    dist = chart(at, "sym_layer_dist")["data"]
    np.testing.assert_allclose(arr(dist[1]["y"]), [v[0] for k, v in S.layer_distances(zoo.arch, a, aligned).items()
                                                   if k != "total"], rtol=1e-5)
    matrix = chart(at, "sym_matrix")["data"]
    assert list(arr(matrix[1]["x"])) == g.perms[0].tolist()
    # A, B and B aligned to A: the first hidden layer's incoming weights, the aligned rows labelled by the matching
    heat = chart(at, "sym_pair_heatmaps")["data"]
    for trace, w in zip(heat, (a, b, aligned), strict=True):
        np.testing.assert_allclose(arr(trace["z"]), zoo.arch.unflatten(w)["0.weight"].numpy(), rtol=1e-5, atol=1e-6)
    assert arr(heat[2]["customdata"])[:, 0].tolist() == g.perms[0].tolist()
    assert arr(heat[1]["customdata"])[:, 0].tolist() == list(range(8))
    # the explainer states what the chart shows: how many layers came closer (it used to say "every layer")
    before, after = S.layer_distances(zoo.arch, a, b), S.layer_distances(zoo.arch, a, aligned)
    layers = [k for k in before if k != "total"]
    closer = sum(float(after[k][0]) < float(before[k][0]) for k in layers)
    assert any(f"{closer} of {len(layers)} layers are closer" in md.value for md in at.markdown)
    # second hidden layer; activation matching, permutations only
    at.selectbox(key="sym_group").set_value(1).run()
    assert list(arr(chart(at, "sym_matrix")["data"][1]["x"])) == g.perms[1].tolist()
    at.radio(key="sym_method").set_value("activation").run()
    at.radio(key="sym_align_kinds").set_value("permutations only").run()
    at.button(key="sym_align").click().run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) >= 5


def test_zoo_spread(monkeypatch, tmp_path):
    path = make_zoo(tmp_path)
    at = run_page(monkeypatch, path)
    at.slider(key="sym_zoo_n").set_value(4).run()
    at.button(key="sym_zoo_go").click().run()
    assert not at.exception, at.exception
    zoo = ui.open_zoo(path)
    rows = [int(r) for r in zoo.final_index()[:4]]
    expected = A.symmetry_spread(zoo.arch, zoo.weights[rows])
    hist = chart(at, "sym_spread")["data"]
    assert len(hist) == 4
    for trace, values in zip(hist, expected.values(), strict=True):
        np.testing.assert_allclose(np.sort(arr(trace["x"])), np.sort(values), rtol=1e-5)
    assert np.median(expected["permutations"]) < np.median(expected["as trained"])


def test_tanh_zoo_without_task(monkeypatch, tmp_path):
    path = make_zoo(tmp_path, "tanh", task=False)
    at = run_page(monkeypatch, path)
    assert at.multiselect(key="sym_kinds").value == ["permutation", "sign"]
    assert [str(o) for o in at.radio(key="sym_method").options] == ["weight matching"]
    bars = chart(at, "sym_dist_vs_out")["data"]
    assert max(arr(bars[1]["y"])) <= 1e-5
    at.button(key="sym_align").click().run()
    assert not at.exception, at.exception
    at.multiselect(key="sym_kinds").set_value([]).run()
    assert not at.exception and any("at least one" in i.value for i in at.info)


def test_sample_zoos(monkeypatch):
    """Each bundled zoo: first paint, a new symmetry, and an alignment, without an exception."""
    for name in ("moons-mlp", "spirals-tanh", "digits-cnn"):
        at = run_page(monkeypatch, str(SAMPLE / name))
        zoo = ui.open_zoo(str(SAMPLE / name))
        outputs = model_outputs(zoo.arch, zoo.weights[at.selectbox(key="sym_model").value][None], zoo.task.x_test)
        # float32 rounding of outputs of this size, accumulated over a few layers
        assert max(arr(chart(at, "sym_dist_vs_out")["data"][1]["y"])) <= 64 * 2**-23 * max(1.0, outputs.abs().max())
        at.button(key="sym_apply").click().run()
        at.button(key="sym_align").click().run()
        assert not at.exception, (name, at.exception)
        assert chart(at, "sym_matrix")


def test_symmetry_barrier_is_the_landscape_barrier(moons_zoo):
    """One definition and one default resolution: the Symmetry page's barrier of a pair is the Landscape
    page's (naive and weight-matched) for the same pair (to float32 rounding: the pages evaluate the paths
    in batches of different sizes)."""
    from wslviz.understand import landscape as L
    from wslviz.understand import summaries

    f = moons_zoo.final_index()
    a, b = moons_zoo.weights[int(f[0])], moons_zoo.weights[int(f[1])]
    report = summaries.alignment_report(moons_zoo.arch, moons_zoo.task, a, b)
    bars = L.barriers(L.paths(moons_zoo.arch, moons_zoo.task, a, b)).set_index("method")["loss_barrier"]
    assert report["barrier_before"] == pytest.approx(bars["naive"], rel=1e-5, abs=1e-7)
    assert report["barrier_after"] == pytest.approx(bars["weight"], rel=1e-5, abs=1e-7)
    assert report["barrier_after"] < report["barrier_before"]


def test_symmetry_and_landscape_show_one_barrier_for_one_correction():
    """The pair of digits-resnet models that showed 0.832 on Symmetry and 1.502 on Landscape: both pages now
    measure the barrier with the same correction of the points between (BatchNorm reset by default for BatchNorm
    networks, named beside the number), the same resolution and the same alignment, so they agree."""
    from wslviz.understand import landscape as L
    from wslviz.understand import summaries

    zoo = sample_zoo("digits-resnet")
    acc = zoo.metadata["test_acc"].to_numpy()
    final = np.sort(zoo.final_index())
    a, b = (int(r) for r in final[np.argsort(-acc[final])][:2])
    report = summaries.alignment_report(zoo.arch, zoo.task, zoo.weights[a], zoo.weights[b])
    assert report.correction == "reset"
    bars = L.barrier_table(L.paths_by_split(zoo.arch, zoo.task, zoo.weights[a], zoo.weights[b], ("naive", "weight")))
    by = bars.set_index("method")["loss_barrier"]
    assert report.barrier_before == pytest.approx(by["naive"], rel=1e-4, abs=1e-6)
    assert report.barrier_after == pytest.approx(by["weight"], rel=1e-4, abs=1e-6)
    assert report.barrier_after < report.barrier_before
