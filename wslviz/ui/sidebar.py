"""The sidebar shown on every page: zoo picker (bundled, folder path, upload), the linked selection,
and the teaching-mode switch. In serve mode (:mod:`wslviz.ui.serve`) folder paths are taken inside the
shared roots only and errors name no other path."""

from __future__ import annotations

import importlib
import importlib.util

import streamlit as st

from wslviz import ui
from wslviz.ui import serve

SOURCE_KEY = "zoo_source"
BUNDLED_KEY = "zoo_bundled"
FOLDER_KEY = "zoo_folder"
BUNDLED, FOLDER, UPLOAD = "Bundled", "Folder path", "Upload"


def _uploader():
    """``wslviz.ui.upload.zoo_uploader`` when that module exists (it is optional)."""
    if importlib.util.find_spec("wslviz.ui.upload") is None:
        return None
    return getattr(importlib.import_module("wslviz.ui.upload"), "zoo_uploader", None)


def _open(path: str) -> None:
    """Make ``path`` the current zoo; if it does not open, its error replaces the pages (never the old zoo)."""
    ui.choose_zoo(path)


def _pick_bundled() -> None:
    name = st.session_state.get(BUNDLED_KEY)
    if name:
        _open(str(ui.bundled_zoos()[name]))


def _pick_folder() -> None:
    text = (st.session_state.get(FOLDER_KEY) or "").strip()
    if text:
        _open(text)


def _clear_selection() -> None:
    ui.set_selection([])


def zoo_picker() -> None:
    """Render the sidebar. The widgets follow the current zoo (it may have been set by the URL, the tour
    or another page), so their state is re-synchronised before they are drawn."""
    zoos = ui.bundled_zoos()
    current = ui.current_zoo_path()
    ref = ui.zoo_ref(current) if current else None
    uploader = _uploader()
    sources = [BUNDLED, FOLDER] + ([UPLOAD] if uploader else [])
    if st.session_state.get(SOURCE_KEY) not in sources:
        st.session_state[SOURCE_KEY] = BUNDLED if (ref in zoos or not current) else FOLDER
    st.session_state[BUNDLED_KEY] = ref if ref in zoos else None
    if ref not in zoos and current and FOLDER_KEY not in st.session_state:
        st.session_state[FOLDER_KEY] = current

    with st.sidebar:
        st.markdown("### Zoo")
        source = st.radio("source", sources, key=SOURCE_KEY, horizontal=True, label_visibility="collapsed")
        if source == BUNDLED:
            if zoos:
                st.selectbox("bundled zoo", list(zoos), key=BUNDLED_KEY, on_change=_pick_bundled,
                             placeholder="choose a bundled zoo")
            else:
                st.info("No bundled zoos yet: run `wslviz make-zoo`.")
        elif source == FOLDER:
            rules = serve.serve_rules()
            shared = ", ".join(f"`{r}`" for r in rules.roots) if rules else ""
            st.text_input("zoo folder", key=FOLDER_KEY, on_change=_pick_folder,
                          placeholder="name or path under a shared folder" if rules else "/path/to/zoo",
                          help="Any supported layout (native, Model Zoos, Small CNN Zoo, folders of "
                               "checkpoints, ...). Press Enter to open."
                               + (f" This server shares zoos under {shared} only." if rules else ""))
            if rules:
                st.caption(f"Shared folders: {shared}")
        else:
            path = uploader(select=False)
            if path and str(path) != current:
                _open(str(path))
                if ui.current_zoo_path() == str(path):
                    st.rerun()
        if error := st.session_state.get(ui.ZOO_ERROR_KEY):
            st.error(serve.public_message(error, also=(ui.SAMPLE_DIR,)), icon=":material/error:")
        zoo = ui.current_zoo(stop_on_error=False)
        if zoo is not None:
            st.caption(f"**{zoo.name}**: {zoo.n_models:,} models, {zoo.n_checkpoints:,} checkpoints, "
                       f"{zoo.n_params:,} parameters")

        st.markdown("### Selection")
        selection = ui.get_selection()
        if selection and zoo is not None:
            shown = ", ".join(f"#{r}" for r in selection[:8]) + (" ..." if len(selection) > 8 else "")
            st.caption(f"{len(selection):,} checkpoint(s): {shown}")
            st.button("Clear selection", on_click=_clear_selection, key="clear_selection",
                      icon=":material/deselect:")
        else:
            st.caption("None yet: select rows on the Zoo page or points in Projections. The selection is "
                       "shared by all pages and saved in the URL (bookmark it to come back).")
        st.divider()
        st.toggle("Teaching mode", key=ui.TEACHING_KEY,
                  help="Open every page's explainer (the idea, what to look for, the paper).")
