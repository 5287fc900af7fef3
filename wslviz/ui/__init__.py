"""The only Streamlit-aware helpers, shared by ``app.py`` and the pages.

Pages read the current zoo with :func:`current_zoo`, the linked selection of checkpoints with
:func:`get_selection` / :func:`set_selection`, and wrap long library calls with
:func:`progress_callback`. Cached loaders key on the zoo's path (or fingerprint) and parameters.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from wslviz.zoo import Zoo, load_zoo

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_zoo"
ZOO_KEY = "zoo_path"
SELECTION_KEY = "selection"


def bundled_zoos() -> dict[str, Path]:
    """Name -> path of the zoos under ``sample_zoo/``."""
    if not SAMPLE_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SAMPLE_DIR.iterdir()) if (p / "zoo.json").is_file()}


@st.cache_resource(show_spinner="Opening zoo ...")
def _load(path: str, mtime: float) -> Zoo:
    return load_zoo(path)


def open_zoo(path: str | Path) -> Zoo:
    """Open (cached by path and modification time) the zoo at ``path``."""
    path = Path(path)
    stamp = max((f.stat().st_mtime for f in path.iterdir()), default=0.0) if path.is_dir() else path.stat().st_mtime
    return _load(str(path.resolve()), stamp)


def current_zoo_path() -> str | None:
    path = st.session_state.get(ZOO_KEY)
    if path is None:
        zoos = bundled_zoos()
        path = str(next(iter(zoos.values()))) if zoos else None
        st.session_state[ZOO_KEY] = path
    return path


def current_zoo() -> Zoo | None:
    """The zoo picked in the sidebar (default: the first bundled zoo), or None if there is none."""
    path = current_zoo_path()
    return open_zoo(path) if path else None


def get_selection() -> list[int]:
    """Row indices of the currently selected checkpoints (linked across pages)."""
    return list(st.session_state.get(SELECTION_KEY, []))


def set_selection(rows: list[int]) -> None:
    st.session_state[SELECTION_KEY] = [int(r) for r in rows]


def progress_callback(label: str):
    """A ``progress(done, total)`` callback driving an ``st.progress`` bar with counts."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{label} {done}/{total}")

    return update
