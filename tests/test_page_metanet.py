"""Pages with metanetworks and INRs under AppTest: the Predict page fits a metanetwork (progress, metrics), the Zoo
page shows the digits-inr zoo's rendered INRs, the Landscape page draws the naive and aligned image paths."""

from __future__ import annotations

import base64
import json

import numpy as np
from conftest import ROOT, SAMPLE
from streamlit.testing.v1 import AppTest

import wslviz as wv
from wslviz import ui
from wslviz.core.inr import render_rows


def page(name: str, zoo_path, monkeypatch) -> AppTest:
    monkeypatch.setenv(ui.ENV_ZOO, str(zoo_path))
    return AppTest.from_file(str(ROOT / "pages" / name), default_timeout=300)


def charts(at: AppTest) -> dict[str, dict]:
    return {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def array(value) -> np.ndarray:
    """A figure array from its JSON: a list, or plotly's typed-array form ``{"dtype", "bdata", "shape"}``."""
    if isinstance(value, dict):
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return data.reshape([int(n) for n in str(value["shape"]).split(",")]) if "shape" in value else data
    return np.array(value, dtype=float)


def test_predict_page_fits_a_metanetwork(monkeypatch, moons_zoo):
    at = page("5_Predict.py", moons_zoo.path, monkeypatch).run()
    assert not at.exception and not at.error
    assert set(at.selectbox(key="predict_model").options) >= {"NFN-NP metanetwork", "DWSNets-style metanetwork"}
    at.selectbox(key="predict_model").select("nfn_np").run()
    at.radio(key="predict_rows").set_value("final").run()
    at.slider(key="predict_epochs").set_value(20).run()
    at.button(key="predict_fit_go").click().run()
    assert not at.exception and not at.error
    labels = {m.label: m.value for m in at.metric}
    assert labels["checkpoints / models"] == f"{moons_zoo.n_models} / {moons_zoo.n_models}"
    assert float(labels["Kendall τ"]) > 0.3  # final moons accuracies are ranked well above chance
    assert any("predict_scatter" in k for k in charts(at))


def test_zoo_page_shows_rendered_inrs(monkeypatch):
    path = SAMPLE / "digits-inr"
    at = page("1_Zoo.py", path, monkeypatch).run()
    assert not at.exception and not at.error
    grid = next(f for k, f in charts(at).items() if "zoo_inr_grid" in k)
    z = array(grid["data"][0]["z"]).astype(float)
    zoo = wv.load_zoo(path)
    first = render_rows(zoo, [0])[0]
    size = first.shape[0]
    np.testing.assert_allclose(z[:size, :size], first, atol=1e-6)  # the first tile is row 0's image
    captions = [a["text"] for a in grid["layout"]["annotations"]]
    assert len(captions) == 36 and captions[0].startswith(f"#0 · {zoo.metadata['label'].iloc[0]}")


def test_landscape_page_draws_inr_paths(monkeypatch):
    at = page("4_Landscape.py", SAMPLE / "digits-inr", monkeypatch).run()
    assert not at.exception
    strips = next(f for k, f in charts(at).items() if "land_inr_path" in k)
    names = {a["text"] for a in strips["layout"]["annotations"]}
    assert {"naive", "aligned"} <= names
    assert at.warning  # no task: the loss sections say why they are missing
