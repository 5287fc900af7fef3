"""The Predict page under Streamlit's AppTest: nothing heavy before a button, a prediction fitted and
shown, neighbours of the linked selection, and a zoo without a task."""

from __future__ import annotations

from pathlib import Path

from conftest import random_zoo
from pagetest import charts
from streamlit.testing.v1 import AppTest

from wslviz.formats import save_zoo

PAGE = Path(__file__).resolve().parents[1] / "pages" / "5_Predict.py"


def page(zoo_path) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.session_state["zoo_path"] = str(zoo_path)
    return at


def test_prediction_fitted_and_neighbours(moons_zoo):
    at = page(moons_zoo.path)
    at.session_state["selection"] = [13]
    at.run()
    assert not at.exception and not at.error
    assert not at.get("plotly_chart")  # nothing fitted before the button
    at.radio(key="predict_rows").set_value("final").run()
    at.button(key="predict_fit_go").click().run()
    assert not at.exception and not at.error
    labels = {m.label: m.value for m in at.metric}
    assert float(labels["R²"]) > 0.5  # stats + gbm predict moons accuracy well above chance
    assert labels["checkpoints / models"] == f"{moons_zoo.n_models} / {moons_zoo.n_models}"
    figs = charts(at)
    scatter = next(f for k, f in figs.items() if "predict_scatter" in k)
    assert scatter["layout"]["xaxis"]["title"]["text"].startswith("true test accuracy")
    importance = next(f for k, f in figs.items() if "predict_importance" in k)
    # long feature names grow the margin instead of being clipped
    assert importance["layout"]["yaxis"]["automargin"] and importance["layout"]["xaxis"]["automargin"]
    assert at.selectbox(key="predict_kind").value == "stats"  # the box shows the short name; its description below
    assert any("Features **stats**" in c.value for c in at.caption)
    # neighbour tables for the linked selection: the query row itself is never its own neighbour
    tables = [d.value for d in at.dataframe]
    assert len(tables) == 2
    for t in tables:
        assert 13 not in t["row"].tolist() and t["distance"].is_monotonic_increasing
    # trained checkpoints only (epoch 0 left out), fitted to ranks
    at.radio(key="predict_rows").set_value("trained").run()
    at.toggle(key="predict_rank").set_value(True).run()
    at.button(key="predict_fit_go").click().run()
    assert not at.exception and not at.error
    labels = {m.label: m.value for m in at.metric}
    n_trained = int((moons_zoo.metadata["epoch"] > 0).sum())
    assert labels["checkpoints / models"] == f"{n_trained} / {moons_zoo.n_models}"
    assert float(labels["Kendall τ"]) > 0.5


def test_zoo_without_task(tmp_path, mlp_arch):
    zoo = random_zoo(mlp_arch, None, n_models=8, epochs=(0, 1))
    save_zoo(zoo, tmp_path / "z")
    at = page(tmp_path / "z")
    at.run()
    assert not at.exception and not at.error
    assert "functional" not in at.selectbox(key="predict_kind").options
    at.selectbox(key="predict_target").select("lr").run()
    at.selectbox(key="predict_model").select("knn").run()
    at.button(key="predict_fit_go").click().run()
    assert not at.exception and not at.error
    assert {m.label for m in at.metric} >= {"R²", "Kendall τ"}
