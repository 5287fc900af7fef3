"""The Projections page under Streamlit's AppTest: a projection computed, a colour change, a selection
set through session state (as a chart event would), and a zoo without a task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import random_zoo
from streamlit.testing.v1 import AppTest

from wslviz.formats import save_zoo

PAGE = Path(__file__).resolve().parents[1] / "pages" / "2_Projections.py"


def page(zoo_path) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.session_state["zoo_path"] = str(zoo_path)
    return at


def main_chart(at: AppTest) -> dict:
    for c in at.get("plotly_chart"):
        if "proj_chart" in c.proto.id and "proj_chart_" not in c.proto.id:
            return json.loads(c.proto.spec)
    raise AssertionError("the projection chart is missing")


def test_projection_colour_and_selection(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    assert not at.exception and not at.error
    fig = main_chart(at)
    points = [t for t in fig["data"] if t.get("mode") == "markers"]
    assert sum(len(t["customdata"]) for t in points) == moons_zoo.n_checkpoints
    assert points[0]["marker"]["colorbar"]["title"]["text"].startswith("test accuracy")
    assert fig["layout"]["dragmode"] == "select"
    assert any(t.get("mode") == "lines" for t in fig["data"])  # checkpoints of one model joined

    at.selectbox(key="proj_color").select("lr").run()  # 4 learning rates over 1.5 decades: continuous, log scale
    assert not at.exception
    points = [t for t in main_chart(at)["data"] if t.get("mode") == "markers"]
    bar = points[0]["marker"]["colorbar"]
    assert len(points) == 1 and "log scale" in bar["title"]["text"]
    assert bar["ticktext"] == ["0.01", "0.1"]  # ticks at the decades the learning rates span

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
