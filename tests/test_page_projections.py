"""The Projections page under Streamlit's AppTest: a projection computed, a colour change, a selection
set through session state (as a chart event would), search and highlight, the nearest neighbours of one
clicked checkpoint, a range chosen on a linked histogram, the epoch slider, fits kept on disk, and a zoo
without a task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from conftest import random_zoo
from pagetest import arr
from streamlit.testing.v1 import AppTest

from wslviz.formats import save_zoo
from wslviz.plots.embedding import DIMMED
from wslviz.scale.cache import CACHE_ENV

PAGE = Path(__file__).resolve().parents[1] / "pages" / "2_Projections.py"


@pytest.fixture(autouse=True)
def own_cache_root(tmp_path, monkeypatch):
    """Fits kept on disk go to this test's folder, not the user's cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))


def page(zoo_path) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.session_state["zoo_path"] = str(zoo_path)
    return at


def main_chart(at: AppTest) -> dict:
    for c in at.get("plotly_chart"):
        if "proj_chart" in c.proto.id and "proj_chart_" not in c.proto.id:
            return json.loads(c.proto.spec)
    raise AssertionError("the projection chart is missing")


def points(at: AppTest) -> list[dict]:
    """The main chart's marker traces (not the neighbours' rings)."""
    return [t for t in main_chart(at)["data"]
            if t.get("mode") == "markers" and t.get("name") not in ("nearest neighbours", "query")]


def drawn(at: AppTest) -> list[int]:
    return sorted(int(c[0]) for t in points(at) for c in t["customdata"])


def opacities(at: AppTest) -> list[tuple[int, float]]:
    """(row, opacity) of every drawn point."""
    return [(int(c[0]), o) for t in points(at) for c, o in zip(t["customdata"], arr(t["marker"]["opacity"]),
                                                               strict=True)]


def full_opacity(at: AppTest) -> list[int]:
    return sorted(r for r, o in opacities(at) if o == 1.0)


