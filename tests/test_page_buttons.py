"""Every button on every page, pressed with the page's own defaults, on every bundled zoo: nothing raises, nothing
shows an error box, and a computation estimated to take over a minute is not started by a press: its button
waits for a confirmation that repeats the estimate (what :func:`wslviz.ui.cost_gate` draws).

A press can reveal more buttons (Reconstruct's "Distil" after "Invert"); they are pressed in turn, in page order,
until none is left. Each page runs on its own (AppTest does not deliver a click to a page reached by
``switch_page``)."""

from __future__ import annotations

import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.ui.home import page_files

pytestmark = pytest.mark.asks_first  # the pages' own threshold: long computations must ask first

TIMEOUT = 600
MAX_PRESSES = 20
CASES = [(zoo, page.name) for zoo in sorted(ui.bundled_zoos()) for page in page_files()]


def problems(at: AppTest) -> list[str]:
    return [e.value for e in at.exception] + [e.value for e in at.main.error]


@pytest.mark.slow
@pytest.mark.parametrize(("zoo", "page"), CASES, ids=[f"{z}-{p}" for z, p in CASES])
def test_every_button_with_its_defaults(monkeypatch, zoo, page):
    monkeypatch.setenv(ui.ENV_ZOO, str(ui.bundled_zoos()[zoo]))
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=TIMEOUT).run()
    assert not problems(at), (zoo, page, "opening", problems(at))
    pressed: list[str] = []
    while len(pressed) < MAX_PRESSES:
        waiting = [b for b in at.button if not b.disabled and (b.key or b.label) not in pressed]
        if not waiting:
            break
        button = waiting[0]
        pressed.append(button.key or button.label)
        button.click().run()
        assert not problems(at), (zoo, page, pressed[-1], problems(at))
    assert len(pressed) < MAX_PRESSES, (zoo, page, "buttons keep appearing", pressed)
    confirmations = [c for c in at.checkbox if c.label.endswith("run it anyway")]
    for box in confirmations:  # asked first: the box says how long, a caption says from what
        assert box.label.startswith("This takes about") and not box.value, box.label
    if confirmations:
        assert any(c.value.startswith("Estimated about") for c in at.caption), (zoo, page)
