"""Helpers for page tests under Streamlit's AppTest: run a page on a zoo (with a linked selection), find a chart's
Plotly figure by its key, and read Plotly's JSON arrays (plain lists or base64 typed arrays) as numpy."""

from __future__ import annotations

import base64
import json

import numpy as np
from streamlit.testing.v1 import AppTest

from wslviz import ui


def run_page(monkeypatch, page: str, path: str, selection: list[int] | None = None, timeout: int = 300) -> AppTest:
    """The page file ``page`` run once on the zoo at ``path`` (through the environment, as the app passes it),
    with ``selection`` as the linked selection; fails on an exception."""
    monkeypatch.setenv(ui.ENV_ZOO, path)
    at = AppTest.from_file(page, default_timeout=timeout)
    if selection is not None:
        at.session_state[ui.SELECTION_KEY] = selection
    at.run()
    assert not at.exception, at.exception
    return at


def charts(at: AppTest) -> dict[str, dict]:
    """Every Plotly figure on the page (as a dict), by its element id."""
    return {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def chart(at: AppTest, key: str) -> dict:
    """The Plotly figure (as a dict) of the chart whose key or element id holds ``key``."""
    found = [c for c in at.get("plotly_chart") if key in (c.proto.id or "") or getattr(c, "key", None) == key]
    assert found, f"no chart {key}; charts: {[getattr(c, 'key', None) for c in at.get('plotly_chart')]}"
    return json.loads(found[0].proto.spec)


def arr(value) -> np.ndarray:
    """A Plotly JSON array: a plain list, or ``{"dtype", "bdata" (base64), "shape"}``."""
    if isinstance(value, dict):
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return out.reshape([int(n) for n in str(value.get("shape", len(out))).split(",")])
    return np.asarray(value)
