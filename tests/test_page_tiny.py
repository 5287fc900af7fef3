"""Every page (the home page and ``pages/*.py``) on tiny zoos: one model with one checkpoint, one model with two
checkpoints, two models with one checkpoint each. Each runs under AppTest without an exception and without an
error box; a view that needs more models says so instead of drawing (or crashing)."""

from __future__ import annotations

import pytest
from conftest import ROOT, random_zoo
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.tasks import make_task
from wslviz.formats import save_zoo
from wslviz.ui.home import page_files

TIMEOUT = 300
SHAPES = {"1x1": (1, (0,)), "1x2": (1, (0, 5)), "2x1": (2, (5,))}  # models x epochs
PAGES = ["home"] + [p.name for p in page_files()]

# (page, shape) -> what the page says instead of drawing a view that needs more models or checkpoints
MESSAGES = {
    ("1_Zoo.py", "1x1"): ("no varied hyper-parameter",),
    ("1_Zoo.py", "1x2"): ("no varied hyper-parameter",),
    ("1_Zoo.py", "2x1"): ("One checkpoint per model: no curves",),
    ("3_Symmetry.py", "1x1"): ("This zoo has one checkpoint", "at least two models"),
    ("3_Symmetry.py", "1x2"): ("at least two models",),
    ("2_Projections.py", "1x1"): ("needs at least two checkpoints",),
}


@pytest.fixture(scope="module")
def tiny_zoos(tmp_path_factory) -> dict[str, str]:
    """The three tiny zoos written in the native format (random weights, metadata evaluated on moons)."""
    base = tmp_path_factory.mktemp("tiny")
    arch, task = Architecture(mlp_spec([2, 8, 8, 2])), make_task("moons")
    out = {}
    for name, (n_models, epochs) in SHAPES.items():
        zoo = random_zoo(arch, task, n_models=n_models, epochs=epochs, seed=len(out))
        zoo.name = f"tiny-{name}"
        out[name] = str(save_zoo(zoo, base / zoo.name))
    return out


@pytest.mark.parametrize(("page", "shape"), [pytest.param(p, s, id=f"{p}-{s}") for p in PAGES for s in SHAPES])
def test_page_runs_on_a_tiny_zoo(tiny_zoos, page, shape):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["zoo"] = tiny_zoos[shape]
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}").run()
    assert not at.exception, (page, shape, [e.value for e in at.exception], [e.stack_trace for e in at.exception])
    assert not at.main.error, (page, shape, [e.value for e in at.main.error])
    for expected in MESSAGES.get((page, shape), ()):  # the views that need more say so
        assert any(expected in i.value for i in at.info), (page, shape, expected, [i.value for i in at.info])


@pytest.mark.parametrize("shape", list(SHAPES))
def test_symmetry_alignment_and_spread_on_a_tiny_zoo(monkeypatch, tiny_zoos, shape):
    """Aligning the two default checkpoints, and the zoo's spread where it has two or more final checkpoints;
    with fewer the spread button is disabled and the page says why. (The page runs on its own here: AppTest
    does not deliver a button click to a page reached by ``switch_page``.)"""
    monkeypatch.setenv(ui.ENV_ZOO, tiny_zoos[shape])
    at = AppTest.from_file(str(ROOT / "pages" / "3_Symmetry.py"), default_timeout=TIMEOUT).run()
    at.button(key="sym_align").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "sym_pair_heatmaps" in str([c.proto.id for c in at.get("plotly_chart")])
    n_models = SHAPES[shape][0]
    assert at.button(key="sym_zoo_go").disabled == (n_models < 2)
    if n_models < 2:
        assert any("at least two models" in i.value for i in at.info)
    else:
        at.button(key="sym_zoo_go").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert "sym_spread" in str([c.proto.id for c in at.get("plotly_chart")])
