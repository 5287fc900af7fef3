"""Uploading a zoo archive in the browser.

:func:`zoo_uploader` renders a layout picker and an ``st.file_uploader`` for ``.zip`` / ``.tar.gz`` /
``.tgz``; an upload is copied into a folder of its own under the session's private temporary folder
(:func:`wslviz.ui.serve.session_folder`, deleted when the browser session ends), unpacked there with path
checks and size caps (:func:`wslviz.formats.safeio.safe_unpack`), opened in its layout and converted to a
native zoo, whose path becomes the current zoo. Only that session may open it. In serve mode the caps
are the server's (:func:`wslviz.ui.serve.upload_limits`). Problems are shown with ``st.error`` (never a
traceback, never a server path).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import streamlit as st

from wslviz import ui
from wslviz.formats import READERS, ZooFormatError
from wslviz.formats.archive import import_archive
from wslviz.formats.safeio import MAX_BYTES, MAX_FILES
from wslviz.ui import serve

AUTO = "auto-detect"
MAX_UPLOAD_BYTES = 200 * 2**20
_log = logging.getLogger(__name__)


def zoo_uploader(key: str = "zoo_upload", select: bool = True, max_upload_bytes: int | None = None,
                 max_bytes: int | None = None, max_files: int = MAX_FILES) -> str | None:
    """Render the upload widgets; return the path of the uploaded zoo (native layout) or None.

    Each upload is unpacked once (remembered in session state by its file id and the layout picked);
    a new upload replaces the previous one's temporary folder. With ``select`` a newly loaded zoo
    becomes the current zoo (:func:`wslviz.ui.set_zoo`). ``max_upload_bytes`` caps the archive,
    ``max_bytes`` / ``max_files`` what it unpacks to (defaults: :data:`MAX_UPLOAD_BYTES` and the library's
    caps, or the server's in serve mode).
    """
    default_upload, default_unpacked = serve.upload_limits(MAX_UPLOAD_BYTES, MAX_BYTES)
    max_upload_bytes = default_upload if max_upload_bytes is None else max_upload_bytes
    max_bytes = default_unpacked if max_bytes is None else max_bytes
    layouts = [AUTO, *(name for name in READERS if name != "archive")]
    fmt = st.selectbox("Layout of the uploaded zoo", layouts, key=f"{key}_format",
                       help="Leave on auto-detect unless the layout is recognised wrongly.")
    upload = st.file_uploader("Upload a zoo archive (.zip, .tar.gz)", type=["zip", "gz", "tgz"], key=key,
                              help=f"Up to {max_upload_bytes // 2**20} MB; unpacked into a private temporary "
                                   "folder with path checks. Any supported layout.")
    state_key = f"{key}_loaded"
    if upload is None:
        return None
    ident = (upload.file_id, fmt)
    loaded = st.session_state.get(state_key)
    if loaded and loaded["ident"] == ident:  # this upload was handled on an earlier run
        if loaded.get("error"):
            st.error(loaded["error"])
        return loaded.get("path")
    error = path = None
    workdir = Path(tempfile.mkdtemp(prefix="upload-", dir=serve.session_folder()))
    if upload.size > max_upload_bytes:
        error = f"{upload.name} is {upload.size / 2**20:.1f} MB; the limit is {max_upload_bytes // 2**20} MB."
    else:
        try:
            archive = workdir / "upload.bin"
            archive.write_bytes(upload.getvalue())
            with st.spinner(f"Unpacking and opening {upload.name} ..."):
                path = str(import_archive(archive, zoo_format=None if fmt == AUTO else fmt, name=upload.name,
                                          workdir=workdir, max_bytes=max_bytes, max_files=max_files))
        except ZooFormatError as e:
            error = f"Could not open {upload.name}: {_describe(e, workdir, upload.name)}"
        except Exception as e:  # an upload is untrusted input: report, never show a traceback
            _log.exception("opening upload %s failed", upload.name)
            error = f"Could not open {upload.name}: {type(e).__name__}: {e}"
    if error:
        error = serve.public_message(error.replace(str(workdir), upload.name), also=(ui.SAMPLE_DIR,))
        shutil.rmtree(workdir, ignore_errors=True)
        st.error(error)
    else:
        if loaded and loaded.get("workdir"):  # the previous upload is replaced only once this one opened
            shutil.rmtree(loaded["workdir"], ignore_errors=True)
        if select:
            ui.set_zoo(path)  # makes it current and clears the selection (row numbers belong to one zoo)
        st.success(f"Opened {upload.name}.")
    keep = loaded if error and loaded else {}
    st.session_state[state_key] = {"ident": ident, "path": path, "error": error,
                                   "workdir": str(workdir) if path else keep.get("workdir")}
    return path


def _describe(error: ZooFormatError, workdir: Path, name: str) -> str:
    """The error with temporary paths replaced by what the user knows: the archive's name, or the
    file's path inside the archive."""
    if error.path is None:
        return error.problem
    path = Path(error.path)
    if path == workdir / "upload.bin":
        return error.problem
    if path.is_relative_to(workdir / "unpacked"):
        return f"{path.relative_to(workdir / 'unpacked')}: {error.problem}"
    return str(error).replace(str(workdir / "upload.bin"), name)
