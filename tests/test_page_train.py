"""The Train-a-zoo page under AppTest: 64 moons MLPs trained at once with live curves become the current zoo,
and every page then runs on it."""

from __future__ import annotations

import time

from conftest import ROOT
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.scale.cache import load_zoo
from wslviz.ui.home import page_files

PAGE = "pages/8_Train_a_zoo.py"


def test_train_64_moons_mlps_then_every_page_runs_on_them(monkeypatch):
    monkeypatch.setenv(ui.ENV_ZOO, "moons-mlp")
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=600).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="train_task").value == "moons" and at.slider(key="train_n").value == 64
    start = time.perf_counter()
    at.button(key="train_go").click().run()
    seconds = time.perf_counter() - start
    assert not at.exception, at.exception
    path = at.session_state["train_zoo_path"]
    assert at.session_state[ui.ZOO_KEY] == path
    zoo = load_zoo(path)
    assert zoo.n_models == 64 and zoo.task.name == "moons" and zoo.metadata["epoch"].max() == 20
    assert zoo.metadata.groupby("lr")["model_id"].nunique().tolist() == [16, 16, 16, 16]  # 4 learning rates
    assert zoo.metadata["test_acc"].to_numpy()[zoo.final_index()].max() > 0.9  # moons MLPs learn in 20 epochs
    assert any("Trained" in s.value for s in at.success) and at.get("plotly_chart")
    print(f"trained 64 moons MLPs (20 epochs) under AppTest in {seconds:.1f} s")

    # the trained zoo is a zoo like any other: every page runs on it (through the app, as a link would open it)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    app.query_params["zoo"] = path
    app.run()
    assert not app.exception and app.session_state[ui.ZOO_KEY] == path
    for page in page_files():
        app.switch_page(f"pages/{page.name}").run()
        assert not app.exception, (page.name, app.exception)
        assert not app.main.error, (page.name, [e.value for e in app.main.error])
