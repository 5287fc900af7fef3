"""The only Streamlit-aware helpers, shared by ``app.py`` and the pages.

Pages read the current zoo with :func:`require_zoo`, the linked selection of checkpoints with
:func:`get_selection` / :func:`set_selection` (or the :func:`selection_picker` widget) and the widget
defaults it suggests with :func:`default_rows`, open with :func:`teaching`, offer exports with
:func:`download_csv` / :func:`download_figure` / :func:`download_weights`, and get every result that
costs more than a moment through the one result cache, :func:`result` / :func:`on_request`
(:mod:`wslviz.ui.results`: keyed by zoo fingerprint and parameters, with a progress bar).

Linked views: the current zoo and the selection live in session state (the source of truth while a
session runs) and are mirrored in the URL query string (``?zoo=moons-mlp&sel=3,17``) so that a view
can be bookmarked or shared. The URL is read once, on a session's first run (a reload or a shared
link), and rewritten on every run, because navigating between pages clears the query string.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from safetensors.torch import save

from wslviz.core.protocol import ArchitectureLike, assumed_of
from wslviz.core.zoo import Zoo
from wslviz.formats import ZooFormatError
from wslviz.plots.zoo import file_names
from wslviz.scale.cache import cache_stamp, load_zoo
from wslviz.ui import texts
from wslviz.ui.results import cached_value as cached_value
from wslviz.ui.results import cost_gate as cost_gate
from wslviz.ui.results import forget as forget
from wslviz.ui.results import on_request as on_request
from wslviz.ui.results import progress_callback as progress_callback
from wslviz.ui.results import requested_key as requested_key
from wslviz.ui.results import result as result
from wslviz.ui.results import unit_costs as unit_costs
from wslviz.ui.serve import check_zoo_path, public_message

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_zoo"
ZOO_KEY = "zoo_path"
SELECTION_KEY = "selection"
TEACHING_KEY = "teaching_mode"
ZOO_ERROR_KEY = "_zoo_error"
_URL_READ_KEY = "_url_read"
ZOO_PARAM = "zoo"
SEL_PARAM = "sel"
TEACH_PARAM = "teach"
"""Query parameter of teaching mode (``?teach=1``), so that a lecture's link opens with the explainers open."""
ENV_ZOO = "WSLVIZ_ZOO"  # set by ``wslviz app ZOO``: the zoo a new session opens
ENV_OPTIONS = "WSLVIZ_ZOO_OPTIONS"  # set by ``wslviz app ZOO --activation ...``: that zoo's reader options (JSON)
OPTIONS_KEY = "zoo_options"  # resolved zoo path -> reader options stated on the home page
DEFAULT_ZOO = "moons-mlp"  # the bundled zoo a new session opens otherwise (small, 2D task, fast)


def bundled_zoos() -> dict[str, Path]:
    """Name -> path of the zoos under ``sample_zoo/``."""
    if not SAMPLE_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SAMPLE_DIR.iterdir()) if (p / "zoo.json").is_file()}


@st.cache_resource(show_spinner="Opening zoo ...", max_entries=8)
def _load(path: str, mtime: float, options: str = "{}") -> Zoo:
    return load_zoo(path, **json.loads(options))


def open_zoo(path: str | Path, options: dict | None = None) -> Zoo:
    """Open (cached by path and modification time) the zoo at ``path``.

    Raises :class:`ZooFormatError` naming the path and the problem when it is not a readable zoo, and
    :class:`~wslviz.ui.serve.PathRefused` for a path that serve mode does not share. A precompute cache
    made meanwhile is noticed (the stamp includes the per-user caches' manifests)."""
    path = check_zoo_path(path, also=(SAMPLE_DIR,))
    if not path.exists():
        raise ZooFormatError(path, "no such file or directory")
    stamp = max((f.stat().st_mtime for f in path.iterdir()), default=0.0) if path.is_dir() else path.stat().st_mtime
    resolved = str(path.resolve())
    stated = zoo_options(resolved) if options is None else options
    return _load(resolved, max(stamp, cache_stamp()), json.dumps(stated, sort_keys=True))


