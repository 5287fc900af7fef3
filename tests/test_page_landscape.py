"""The Landscape page under AppTest: paths, a plane, a random-direction surface, trajectory and Bezier
curve computed on the moons sample zoo with small grids; results equal the library's."""

from __future__ import annotations

import numpy as np
import pagetest
import pytest
from conftest import ROOT, SAMPLE, random_zoo
from pagetest import arr, chart
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.formats import save_zoo
from wslviz.plots import landscape as P
from wslviz.scale.cache import load_zoo
from wslviz.understand import landscape as L
from wslviz.understand import surfaces as S

PAGE = str(ROOT / "pages" / "4_Landscape.py")
MOONS = str(SAMPLE / "moons-mlp")


def run_page(monkeypatch, path: str, selection: list[int] | None = None) -> AppTest:
    return pagetest.run_page(monkeypatch, PAGE, path, selection)


def test_first_paint_computes_nothing_and_takes_the_linked_selection(monkeypatch):
    zoo = load_zoo(MOONS)
    # epochs 0, 1, 2 of one model, and another model's untrained checkpoint: A is the trained one, B and C
    # come from other models (best final checkpoints), never a second epoch of A's model
    one_model = [int(r) for r in np.flatnonzero(zoo.metadata["model_id"] == zoo.metadata["model_id"].iloc[0])[:3]]
    other = int(np.flatnonzero((zoo.metadata["model_id"] != zoo.metadata["model_id"].iloc[0])
                               & (zoo.metadata["epoch"] == 0))[0])
    at = run_page(monkeypatch, MOONS, selection=[*one_model, other])
    assert not at.get("plotly_chart")
    picked = [at.selectbox(key=k).value for k in ("land_a", "land_b", "land_c")]
    assert picked[0] == one_model[-1]
    assert picked[1] == other  # the selection's other model comes next (untrained: after trained ones)
    models = zoo.metadata["model_id"].iloc[picked]
    assert models.nunique() == 3 and zoo.metadata["epoch"].iloc[picked[2]] == zoo.metadata["epoch"].max()
    for key in ("land_path_go", "land_matrix_go", "land_plane_go", "land_rand_go", "land_traj_go", "land_bez_go"):
        assert at.button(key=key)


def test_path_plane_and_random_surface(monkeypatch):
    zoo = load_zoo(MOONS)
    a, b, c = ui.default_rows(zoo, 3, [])
    acc = zoo.metadata["test_acc"].to_numpy()
    assert acc[a] == acc[zoo.final_index()].max() and acc[a] >= acc[b] >= acc[c]  # the best final checkpoints
    at = run_page(monkeypatch, MOONS)
    assert [at.selectbox(key=k).value for k in ("land_a", "land_b", "land_c")] == [a, b, c]

    at.slider(key="land_path_steps").set_value(7)
    at.button(key="land_path_go").click().run()
    assert not at.exception, at.exception
    fig = chart(at, "land_path_fig")
    assert len(fig["data"]) == 6  # three methods x (loss, accuracy)
    shown = at.dataframe[0].value
    expected = L.barriers(L.paths(zoo.arch, zoo.task, zoo.weights[a], zoo.weights[b], steps=7))
    shown = shown.set_index("method").loc[[P.METHOD_LABELS[m] for m in expected["method"]]].reset_index()
    # the table shows 4 decimals (a barrier of 1e-16 is float rounding): equal to half a unit in the last place
    assert shown["loss barrier"].to_numpy() == pytest.approx(expected["loss_barrier"].to_numpy(), abs=5e-5 + 1e-7)

    at.slider(key="land_plane_res").set_value(5)
    at.button(key="land_plane_go").click().run()
    assert not at.exception, at.exception
    fig = chart(at, "land_plane_fig")
    maps = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert len(maps) == 2 and arr(maps[0]["z"]).shape == (5, 5)
    naive = S.plane(zoo.arch, zoo.task, zoo.weights[a], zoo.weights[b], zoo.weights[c], 5, 0.25)
    assert np.allclose(arr(maps[0]["z"]), np.log10(naive.loss), atol=1e-5)

    at.slider(key="land_rand_res").set_value(5)
    at.button(key="land_rand_go").click().run()
    assert not at.exception, at.exception
    assert chart(at, "land_rand_3d")["data"][0]["type"] == "surface"
    assert [t["type"] for t in chart(at, "land_rand_contour")["data"][:2]] == ["heatmap", "contour"]
    assert len(chart(at, "land_rand_line")["data"]) == 2
    # results stay on the page across reruns (from the cache), and the path chart is still there
    at.run()
    assert chart(at, "land_path_fig") and chart(at, "land_rand_3d")


