"""The one result cache every page uses: results keyed by zoo fingerprint and parameters, computed with
a progress bar that is removed when done.

:func:`result` returns a computation's value from the cache or computes it now. The value is stored in a
process-wide slot (``st.cache_resource``: no pickling round trip, shared by sessions; callers must not
mutate what they get) that is filled *outside* any cached function, so the progress bar drawn while
computing is never recorded, and never replayed, by Streamlit's cache. :func:`on_request` is the same
for a section computed on a button press: the request is remembered per session, so the result stays
on the page across reruns (read back from the cache, recomputed with a bar if it was evicted).

Keys are plain values (names, numbers, strings, tuples of them): ``repr`` of the key tuple identifies
the computation together with the zoo's fingerprint, so ``compute`` must depend on nothing else. It is
called as ``compute(progress=callback)``: a library function with its arguments bound by
``functools.partial``, since every long library computation takes a ``progress`` keyword.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from wslviz.core.zoo import Zoo
from wslviz.scale.cost import BATCH, UnitCosts, Work, describe_seconds, estimate, measure_unit_costs

T = TypeVar("T")
Progress = Callable[[int, int], None]
REQUESTS_KEY = "_requested_results"
MAX_RESULTS = 256
ASK_ABOVE = 60.0
"""Computations estimated to take longer (seconds) ask for a confirmation before their button can be pressed."""


def progress_callback(label: str) -> Progress:
    """A ``progress(done, total)`` callback driving an ``st.progress`` bar with counts."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{label} {done:,}/{total:,}")

    return update


@st.cache_resource(show_spinner=False, max_entries=MAX_RESULTS)
def _slot(fingerprint: str, key: str) -> dict[str, Any]:
    return {}


def cached_value(zoo: Zoo, key: tuple[Hashable, ...]) -> Any | None:
    """The cached value of ``key`` for ``zoo``, or None when it has not been computed (or was evicted)."""
    return _slot(zoo.fingerprint, repr(key)).get("value")


def result(zoo: Zoo, key: tuple[Hashable, ...], compute: Callable[..., T], label: str | None = None) -> T:
    """``compute(progress=...)`` for ``key`` on ``zoo``, from the cache, or computed now.

    While computing, a progress bar with ``label`` is drawn where this is called and ``compute`` gets
    its callback; the bar is removed when done (also on an error, which propagates). Without
    ``label`` (results that take well under a second) nothing is drawn and ``compute`` gets None."""
    slot = _slot(zoo.fingerprint, repr(key))
    if "value" not in slot:
        if label is None:
            slot["value"] = compute(progress=None)
        else:
            holder = st.empty()
            try:
                with holder:
                    slot["value"] = compute(progress=progress_callback(label))
            finally:
                holder.empty()
    return slot["value"]


def on_request(zoo: Zoo, section: str, key: tuple[Hashable, ...], compute: Callable[..., T], label: str,
               run: bool, errors: tuple[type[Exception], ...] = (ValueError,)) -> T | None:
    """A section's result that is computed on demand (``run``: its button was pressed) and then kept.

    With ``run``, ``key`` is computed (see :func:`result`) and remembered as this session's request
    for ``section``; an exception of a type in ``errors`` (collinear models, too short a trajectory,
    ...) is shown with ``st.error`` and forgets the request. Otherwise the last request for ``section``
    on this zoo is returned, or None when there is none: the page shows the last computed result even
    after its widgets changed, until the button is pressed again (:func:`requested_key` tells which)."""
    requests = st.session_state.setdefault(REQUESTS_KEY, {})
    if run:
        try:
            result(zoo, key, compute, label)
        except errors as e:
            requests.pop(section, None)
            st.error(str(e))
            return None
        requests[section] = (zoo.fingerprint, key, compute, label)
    saved = requests.get(section)
    if saved is None or saved[0] != zoo.fingerprint:
        return None
    return result(zoo, *saved[1:])


def requested_key(zoo: Zoo, section: str) -> tuple[Hashable, ...] | None:
    """The key of the last request for ``section`` on ``zoo`` in this session (see :func:`on_request`)."""
    saved = st.session_state.get(REQUESTS_KEY, {}).get(section)
    return saved[1] if saved is not None and saved[0] == zoo.fingerprint else None


def forget(section: str) -> None:
    """Drop this session's request for ``section`` (its result is no longer shown)."""
    st.session_state.get(REQUESTS_KEY, {}).pop(section, None)


def unit_costs(zoo: Zoo) -> UnitCosts:
    """This zoo's measured unit costs (:func:`wslviz.scale.cost.measure_unit_costs` on its first final checkpoints
    and its last one), measured once and kept in the result cache."""
    final = np.sort(zoo.final_index())
    rows = np.r_[final[:BATCH], final[-1:]] if len(final) > BATCH else final  # not a copy of every model
    return result(zoo, ("unit costs",), partial(measure_unit_costs, zoo.arch, zoo.task, zoo.weights[rows]),
                  "Measuring what one evaluation and one matching cost on this zoo")


def cost_gate(zoo: Zoo, key: str, evaluations: Work = (), matchings: float = 0, extra: str = "") -> bool:
    """Say before a computation starts what it will cost, from the zoo's measured unit costs: model
    ``evaluations`` (:data:`wslviz.scale.cost.Work`: counts and what each runs on) and ``matchings`` weight
    matchings; ``extra`` names work the estimate leaves out ("fitting the generator"). Returns whether its button
    may be pressed: always below :data:`ASK_ABOVE` seconds; above, once the user ticks a box that repeats the
    estimate (keyed ``{key}_ok``)."""
    costs = unit_costs(zoo)
    seconds = estimate(costs, evaluations, matchings)
    if seconds is None:
        st.caption("Cost not estimated: " + ("no matching is measured on networks this size." if matchings and
                                              costs.matching is None else "this zoo cannot be evaluated."))
        return True
    n_evals = sum(n for n, *_ in evaluations)
    parts = [f"{n_evals:,.0f} model evaluations"] if n_evals else []
    parts += [f"{matchings:,.0f} weight matching{'s' if matchings != 1 else ''} at {costs.matching:.2f} s"] \
        if matchings else []
    per = f"{1e3 * costs.evaluation_seconds('test'):.2g} ms per model on the test split" if n_evals else ""
    st.caption(f"Estimated {describe_seconds(seconds)}: " + " + ".join(parts)
               + (f" ({per})" if per else "") + ", measured on this zoo" + (f"; plus {extra}." if extra else "."))
    if seconds <= ASK_ABOVE:
        return True
    return st.checkbox(f"This takes {describe_seconds(seconds)}: run it anyway", value=False, key=f"{key}_ok")