def zoo_options(path: str | Path) -> dict:
    """The reader options stated for the zoo at ``path`` (``wv.load_zoo`` keywords: ``activation``,
    ``input_shape``, ``arch``, ``stack``, ``group``, ``task``): from the home page's form, else from
    ``wslviz app ZOO --activation ...`` for that zoo, else none."""
    key = str(Path(path).expanduser().resolve())
    stated = st.session_state.get(OPTIONS_KEY, {})
    if key in stated:
        return dict(stated[key])
    env = os.environ.get(ENV_ZOO)
    if env and str(Path(env).expanduser().resolve()) == key:
        return json.loads(os.environ.get(ENV_OPTIONS) or "{}")
    return {}


def set_zoo_options(path: str | Path, options: dict) -> Zoo:
    """Reopen the zoo at ``path`` with ``options`` and keep them for it; raises (changing nothing) when it does
    not open with them. A task path (and an adapter zoo's base model folder) must be one serve mode shares. The
    selection is cleared: rows may change."""
    for shared in ("task", "base"):  # files the zoo reads besides itself: only where serve mode shares them
        if options.get(shared):
            check_zoo_path(options[shared], also=(SAMPLE_DIR,))
    zoo = open_zoo(path, options)
    key = str(Path(path).expanduser().resolve())
    st.session_state[OPTIONS_KEY] = {**st.session_state.get(OPTIONS_KEY, {}), key: dict(options)}
    st.session_state[SELECTION_KEY] = []
    return zoo


def resolve_zoo_ref(ref: str) -> Path:
    """A zoo reference as it appears in the URL (a bundled zoo's name, or a path) -> its path."""
    return bundled_zoos().get(ref) or Path(ref).expanduser()


def zoo_ref(path: str | Path) -> str:
    """The short reference for the URL: the bundled name when ``path`` is a bundled zoo, else the path."""
    resolved = Path(path).expanduser().resolve()
    for name, p in bundled_zoos().items():
        if p.resolve() == resolved:
            return name
    return str(path)


def _parse_rows(text: str) -> list[int]:
    """``"3,17"`` -> ``[3, 17]``; anything that is not a non-negative integer is dropped."""
    return [int(t) for t in text.split(",") if t.strip().isdigit()]


def init_state() -> None:
    """On a session's first run, take the zoo and selection from the URL (or ``$WSLVIZ_ZOO``).

    A zoo reference that does not open still becomes the current zoo (see :func:`choose_zoo`): its
    error is shown in place of the pages, never another zoo. Selected rows outside the zoo are dropped."""
    ensure_app()
    if st.session_state.get(_URL_READ_KEY):
        return
    ref = st.query_params.get(ZOO_PARAM) or os.environ.get(ENV_ZOO)
    if ref and ZOO_KEY not in st.session_state:
        error = choose_zoo(resolve_zoo_ref(ref))
        if error:
            st.session_state[ZOO_ERROR_KEY] = f"Could not open zoo {ref!r} from the link: {error}"
    if st.query_params.get(TEACH_PARAM) == "1" and TEACHING_KEY not in st.session_state:
        st.session_state[TEACHING_KEY] = True
    sel = st.query_params.get(SEL_PARAM)
    if sel and not get_selection():
        zoo = current_zoo(stop_on_error=False)
        n = zoo.n_checkpoints if zoo is not None else 0
        st.session_state[SELECTION_KEY] = [r for r in _parse_rows(sel) if r < n]
    st.session_state[_URL_READ_KEY] = True


def url_params() -> dict[str, str]:
    """The query parameters describing the current view (zoo and selection)."""
    out: dict[str, str] = {}
    path = st.session_state.get(ZOO_KEY)
    if path:
        out[ZOO_PARAM] = zoo_ref(path)
    sel = get_selection()
    if sel:
        out[SEL_PARAM] = ",".join(map(str, sel))
    if teaching_mode():
        out[TEACH_PARAM] = "1"
    return out


def sync_url() -> None:
    """Mirror the current zoo and selection in the URL (only the keys that changed are written)."""
    want = url_params()
    for key in (ZOO_PARAM, SEL_PARAM, TEACH_PARAM):
        if key in want and st.query_params.get(key) != want[key]:
            st.query_params[key] = want[key]
        elif key not in want and key in st.query_params:
            del st.query_params[key]