def test_matrix_trajectory_and_bezier(monkeypatch):
    zoo = load_zoo(MOONS)
    rows = [int(r) for r in zoo.final_index()[:3]]
    at = run_page(monkeypatch, MOONS)
    at.multiselect(key="land_matrix_rows").set_value(rows)
    at.slider(key="land_matrix_steps").set_value(5)
    at.button(key="land_matrix_go").click().run()
    assert not at.exception, at.exception
    heat = [t for t in chart(at, "land_matrix_fig")["data"] if t["type"] == "heatmap"]
    naive = L.barrier_matrix(zoo.arch, zoo.task, zoo.weights[rows], steps=5)
    assert np.allclose(arr(heat[0]["z"]), naive["loss"], atol=1e-6)
    at.checkbox(key="land_matrix_act").check().run()
    assert len([t for t in chart(at, "land_matrix_fig")["data"] if t["type"] == "heatmap"]) == 2  # until pressed
    at.button(key="land_matrix_go").click().run()
    assert len([t for t in chart(at, "land_matrix_fig")["data"] if t["type"] == "heatmap"]) == 3

    at.slider(key="land_traj_res").set_value(5)
    at.button(key="land_traj_go").click().run()
    assert not at.exception, at.exception
    traj = [t for t in chart(at, "land_traj_fig")["data"] if t.get("name") == "trajectory"]
    n = int((zoo.metadata["model_id"] == zoo.metadata["model_id"].iloc[rows[0]]).sum())
    assert len(arr(traj[0]["x"])) == n

    at.slider(key="land_bez_iter").set_value(20)
    at.button(key="land_bez_go").click().run()
    assert not at.exception, at.exception
    assert len(chart(at, "land_bez_fig")["data"]) == 4


def test_zoo_without_task_says_what_is_missing(monkeypatch, tmp_path):
    zoo = random_zoo(Architecture(mlp_spec([2, 4, 2])), None, n_models=3)
    path = str(save_zoo(zoo, tmp_path / "weights-only"))
    at = run_page(monkeypatch, path)
    assert any("no evaluation data" in w.value for w in at.warning)
    assert not at.button


def test_path_with_both_splits_and_log_loss(monkeypatch):
    zoo = load_zoo(MOONS)
    a, b = ui.default_rows(zoo, 2, [])
    at = run_page(monkeypatch, MOONS)
    at.slider(key="land_path_steps").set_value(5)
    at.toggle(key="land_path_both").set_value(True)
    at.toggle(key="land_path_log").set_value(True)
    at.button(key="land_path_go").click().run()
    assert not at.exception, at.exception
    fig = chart(at, "land_path_fig")
    assert len(fig["data"]) == 12  # three methods x two splits x (loss, accuracy)
    assert [t["line"].get("dash") for t in fig["data"][:4]] == [None, None, "dash", "dash"]  # training split dashed
    assert fig["layout"]["yaxis"]["type"] == "log"
    table = at.dataframe[0].value
    assert sorted(table["split"].unique()) == ["test", "train"] and len(table) == 6
    train = L.barriers(L.paths(zoo.arch, zoo.task, zoo.weights[a], zoo.weights[b], steps=5, split="train"))
    shown = table[table["split"] == "train"]["loss barrier"].to_numpy()
    assert shown == pytest.approx(train["loss_barrier"].to_numpy(), abs=5e-5 + 1e-7)  # shown to 4 decimals


def test_sharpness_tab_draws_eigenvalue_and_trace(monkeypatch):
    """The sharpness figure equals the library's numbers for the same checkpoints and batch."""
    from wslviz.understand import sharpness as H

    zoo = load_zoo(MOONS)
    at = run_page(monkeypatch, MOONS)
    rows = [int(r) for r in zoo.final_index()[:3]]
    at.multiselect(key="land_sharp_rows").set_value(rows)
    at.select_slider(key="land_sharp_n").set_value(64)
    at.select_slider(key="land_sharp_probes").set_value(4)
    at.button(key="land_sharp_go").click().run()
    assert not at.exception, at.exception
    fig = chart(at, "land_sharp_fig")
    expected = H.sharpness(zoo.arch, zoo.task, zoo.weights[rows], "test", 64, n_iter=30, tol=1e-3, n_probes=4)
    eig = [t for t in fig["data"] if t.get("xaxis", "x") == "x"][0]
    np.testing.assert_allclose(np.sort(arr(eig["y"])), np.sort(expected["top_eigenvalue"]), rtol=1e-4)
    assert fig["layout"]["yaxis"]["title"]["text"] and fig["layout"]["yaxis2"]["title"]["text"]
    at.toggle(key="land_sharp_run").set_value(True).run()
    at.button(key="land_sharp_go").click().run()
    assert not at.exception, at.exception
    assert at.radio(key="land_sharp_x_run").value == "epoch"
    assert len(chart(at, "land_sharp_fig")["data"]) == 2  # one model: its eigenvalue and trace lines
