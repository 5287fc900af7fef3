"""Widgets built from what the library declares: one Streamlit widget per :class:`~wslviz.generation.params.Param`.

A page asks a generator for its options (``G.GENERATORS[method].params(zoo)``) and calls :func:`param_inputs`,
which lays the widgets out and returns the constructor arguments; the page never names a generator's options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from wslviz.core.zoo import Zoo
from wslviz.generation.params import Param

ROW_WIDGETS = ("row", "rows")


def _number(p: Param, where: Any, key: str) -> Any:
    if all(isinstance(v, int) for v in (p.default, p.low, p.high, p.step)):
        return where.slider(p.label, int(p.low), int(p.high), int(p.default), int(p.step), key=key, help=p.help or None)
    return where.slider(p.label, float(p.low), float(p.high), float(p.default), float(p.step), key=key,
                        help=p.help or None)


def param_input(p: Param, where: Any, key: str, rows: Sequence[int], suggested: Sequence[int],
                label: Callable[[int], str]) -> Any:
    """One widget for ``p`` in ``where`` (a container or column); ``rows`` are the checkpoints a ``row``/``rows``
    option may take, ``suggested`` the ones the linked selection suggests, ``label`` names a row."""
    if p.widget == "row":
        return where.selectbox(p.label, rows, index=list(rows).index(suggested[min(p.default, len(suggested) - 1)]),
                               format_func=label, key=key, help=p.help or None)
    if p.widget == "rows":
        cap = int(p.high) if p.high is not None else None
        return where.multiselect(p.label + (f" (up to {cap})" if cap else ""), rows,
                                 default=list(suggested[:p.default]), format_func=label, max_selections=cap, key=key,
                                 help=p.help or None)
    if p.widget == "checkbox":
        return where.checkbox(p.label, bool(p.default), key=key, help=p.help or None)
    if p.widget == "choice":
        return where.select_slider(p.label, list(p.choices), p.default, key=key, help=p.help or None)
    if p.widget == "range":
        return where.slider(p.label, float(p.low), float(p.high), tuple(float(v) for v in p.default),
                            float(p.step), key=key, help=p.help or None)
    return _number(p, where, key)


def param_inputs(params: Sequence[Param], zoo: Zoo, prefix: str, suggest: Callable[[int], Sequence[int]],
                 label: Callable[[int], str]) -> dict[str, Any]:
    """Widgets for every option in ``params`` (checkpoint pickers on full width, the rest three to a row), keyed
    ``f"{prefix}_{param.key}"``; returns the constructor arguments. ``suggest(n)`` gives ``n`` suggested rows."""
    rows = list(range(zoo.n_checkpoints))
    wants = [p.default for p in params if p.widget == "rows"] + [p.default + 1 for p in params if p.widget == "row"]
    suggested = list(suggest(max(wants))) if wants else []
    options: dict[str, Any] = {}
    others = [p for p in params if p.widget not in ROW_WIDGETS]
    pickers = [p for p in params if p.widget in ROW_WIDGETS]
    if any(p.widget == "row" for p in pickers):
        columns = st.columns(sum(p.widget == "row" for p in pickers))
        for p, col in zip([p for p in pickers if p.widget == "row"], columns, strict=True):
            options.update(p.options(param_input(p, col, f"{prefix}_{p.key}", rows, suggested, label)))
    for p in pickers:
        if p.widget == "rows":
            options.update(p.options(param_input(p, st, f"{prefix}_{p.key}", rows, suggested, label)))
    for start in range(0, len(others), 3):
        for p, col in zip(others[start:start + 3], st.columns(3), strict=False):
            options.update(p.options(param_input(p, col, f"{prefix}_{p.key}", rows, suggested, label)))
    return options