def ensure_app() -> None:
    """Make sure the page runs inside ``app.py`` (navigation, sidebar, URL state).

    When a ``pages/`` folder sits next to the main script, Streamlit starts in its legacy multipage mode
    and runs a page file *directly* if the first request after the server starts is a page URL (a
    bookmark, a reload); ``st.navigation`` in ``app.py`` switches that mode off for good, but only once it
    has run. So a page that finds itself in legacy mode switches it off and reruns, through ``app.py``."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def current_zoo_path() -> str | None:
    """Path of the current zoo (default: ``$WSLVIZ_ZOO``, else bundled ``moons-mlp``, else the first
    bundled zoo)."""
    ensure_app()
    path = st.session_state.get(ZOO_KEY)
    if path is None:
        env = os.environ.get(ENV_ZOO)
        zoos = bundled_zoos()
        default = zoos.get(DEFAULT_ZOO) or next(iter(zoos.values()), None)
        path = str(resolve_zoo_ref(env)) if env else (str(default) if default else None)
        st.session_state[ZOO_KEY] = path
    return path


def require_zoo(runs_networks: bool = True) -> Zoo:
    """:func:`current_zoo` for a page that needs one: with no zoo open, says where to pick one and stops. A page
    that ``runs_networks`` (its results depend on what they compute) captions what the architecture assumes (an
    activation the checkpoints did not record), marked *assumed*, with a link to the home page's form."""
    zoo = current_zoo()
    if zoo is None:
        st.info("No zoo is open: pick one in the sidebar.")
        st.stop()
    if runs_networks and (assumed := assumed_of(zoo.arch)):
        st.caption("What this page computes rests on " + "; ".join(f"{k}: {v} *(assumed)*" for k, v in assumed.items())
                   + ": the checkpoints do not record it. If it is wrong, state it in the form on the [home page](/).")
    return zoo


def current_zoo(stop_on_error: bool = True) -> Zoo | None:
    """The zoo picked in the sidebar (default: see :func:`current_zoo_path`), or None if there is none.

    A zoo that fails to open never falls back to another one: with ``stop_on_error`` its
    :class:`ZooFormatError` message (never a traceback) is shown in the main area and the page stops;
    without, None is returned and the caller says what it needs to."""
    path = current_zoo_path()
    if not path:
        return None
    try:
        return open_zoo(path)
    except (ValueError, OSError) as e:
        if stop_on_error:
            st.error(f"Could not open the zoo: {public_message(str(e), also=(SAMPLE_DIR,))}", icon=":material/error:")
            st.info("Nothing is drawn for a zoo that did not open: pick another zoo in the sidebar.")
            st.stop()
        return None


def set_zoo(path: str | Path) -> Zoo:
    """Make the zoo at ``path`` current (raises :class:`ZooFormatError` if it does not open, changing
    nothing). The selection is cleared when the zoo changes: row numbers belong to one zoo."""
    zoo = open_zoo(path)
    _make_current(path)
    return zoo


def choose_zoo(path: str | Path) -> str | None:
    """Make ``path`` the current zoo whether or not it opens; returns its error message, or None.

    A zoo that does not open becomes current all the same (the error kept under ``ZOO_ERROR_KEY``
    for the sidebar), so that no page goes on drawing the previous zoo and the URL names what was
    asked for; every page then shows the error instead (:func:`current_zoo`)."""
    try:
        open_zoo(path)
    except (ValueError, OSError) as e:
        _make_current(path)
        st.session_state[ZOO_ERROR_KEY] = str(e)
        return str(e)
    _make_current(path)
    return None


def _make_current(path: str | Path) -> None:
    path = str(Path(path).expanduser())
    if st.session_state.get(ZOO_KEY) != path:
        st.session_state[ZOO_KEY] = path
        st.session_state[SELECTION_KEY] = []
    st.session_state.pop(ZOO_ERROR_KEY, None)


