"""The Generate page under Streamlit's AppTest: two generators on the moons sample zoo, and a zoo without a task."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
from conftest import random_zoo
from pagetest import arr
from streamlit.testing.v1 import AppTest

from wslviz.formats import save_zoo

PAGE = Path(__file__).resolve().parents[1] / "pages" / "6_Generate.py"


def page(zoo_path) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.session_state["zoo_path"] = str(zoo_path)
    return at


def figure(at: AppTest, key: str) -> dict:
    """The Plotly figure (as a dict) of the chart with this key."""
    charts = [c for c in at.get("plotly_chart") if json.loads(c.proto.spec).get("layout") is not None]
    for c in charts:
        if key in c.proto.id:
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart with key {key!r} among {[c.proto.id for c in charts]}")


def n_values(array) -> int:
    """Length of a Plotly JSON array (a list, or a typed array ``{"dtype", "bdata"}`` in base64)."""
    if isinstance(array, dict):
        return len(base64.b64decode(array["bdata"])) // np.dtype(array["dtype"]).itemsize
    return len(array)


def test_two_generators_evaluated_side_by_side(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    assert not at.exception
    assert any("press **Generate**" in i.value for i in at.info)
    assert not at.get("plotly_chart")  # nothing heavy before the button

    at.selectbox(key="gen_method").select("pca_gaussian").run()
    at.slider(key="gen_n").set_value(8).run()
    at.button(key="gen_go").click().run()
    assert not at.exception and not at.error
    at.selectbox(key="gen_method").select("merge").run()
    at.button(key="gen_go").click().run()
    assert not at.exception and not at.error

    summary = at.dataframe[0].value
    assert list(summary["generator"]) == ["pca_gaussian", "merge"]
    assert summary["learned"].tolist() == [True, False]
    assert ((summary["accuracy"] >= 0) & (summary["accuracy"] <= 1)).all()
    assert list(summary.columns[1:3]) == ["beats L2", "beats function"]  # verdicts first, on screen
    assert len(summary.columns) <= 10
    violins = figure(at, "gen_violins")
    # every run beside its own noise baseline, calibrated to that run's accuracy
    assert [t["name"] for t in violins["data"]] == ["zoo final", "pca_gaussian", "noise baseline (pca_gaussian)",
                                                    "merge", "noise baseline (merge)"]
    np.testing.assert_allclose(summary["noise accuracy"], [np.mean(arr(violins["data"][i]["y"])) for i in (2, 4)])
    # weights of generated vs zoo models: one density per set (zoo final + 2 runs) in each of the 3 weight panels
    hist = figure(at, "gen_weight_hist")
    assert [t["name"] for t in hist["data"][:3]] == ["zoo final", "pca_gaussian", "merge"] and len(hist["data"]) == 9
    spectra = figure(at, "gen_spectra")
    assert {t.get("name") for t in spectra["data"] if t.get("showlegend", True)} >= {"zoo final", "merge"}
    # the frontier waits for its button: nothing above it waited on it
    assert not [c for c in at.get("plotly_chart") if "gen_frontier" in c.proto.id]
    assert at.button(key="gen_frontier_go")
    scatter = figure(at, "gen_scatter")
    assert len(scatter["data"]) == 2 and n_values(scatter["data"][0]["x"]) == 8
    # moons is 2D: decision regions of generated models next to their nearest zoo models
    boundaries = figure(at, "gen_boundaries")
    assert sum(t["type"] == "heatmap" for t in boundaries["data"]) == 2 * 3
    table = at.dataframe[1].value
    assert len(table) == 8 and {"distance", "nearest_row", "agreement", "coefficients"} <= set(table.columns)
    assert {b.label for b in at.get("download_button")} == {"Weights (.safetensors)", "Metadata (.json)",
                                                            "Native zoo (.zip)"}

    # the same generator with another sampling option replaces its earlier run (fit reused from the cache)
    at.selectbox(key="gen_method").select("pca_gaussian").run()
    at.slider(key="gen_pca_gaussian_temperature").set_value(0.5).run()
    at.button(key="gen_go").click().run()
    assert not at.exception
    assert list(at.dataframe[0].value["generator"]) == ["merge", "pca_gaussian"]


def test_page_without_a_task_generates_but_says_what_is_missing(tmp_path, cnn_arch):
    zoo = random_zoo(cnn_arch, None, n_models=4, epochs=(0, 1))
    path = save_zoo(zoo, tmp_path / "weights-only")
    at = page(path)
    at.run()
    assert not at.exception
    assert any("no evaluation data" in w.value for w in at.warning)
    at.selectbox(key="gen_method").select("interpolate").run()
    at.checkbox(key="gen_interpolate_aligned").uncheck().run()
    at.button(key="gen_go").click().run()
    assert not at.exception and not at.error
    # nothing that needs evaluation; the weights themselves are compared with the zoo's
    assert {c.key for c in at.get("plotly_chart")} == {"gen_weight_hist", "gen_spectra"}
    assert len(at.get("download_button")) == 3


def test_bad_options_show_an_error_not_a_traceback(moons_zoo):
    at = page(moons_zoo.path)
    at.run()
    at.selectbox(key="gen_method").select("merge").run()
    at.multiselect(key="gen_merge_rows").set_value([0]).run()
    at.button(key="gen_go").click().run()
    assert not at.exception
    assert any("at least 2" in e.value for e in at.error)


def test_every_generator_declares_options_its_constructor_takes(moons_zoo):
    """The page builds its widgets from each generator's declared options; each default builds the generator."""
    import inspect

    from wslviz.generation.generators import GENERATORS, make_generator

    for method, cls in GENERATORS.items():
        params = cls.params(moons_zoo)
        accepted = set(inspect.signature(cls).parameters)
        assert params and cls.label, method
        options = {}
        for p in params:
            names = p.name if isinstance(p.name, tuple) else (p.name,)
            assert set(names) <= accepted, (method, names)
            if p.widget not in ("row", "rows"):
                options.update(p.options(p.default))
        assert make_generator(method, **options).get_params().items() >= options.items(), method