def test_projection_colour_and_selection(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    assert not at.exception and not at.error
    fig = main_chart(at)
    points = [t for t in fig["data"] if t.get("mode") == "markers"]
    assert sum(len(t["customdata"]) for t in points) == moons_zoo.n_checkpoints
    assert points[0]["marker"]["colorbar"]["title"]["text"].startswith("test accuracy")
    assert fig["layout"]["dragmode"] == "select" and {t["type"] for t in points} == {"scattergl"}
    assert not any(t.get("mode") == "lines" for t in fig["data"])  # no "join checkpoints" hairball by default
    at.toggle(key="proj_lines").set_value(True).run()
    assert any(t.get("mode") == "lines" for t in main_chart(at)["data"])  # checkpoints of one model joined

    at.selectbox(key="proj_color").select("lr").run()  # 4 learning rates over 1.5 decades: continuous, log scale
    assert not at.exception
    points = [t for t in main_chart(at)["data"] if t.get("mode") == "markers"]
    bar = points[0]["marker"]["colorbar"]
    assert len(points) == 1 and "log scale" in bar["title"]["text"]
    # round ticks in plain numbers: the decades the learning rates span, and 2 and 5 between them (< 2 decades)
    assert {"0.01", "0.1"} <= set(bar["ticktext"]) and "e" not in "".join(bar["ticktext"])
    assert all(f"{float(t):.0e}"[0] in "125" for t in bar["ticktext"])
    assert all(0 <= v <= 1 for v in bar["tickvals"])

    rows = [3, 10, 42]
    at.session_state["proj_chart"] = {"selection": {
        "points": [{"customdata": [r, 0], "point_index": r, "curve_number": 0} for r in rows],
        "point_indices": rows, "box": [], "lasso": []}}
    at.run()
    assert not at.exception
    assert at.session_state["selection"] == rows
    table = at.dataframe[0].value
    assert table["row"].tolist() == rows
    assert table["model_id"].tolist() == moons_zoo.metadata["model_id"].iloc[rows].tolist()


def test_projection_3d_tsne(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    at.selectbox(key="proj_method").select("tsne").run()
    at.radio(key="proj_dim").set_value(3).run()
    assert not at.exception and not at.error
    fig = main_chart(at)
    assert any(t["type"] == "scatter3d" for t in fig["data"])


def test_expensive_features_wait_for_button(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    at.selectbox(key="proj_kind").select("aligned").run()
    assert not at.exception
    assert any("Compute" in i.value for i in at.info)
    assert not [c for c in at.get("plotly_chart") if "proj_chart" in c.proto.id]


def test_zoo_without_task(tmp_path, mlp_arch):
    zoo = random_zoo(mlp_arch, None, n_models=5, epochs=(0, 1, 2))
    save_zoo(zoo, tmp_path / "z")
    at = page(tmp_path / "z")
    at.run()
    assert not at.exception and not at.error
    assert "functional" not in at.selectbox(key="proj_kind").options
    assert len(np.unique([o for o in at.selectbox(key="proj_color").options])) == len(zoo.metadata.columns)


def test_search_highlights_the_matches(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    at.text_input(key="proj_search").input("lr = 0.01 and epoch >= 10").run()
    assert not at.exception and not at.warning
    meta = moons_zoo.metadata
    expected = np.flatnonzero(np.isclose(meta["lr"], 0.01) & (meta["epoch"] >= 10)).tolist()
    assert 0 < len(expected) < len(meta)
    assert full_opacity(at) == expected
    assert all(o == DIMMED for r, o in opacities(at) if r not in expected)
    assert any(f"**{len(expected):,}** of {len(meta):,} checkpoints" in c.value for c in at.caption)
    at.text_input(key="proj_search").input("width = 3").run()
    assert not at.exception and "no column 'width'" in at.warning[0].value


def test_one_point_shows_its_nearest_neighbours(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    meta = moons_zoo.metadata
    query = int(np.flatnonzero(meta["epoch"] == meta["epoch"].max())[3])
    at.session_state["proj_chart"] = {"selection": {"points": [{"customdata": [query, 0]}], "point_indices": [query],
                                                    "box": [], "lasso": []}}
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 10 and table["distance"].is_monotonic_increasing
    assert (table["model_id"] != meta["model_id"].iloc[query]).all()  # other epochs of the same run left out
    ring = [t for t in main_chart(at)["data"] if t.get("name") == "nearest neighbours"][0]
    assert sorted(int(c[0]) for c in ring["customdata"]) == sorted(table["row"].tolist())
    assert full_opacity(at) == sorted([query, *table["row"].tolist()])
    at.toggle(key="proj_exclude").set_value(False).run()
    assert at.dataframe[0].value["model_id"].iloc[0] == meta["model_id"].iloc[query]  # its own neighbouring epoch


def test_histogram_range_filters_the_plot(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    assert at.multiselect(key="proj_hists").value == ["test_acc"]
    at.session_state["proj_hist_test_acc_0"] = {"selection": {"points": [{"customdata": [0.9, 0.95]},
                                                                         {"customdata": [0.95, 1.0]}],
                                                              "box": [], "lasso": [], "point_indices": []}}
    at.run()
    assert not at.exception
    acc = moons_zoo.metadata["test_acc"].to_numpy()
    assert drawn(at) == np.flatnonzero((acc >= 0.9) & (acc <= 1.0)).tolist()
    assert at.session_state["proj_ranges"][moons_zoo.fingerprint] == {"test_acc": (0.9, 1.0)}
    at.selectbox(key="proj_color").select("lr").run()  # the figure changes, the range stays
    assert drawn(at) == np.flatnonzero((acc >= 0.9) & (acc <= 1.0)).tolist()
    at.button(key="proj_clear_filters").click().run()
    assert drawn(at) == list(range(len(acc)))


def test_epoch_slider_shows_one_epoch_with_trails(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    at.toggle(key="proj_by_epoch").set_value(True).run()
    at.select_slider(key="proj_epoch").set_value(5).run()
    assert not at.exception
    meta = moons_zoo.metadata
    assert drawn(at) == np.flatnonzero(meta["epoch"] == 5).tolist()
    trail = [t for t in main_chart(at)["data"] if t.get("mode") == "lines"]
    joined = meta.groupby("model_id")["epoch"].apply(lambda e: int((e <= 5).sum())).to_numpy()
    assert len(trail) == 1 and sum(x is not None for x in arr(trail[0]["x"])) == joined[joined > 1].sum()


def test_size_opacity_density_and_fits_kept_on_disk(moons_zoo):
    st.cache_resource.clear()  # earlier tests' fits in memory would keep this one from reaching the disk
    at = page(moons_zoo.path)
    at.run()
    at.selectbox(key="proj_size").select("lr").run()
    at.selectbox(key="proj_opacity").select("test_acc").run()
    at.toggle(key="proj_density").set_value(True).run()
    assert not at.exception
    fig = main_chart(at)
    assert fig["data"][0]["type"] == "histogram2dcontour"
    assert len(set(arr(points(at)[0]["marker"]["size"]))) == moons_zoo.metadata["lr"].nunique()
    st.cache_resource.clear()  # as after a server restart: the PCA map is read back from disk
    again = page(moons_zoo.path)
    again.run()
    assert any("read back from disk" in c.value for c in again.caption)