def get_selection() -> list[int]:
    """Row indices of the currently selected checkpoints (linked across pages)."""
    ensure_app()
    return list(st.session_state.get(SELECTION_KEY, []))


def set_selection(rows: Sequence[int]) -> None:
    """Make ``rows`` (checkpoint row indices, duplicates dropped, order kept) the linked selection; the
    URL follows."""
    st.session_state[SELECTION_KEY] = list(dict.fromkeys(int(r) for r in rows))
    sync_url()


def checkpoint_labels(zoo: Zoo) -> list[str]:
    """Short human labels for every checkpoint row, e.g. ``"#17 · model 3 · epoch 20 · acc 0.930"``, with the file
    (or the metadata's ``name``) after the row for folders of checkpoints (``"#2 · run1/epoch_5.pt · model 1 ..."``).

    Built once per opened zoo (kept in ``zoo.extra``): pages format selectboxes over thousands of rows
    with them on every rerun."""
    labels = zoo.extra.get("_ui_labels")
    if labels is not None and len(labels) == zoo.n_checkpoints:
        return labels
    meta = zoo.metadata
    parts = [[f"#{r}" for r in range(zoo.n_checkpoints)]]
    files = file_names(meta)
    if files is not None:  # two checkpoints of a folder are told apart by their files
        parts.append(files)
    for col, name in (("model_id", "model"), ("epoch", "epoch")):
        if col in meta:
            parts.append([f"{name} {v}" for v in meta[col].tolist()])
    if "test_acc" in meta:
        parts.append([f"acc {v:.3f}" if pd.notna(v) else "" for v in meta["test_acc"].tolist()])
    labels = [" · ".join(p for p in row if p) for row in zip(*parts, strict=True)]
    zoo.extra["_ui_labels"] = labels
    return labels


def checkpoint_label(zoo: Zoo, row: int) -> str:
    """The label of one checkpoint row (see :func:`checkpoint_labels`)."""
    return checkpoint_labels(zoo)[int(row)]


def default_rows(zoo: Zoo, n: int, rows: Sequence[int] | None = None) -> list[int]:
    """Up to ``n`` distinct checkpoint rows to pre-fill a widget with, taken from ``rows`` (default: the
    linked selection) first: one checkpoint per model (its latest epoch among ``rows``, so trained
    rather than initial where ``rows`` allow), best test accuracy first. When ``rows`` name fewer than
    ``n`` models, the final checkpoints of other models follow (best first), then the remaining rows of
    ``rows``, then any rows. Never more than ``n``, so a widget with ``max_selections=n`` can take it."""
    rows = [r for r in (get_selection() if rows is None else rows) if 0 <= r < zoo.n_checkpoints]
    meta = zoo.metadata
    model = zoo.model_ids
    epoch = meta["epoch"].to_numpy(dtype=float) if "epoch" in meta else np.zeros(zoo.n_checkpoints)
    acc = meta["test_acc"].to_numpy(dtype=float) if "test_acc" in meta else np.zeros(zoo.n_checkpoints)

    def per_model_best_first(candidates: Sequence[int]) -> list[int]:
        latest: dict = {}
        for r in candidates:
            m = model[r]
            if m not in latest or epoch[r] > epoch[latest[m]]:
                latest[m] = r
        # untrained (epoch 0) rows after trained ones; NaN accuracies last
        return sorted(latest.values(), key=lambda r: (epoch[r] == 0, -np.nan_to_num(acc[r], nan=-np.inf), r))

    picked = per_model_best_first(rows)
    seen = {model[r] for r in picked}
    picked += [r for r in per_model_best_first(range(zoo.n_checkpoints)) if model[r] not in seen]
    picked += rows + list(range(zoo.n_checkpoints))
    return list(dict.fromkeys(int(r) for r in picked))[:max(0, n)]


