"""Every page, on every bundled zoo, with no selection, one checkpoint, and a selection of several hundred
checkpoints (what a box drag on Projections makes), runs under AppTest without an exception; widgets
pre-filled from the selection stay within their limits and default to distinct models."""

from __future__ import annotations

import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.ui.home import page_files

TIMEOUT = 300
ZOOS = sorted(ui.bundled_zoos())
LARGE = 517  # the size of the box selection that broke the Landscape page


def selections(name: str) -> dict[str, list[int]]:
    """No selection; one trained checkpoint in the middle of the zoo; several hundred consecutive rows."""
    n = ui.open_zoo(ui.bundled_zoos()[name]).n_checkpoints
    return {"none": [], "one": [n // 2], "hundreds": list(range(min(n, LARGE)))}


CASES = [(name, which) for name in ZOOS for which in ("none", "one", "hundreds")]


@pytest.mark.parametrize(("name", "which"), CASES, ids=[f"{n}-{w}" for n, w in CASES])
def test_every_page_runs(name, which):
    rows = selections(name)[which]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["zoo"] = name
    if rows:
        at.query_params["sel"] = ",".join(map(str, rows))
    at.run()
    assert not at.exception, (name, which, "home", at.exception)
    assert at.session_state[ui.SELECTION_KEY] == rows
    zoo = ui.open_zoo(ui.bundled_zoos()[name])
    for page in page_files():
        at.switch_page(f"pages/{page.name}").run()
        assert not at.exception, (name, which, page.name, at.exception)
        assert not at.main.error, (name, which, page.name, [e.value for e in at.main.error])
        for widget in at.multiselect:  # every pre-filled multiselect respects its limit
            limit = widget.proto.max_selections
            assert not limit or len(widget.value) <= limit, (page.name, widget.key, len(widget.value), limit)
        if page.name.endswith("_Landscape.py") and zoo.task is not None:
            picked = [at.selectbox(key=k).value for k in ("land_a", "land_b", "land_c")]
            if zoo.n_models >= 3:
                assert len(set(zoo.model_ids[picked])) == 3, picked  # three distinct models
            if rows and "epoch" in zoo.metadata and len(set(zoo.model_ids[rows])) >= 3:
                assert set(picked) <= set(rows)  # taken from the selection when it has enough models
                epochs = zoo.metadata["epoch"].to_numpy()
                assert all(epochs[r] == epochs[rows][zoo.model_ids[rows] == zoo.model_ids[r]].max() for r in picked)
        assert at.session_state[ui.SELECTION_KEY] == rows  # visiting a page does not change the selection
