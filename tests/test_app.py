"""AppTest runs of ``app.py``: home summary, sidebar zoo picker, errors, linked selection and the URL."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import ROOT, random_zoo
from safetensors.torch import load
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.tasks import make_task
from wslviz.formats import save_zoo
from wslviz.scale.cache import load_zoo
from wslviz.ui.home import page_files, page_title

BUNDLED = ("moons-mlp", "spirals-tanh", "digits-cnn")
TIMEOUT = 120


@pytest.fixture(scope="module")
def zoo_dirs(tmp_path_factory):
    """Two small native zoos on disk (different sizes, so the summary tells them apart)."""
    base = tmp_path_factory.mktemp("zoos")
    task = make_task("moons")
    a = random_zoo(Architecture(mlp_spec([2, 16, 16, 2])), task, n_models=5, epochs=(0, 1, 2), seed=1)
    b = random_zoo(Architecture(mlp_spec([2, 8, 2])), task, n_models=7, epochs=(0, 3), seed=2)
    return str(save_zoo(a, base / "zoo-a")), str(save_zoo(b, base / "zoo-b"))


def app(**query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at.run()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def assert_summary(at: AppTest, path: str) -> None:
    zoo = load_zoo(path)
    assert not at.exception, at.exception
    assert metrics(at) == {"models": f"{zoo.n_models:,}", "checkpoints": f"{zoo.n_checkpoints:,}",
                           "parameters": f"{zoo.n_params:,}"}


@pytest.mark.parametrize("name", BUNDLED)
def test_home_summarises_each_bundled_zoo(name):
    path = ROOT / "sample_zoo" / name
    if not (path / "zoo.json").is_file():
        pytest.fail(f"sample zoo {name} is missing (run `wslviz make-zoo`)")
    at = app(zoo=name)
    assert_summary(at, str(path))
    assert at.session_state[ui.ZOO_KEY] == str(path)
    assert at.query_params["zoo"] == name  # bundled zoos appear by name in the URL
    assert len(at.get("plotly_chart")) == 1  # final-accuracy histogram


def test_env_zoo_is_the_initial_zoo(zoo_dirs, monkeypatch):
    monkeypatch.setenv(ui.ENV_ZOO, zoo_dirs[1])
    at = app()
    assert_summary(at, zoo_dirs[1])
    assert at.query_params["zoo"] == zoo_dirs[1]


def test_pick_another_zoo_by_folder_path(zoo_dirs):
    at = app(zoo=zoo_dirs[0])
    assert_summary(at, zoo_dirs[0])
    at.sidebar.radio(key="zoo_source").set_value("Folder path").run()
    at.sidebar.text_input(key="zoo_folder").input(zoo_dirs[1]).run()
    assert_summary(at, zoo_dirs[1])
    assert at.query_params["zoo"] == zoo_dirs[1]


def test_pick_a_bundled_zoo_in_the_sidebar(zoo_dirs):
    zoos = ui.bundled_zoos()
    if not zoos:
        pytest.fail("no bundled sample zoos (run `wslviz make-zoo`)")
    at = app(zoo=zoo_dirs[0])
    at.sidebar.radio(key="zoo_source").set_value("Bundled").run()
    name = list(zoos)[-1]
    at.sidebar.selectbox(key="zoo_bundled").set_value(name).run()
    assert_summary(at, str(zoos[name]))
    assert at.query_params["zoo"] == name


def assert_failed(at: AppTest, *needles: str) -> None:
    """A zoo that did not open: its error in the main area, no summary of any zoo, the URL names it."""
    assert not at.exception, at.exception
    assert any(all(n in e.value for n in needles) for e in at.main.error), [e.value for e in at.main.error]
    assert not metrics(at) and not at.get("plotly_chart")


def test_bad_folder_shows_its_error_and_never_the_previous_zoo(zoo_dirs, tmp_path):
    at = app(zoo=zoo_dirs[0], sel="1,2")
    at.sidebar.radio(key="zoo_source").set_value("Folder path").run()
    missing = str(tmp_path / "nowhere")
    at.sidebar.text_input(key="zoo_folder").input(missing).run()
    assert_failed(at, "no such file or directory")
    assert any("no such file or directory" in e.value for e in at.sidebar.error)
    assert at.query_params["zoo"] == missing and "sel" not in at.query_params  # no longer the old zoo
    for page in page_files():  # every page shows the error instead of drawing the previous zoo
        at.switch_page(f"pages/{page.name}").run()
        if page_title(page) == "Train a zoo":  # draws no zoo: it makes a new one
            assert not at.exception and not at.get("plotly_chart")
        else:
            assert_failed(at, "no such file or directory")

    broken = tmp_path / "broken"
    shutil.copytree(zoo_dirs[1], broken)
    (broken / "zoo.json").write_text("{not json")
    at.switch_page("pages/1_Zoo.py").run()
    at.sidebar.text_input(key="zoo_folder").input(str(broken)).run()
    assert_failed(at, "zoo.json", "not valid JSON")

    at.sidebar.text_input(key="zoo_folder").input(zoo_dirs[1]).run()  # a good path clears the error
    assert not at.exception and not at.error
    assert at.session_state[ui.ZOO_KEY] == zoo_dirs[1] and at.query_params["zoo"] == zoo_dirs[1]


def test_bad_zoo_in_the_url_is_reported_not_replaced(zoo_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv(ui.ENV_ZOO, zoo_dirs[0])
    at = app(zoo=str(tmp_path / "missing"))
    assert_failed(at, "no such file")
    assert any("from the link" in e.value and "no such file" in e.value for e in at.sidebar.error)


def test_selection_survives_page_switch_and_reload(zoo_dirs):
    at = app(zoo=zoo_dirs[0])
    at.switch_page("pages/1_Zoo.py").run()
    assert not at.exception
    at.multiselect(key="zoo_inspect").set_value([3, 5]).run()
    assert at.session_state[ui.SELECTION_KEY] == [3, 5]
    assert at.query_params == {"zoo": zoo_dirs[0], "sel": "3,5"}

    # Navigating clears the browser's query string; session state keeps the view and the URL is rewritten.
    other = next(f"pages/{p.name}" for p in page_files() if p.name != "1_Zoo.py")
    at.query_params.clear()
    at.switch_page(other).run()
    assert at.session_state[ui.SELECTION_KEY] == [3, 5]
    assert at.query_params == {"zoo": zoo_dirs[0], "sel": "3,5"}
    assert any("2 checkpoint(s): #3, #5" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/1_Zoo.py").run()
    assert at.multiselect(key="zoo_inspect").value == [3, 5]

    # A reload (or a shared link) is a new session that reads the URL back; rows outside the zoo are dropped.
    fresh = app(zoo=zoo_dirs[0], sel="3,5,999")
    assert fresh.session_state[ui.SELECTION_KEY] == [3, 5]
    assert_summary(fresh, zoo_dirs[0])
    fresh.switch_page("pages/1_Zoo.py").run()
    assert fresh.multiselect(key="zoo_inspect").value == [3, 5]
    assert fresh.query_params["sel"] == "3,5"


def test_changing_zoo_clears_the_selection(zoo_dirs):
    at = app(zoo=zoo_dirs[0], sel="1,2")
    assert at.session_state[ui.SELECTION_KEY] == [1, 2]
    at.sidebar.radio(key="zoo_source").set_value("Folder path").run()
    at.sidebar.text_input(key="zoo_folder").input(zoo_dirs[1]).run()
    assert at.session_state[ui.SELECTION_KEY] == []
    assert "sel" not in at.query_params
    at.sidebar.text_input(key="zoo_folder").input(zoo_dirs[0]).run()
    at.switch_page("pages/1_Zoo.py").run()
    at.multiselect(key="zoo_inspect").set_value([4]).run()
    assert at.query_params["sel"] == "4"
    at.sidebar.button(key="clear_selection").click().run()
    assert at.session_state[ui.SELECTION_KEY] == []
    assert "sel" not in at.query_params


def test_tour_steps_and_opens_a_page():
    zoos = ui.bundled_zoos()
    if "moons-mlp" not in zoos:
        pytest.fail("sample zoo moons-mlp is missing (run `wslviz make-zoo`)")
    at = app()
    assert "step 1 of 5" in at.markdown[1].value or any("step 1 of 5" in m.value for m in at.markdown)
    at.button(key="tour_next").click().run()
    assert at.session_state["tour_step"] == 1
    at.button(key="tour_prev").click().run()
    assert at.session_state["tour_step"] == 0
    at.button(key="tour_go").click().run()  # step 1: moons-mlp on the Zoo page, teaching mode on
    assert not at.exception
    assert at.session_state[ui.ZOO_KEY] == str(zoos["moons-mlp"])
    assert at.session_state[ui.TEACHING_KEY] is True
    assert [t.value for t in at.title] == ["Zoo"]


def test_weights_to_safetensors_round_trip():
    arch = Architecture(mlp_spec([2, 8, 2]))
    zoo = random_zoo(arch, None, n_models=3, epochs=(0,))
    data = ui.weights_to_safetensors(arch, zoo.weights[[0, 2]], zoo.metadata.iloc[[0, 2]])
    assert torch.equal(load(data)["weights"], zoo.weights[[0, 2]])
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])["__metadata__"]
    assert Architecture(json.loads(header["architecture"])) == arch
    assert [r["model_id"] for r in json.loads(header["metadata"])] == [0, 2]
    with pytest.raises(ValueError, match="do not fit"):
        ui.weights_to_safetensors(arch, torch.zeros(2, arch.n_params + 1))
    with pytest.raises(ValueError, match="metadata rows"):
        ui.weights_to_safetensors(arch, zoo.weights, zoo.metadata.iloc[:1])


def test_zoo_references_round_trip(zoo_dirs):
    for name, path in ui.bundled_zoos().items():
        assert ui.zoo_ref(path) == name
        assert ui.resolve_zoo_ref(name) == path
    assert ui.zoo_ref(zoo_dirs[0]) == zoo_dirs[0]
    assert str(ui.resolve_zoo_ref(zoo_dirs[0])) == zoo_dirs[0]


def test_teaching_mode_opens_the_explainers(zoo_dirs):
    at = app(zoo=zoo_dirs[0])
    at.switch_page("pages/1_Zoo.py").run()
    about = [e for e in at.expander if e.label.startswith("About this page")]
    assert len(about) == 1 and not about[0].proto.expanded
    at.sidebar.toggle(key=ui.TEACHING_KEY).set_value(True).run()
    about = [e for e in at.expander if e.label.startswith("About this page")]
    assert about[0].proto.expanded
    assert at.query_params[ui.TEACH_PARAM] in ("1", ["1"])  # kept in the URL: a lecture's link opens in teaching mode
    linked = app(zoo=zoo_dirs[0], teach="1")
    assert linked.session_state[ui.TEACHING_KEY] is True


def test_the_tour_follows_the_open_zoo(zoo_dirs):
    at = app(zoo=zoo_dirs[0])  # another zoo than the first step's
    assert any("This step uses moons-mlp; you have" in c.value for c in at.caption)
    assert at.button(key="tour_go").label == "Open moons-mlp on Zoo"
    at = app(zoo="moons-mlp")
    assert not any("This step uses" in c.value for c in at.caption)
    assert at.button(key="tour_go").label == "Go to Zoo with moons-mlp"


def test_figure_exports_to_png():
    """A figure becomes PNG bytes through kaleido and Debian's chromium (skipped only where no browser exists)."""
    import plotly.graph_objects as go

    if not ui.png_available():
        pytest.skip("no chromium for kaleido (install Debian's chromium: `make chromium`)")
    png = ui.figure_png(go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2])), scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (700, 500)  # plotly's default figure size at scale 1


def test_sidebar_counts_have_thousands_separators():
    at = app(zoo="moons-mlp")
    zoo = load_zoo(ROOT / "sample_zoo" / "moons-mlp")
    assert zoo.n_checkpoints >= 1000  # the case that read "1120"
    expected = f"{zoo.n_models:,} models, {zoo.n_checkpoints:,} checkpoints, {zoo.n_params:,} parameters"
    assert any(expected in c.value for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]