def selection_picker(zoo: Zoo, label: str = "Checkpoints", default_count: int = 1, key: str = "selection_picker",
                     max_selections: int | None = None, help: str | None = None) -> list[int]:
    """A multiselect over the zoo's checkpoints, linked to the shared selection.

    Starts from the current selection when it fits ``max_selections``, else from :func:`default_rows`
    of it (``max_selections`` of them; ``default_count`` without a selection); a change made here
    becomes the shared selection (and the URL). Returns the picked row indices."""
    selection = [r for r in get_selection() if r < zoo.n_checkpoints]
    if selection and (max_selections is None or len(selection) <= max_selections):
        default = selection
    else:
        n = max_selections if selection else default_count
        default = default_rows(zoo, min(n, max_selections or n), selection)

    def changed() -> None:
        set_selection(st.session_state[key])

    return list(st.multiselect(label, options=list(range(zoo.n_checkpoints)), default=default, key=key,
                               format_func=checkpoint_labels(zoo).__getitem__, max_selections=max_selections,
                               on_change=changed, help=help or "Linked across pages and saved in the URL."))


def teaching_mode() -> bool:
    """Whether the sidebar's teaching mode is on (explainers open by default)."""
    return bool(st.session_state.get(TEACHING_KEY, False))


def teaching(page: str) -> None:
    """The "About this page" explainer every page opens with (:data:`wslviz.ui.texts.EXPLAINERS`): the idea,
    what to look for, one thing to try, the terms it uses (from the glossary) and the papers, linked.
    Open by default in teaching mode (sidebar toggle)."""
    ensure_app()
    text = texts.EXPLAINERS[page]
    with st.expander(f"About this page: {text.title}", expanded=teaching_mode(), icon=":material/school:"):
        st.markdown(text.body)
        st.markdown(f"**Try this:** {text.try_this}")
        if text.terms:
            st.markdown("**Terms.**\n" + "\n".join(f"- *{t}*: {texts.GLOSSARY[t]}" for t in text.terms))
        st.caption("Papers: " + "; ".join(p.markdown() for p in text.papers))


def number_columns(df: pd.DataFrame) -> dict:
    """``st.dataframe`` column formats in the house style: floats with 4 significant digits, integers
    with thousands separators (``1,120``), so every table reads alike."""
    out = {}
    for col in df.columns:
        if pd.api.types.is_float_dtype(df[col]):
            out[col] = st.column_config.NumberColumn(str(col), format="%.4g")
        elif pd.api.types.is_integer_dtype(df[col]) and col not in ("row", "model_id", "seed", "epoch"):
            out[col] = st.column_config.NumberColumn(str(col), format="localized")
    return out


def chart(fig: go.Figure, key: str, **kwargs) -> dict | None:
    """``st.plotly_chart`` in the house style: ``theme=None`` (the figure carries :mod:`wslviz.plots.style`;
    Streamlit's theme would replace its fonts and colour scales, so pages would differ), full width.
    Returns the selection event where ``on_select`` is passed."""
    return st.plotly_chart(fig, key=key, theme=None, **{"width": "stretch", **kwargs})


# ------------------------------------------------------------------ exports
def weights_to_safetensors(arch: ArchitectureLike, weights: torch.Tensor,
                           metadata: pd.DataFrame | None = None) -> bytes:
    """``.safetensors`` bytes holding one float32 tensor ``"weights"`` ``[n, n_params]``; the header's
    metadata carries the architecture spec (JSON) and the per-row metadata (JSON records)."""
    weights = torch.as_tensor(weights, dtype=torch.float32).detach()
    if weights.ndim == 1:
        weights = weights[None]
    if weights.ndim != 2 or weights.shape[1] != arch.n_params:
        raise ValueError(f"weights of shape {list(weights.shape)} do not fit {arch.describe()} "
                         f"(expected [n, {arch.n_params}])")
    if metadata is not None and len(metadata) != weights.shape[0]:
        raise ValueError(f"{len(metadata)} metadata rows for {weights.shape[0]} weight rows")
    header = {"format": "wslviz-weights", "architecture": arch.to_json()}
    if metadata is not None:
        header["metadata"] = metadata.to_json(orient="records")
    return save({"weights": weights.contiguous().clone()}, metadata=header)


def _file_name(name: str, ext: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "export"
    return f"{stem}.{ext}"


def download_csv(df: pd.DataFrame, name: str, label: str = "Download table (CSV)") -> None:
    """A download button for ``df`` as CSV (``name``.csv)."""
    st.download_button(label, lambda: df.to_csv(index=False).encode(), file_name=_file_name(name, "csv"),
                       mime="text/csv", key=f"dl-csv-{name}", on_click="ignore", icon=":material/download:")


CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium: the browser kaleido renders PNGs with here


def png_browser() -> str | None:
    """The browser kaleido will drive: ``$BROWSER_PATH`` when set, else Debian's chromium when installed
    (then ``$BROWSER_PATH`` is set to it, which is where kaleido's browser finder looks first), else None:
    no PNG export (kaleido would otherwise try to download a browser)."""
    if not os.environ.get("BROWSER_PATH") and CHROMIUM.exists():
        os.environ["BROWSER_PATH"] = str(CHROMIUM)
    return os.environ.get("BROWSER_PATH") or None


def png_available() -> bool:
    """Whether figures can be exported as PNG: kaleido is importable and :func:`png_browser` found a browser."""
    import importlib.util

    return importlib.util.find_spec("kaleido") is not None and png_browser() is not None


def figure_png(fig: go.Figure, scale: float = 2.0) -> bytes:
    """``fig`` rendered to PNG bytes by kaleido in headless chromium (``scale`` times the figure's pixel size).
    Each call starts the browser (several seconds): call it only when a user asks for the file."""
    if png_browser() is None:
        raise RuntimeError(f"PNG export needs chromium ({CHROMIUM}) or $BROWSER_PATH naming a Chrome/Chromium")
    return fig.to_image(format="png", scale=scale)


def download_figure(fig: go.Figure, name: str, label: str = "Download figure (HTML)") -> None:
    """Download buttons for ``fig`` as self-contained interactive HTML (works offline) and, when
    :func:`png_available`, as PNG. The files are generated only when a button is clicked (a PNG takes
    seconds: it starts a browser). The buttons sit side by side."""
    row = st.container(horizontal=True)
    row.download_button(label, lambda: fig.to_html(include_plotlyjs=True, full_html=True).encode(),
                        file_name=_file_name(name, "html"), mime="text/html", key=f"dl-html-{name}",
                        on_click="ignore", icon=":material/download:")
    if png_available():
        row.download_button("Download figure (PNG)", lambda: figure_png(fig), file_name=_file_name(name, "png"),
                            mime="image/png", key=f"dl-png-{name}", on_click="ignore", icon=":material/download:",
                            help="Rendered on click by kaleido in headless chromium: the file takes a few seconds.")


def download_weights(arch: ArchitectureLike, weights: torch.Tensor, metadata: pd.DataFrame | None, name: str,
                     label: str = "Download weights (.safetensors)") -> None:
    """A download button for weight rows ``[n, n_params]`` as ``.safetensors`` (see
    :func:`weights_to_safetensors`)."""
    st.download_button(label, lambda: weights_to_safetensors(arch, weights, metadata),
                       file_name=_file_name(name, "safetensors"), mime="application/octet-stream",
                       key=f"dl-st-{name}", on_click="ignore", icon=":material/download:")


__all__ = ["CHROMIUM", "DEFAULT_ZOO", "ENV_OPTIONS", "ENV_ZOO", "OPTIONS_KEY", "SAMPLE_DIR", "SELECTION_KEY",
           "SEL_PARAM", "TEACHING_KEY", "TEACH_PARAM", "ZOO_ERROR_KEY", "ZOO_KEY", "ZOO_PARAM", "bundled_zoos",
           "cached_value", "chart", "checkpoint_label", "checkpoint_labels", "choose_zoo", "current_zoo",
           "current_zoo_path", "default_rows", "download_csv", "download_figure", "download_weights", "ensure_app",
           "figure_png", "forget", "get_selection", "init_state", "number_columns", "on_request", "open_zoo",
           "png_available", "png_browser", "progress_callback", "requested_key", "require_zoo", "resolve_zoo_ref",
           "result", "selection_picker", "set_selection", "set_zoo", "set_zoo_options", "sync_url", "teaching",
           "teaching_mode", "url_params", "weights_to_safetensors", "zoo_options", "zoo_ref"]
