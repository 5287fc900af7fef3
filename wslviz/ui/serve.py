"""Serve mode: the rules the app follows when ``wslviz serve`` shares it with a class.

``wslviz serve --zoo-root DIR [--zoo-root DIR2 ...]`` starts Streamlit with the environment variables
:data:`ROOTS_ENV` (the roots, joined by ``os.pathsep``) and :data:`UPLOAD_ENV` (the upload cap in MB);
:func:`serve_rules` reads them back in the Streamlit process. Without them the app runs in local mode
(one user on their own machine, who may open any folder) and every rule here is a no-op.

In serve mode:

- a zoo path typed in the browser (or given in the URL) is honoured only inside the roots, the bundled
  sample zoos and this session's own uploads (:func:`check_zoo_path`): ``..`` is refused outright, the
  path is resolved with symlinks followed, and a zoo folder holding a link that points out of the roots
  is refused; a relative path is looked up under each root;
- uploads are capped (:func:`upload_limits`) and unpacked under a temporary folder of their own session
  (:func:`session_folder`), deleted when the session ends;
- code factories (module architectures built from a ``.py`` file) are never honoured from the browser:
  code that would import one must ask :func:`allow_code` first (or call :func:`require_code_allowed`);
- messages shown to the browser name no path outside the roots (:func:`public_message`).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

ROOTS_ENV = "WSLVIZ_SERVE_ROOTS"
"""Set by ``wslviz serve``: the zoo roots, joined by ``os.pathsep``; its presence switches serve mode on."""
UPLOAD_ENV = "WSLVIZ_SERVE_MAX_UPLOAD_MB"
"""Set by ``wslviz serve``: the largest archive a browser may upload, in MB."""
DEFAULT_UPLOAD_MB = 100
UNPACK_FACTOR = 8
"""An upload may unpack to at most this many times the upload cap (bounded by the library's own cap)."""
HIDDEN = "<hidden path>"
SESSION_FOLDER_KEY = "_wslviz_session_folder"
_SESSION_FOLDERS: set[Path] = set()


class PathRefused(ValueError):
    """A path the server does not share; the message names only what the user typed and the roots."""


class CodeRefused(PermissionError):
    """Code from a file was asked for in serve mode."""


@dataclass(frozen=True)
class ServeRules:
    """Serve mode's settings: the shared zoo roots (resolved) and the upload cap."""

    roots: tuple[Path, ...]
    max_upload_mb: int = DEFAULT_UPLOAD_MB

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 2**20

    def environment(self) -> dict[str, str]:
        """The environment variables that carry these rules to the Streamlit process."""
        return {ROOTS_ENV: os.pathsep.join(map(str, self.roots)), UPLOAD_ENV: str(self.max_upload_mb)}


def serve_rules() -> ServeRules | None:
    """The rules of serve mode read from the environment, or None in local mode."""
    text = os.environ.get(ROOTS_ENV)
    if text is None:
        return None
    roots = tuple(Path(p).resolve() for p in text.split(os.pathsep) if p)
    try:
        cap = int(os.environ.get(UPLOAD_ENV, DEFAULT_UPLOAD_MB))
    except ValueError:
        cap = DEFAULT_UPLOAD_MB
    return ServeRules(roots, max(1, cap))


def serving() -> bool:
    """Whether the app runs in serve mode."""
    return serve_rules() is not None


def allow_code() -> bool:
    """Whether code from a ``.py`` file named in the browser (a module-architecture factory) may be
    imported: never in serve mode. Every code path that would import such a file must ask this first."""
    return not serving()


def require_code_allowed(what: str = "a code factory") -> None:
    """Raise :class:`CodeRefused` in serve mode (see :func:`allow_code`)."""
    if not allow_code():
        raise CodeRefused(f"{what} cannot be loaded from the browser on a shared server; run `wslviz app` "
                          "on your own machine to use one")


def _remove_folder(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _SESSION_FOLDERS.discard(path)


@dataclass
class _Folders:
    """The temporary folders made for one browser session (released with it)."""

    paths: list[Path] = field(default_factory=list)


def _release(folders: _Folders) -> None:
    for path in folders.paths:
        _remove_folder(path)


@st.cache_resource(scope="session", on_release=_release, show_spinner=False)
def _session_folders() -> _Folders:
    return _Folders()


def session_folder() -> Path:
    """This browser session's private temporary folder (mode 0700) for uploads, made on first use.

    Its path is kept in the session's state (so another session never gets it: :func:`check_zoo_path`
    refuses it there), and it is registered in a session-scoped resource that Streamlit releases when the
    session disconnects, which deletes the folder; any left at exit are deleted then."""
    known = st.session_state.get(SESSION_FOLDER_KEY)
    if known is not None and Path(known).is_dir():
        return Path(known)
    path = Path(tempfile.mkdtemp(prefix="wslviz-session-"))
    _SESSION_FOLDERS.add(path)
    _session_folders().paths.append(path)
    st.session_state[SESSION_FOLDER_KEY] = str(path)
    return path


@atexit.register
def _remove_all() -> None:
    for path in list(_SESSION_FOLDERS):
        _remove_folder(path)


def _this_session_folder() -> Path | None:
    """This session's upload folder if it has one (None outside a script run, e.g. in worker threads)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    known = st.session_state.get(SESSION_FOLDER_KEY)
    return Path(known) if known is not None else None


def upload_limits(default_upload: int, default_unpacked: int) -> tuple[int, int]:
    """``(max upload bytes, max unpacked bytes)``: the defaults in local mode, the serve cap (and
    :data:`UNPACK_FACTOR` times it, at most ``default_unpacked``) in serve mode."""
    rules = serve_rules()
    if rules is None:
        return default_upload, default_unpacked
    return rules.max_upload_bytes, min(default_unpacked, UNPACK_FACTOR * rules.max_upload_bytes)


def _inside(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(f) for f in folders)


def _link_out(folder: Path, allowed: tuple[Path, ...]) -> bool:
    """Whether anything under ``folder`` is a symlink whose target lies outside ``allowed``."""
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            entry = Path(top) / name
            if entry.is_symlink() and not _inside(entry.resolve(), allowed):
                return True
    return False


_LINK_CHECKS: dict[tuple[str, float], bool] = {}


def _has_link_out(folder: Path, allowed: tuple[Path, ...]) -> bool:
    """:func:`_link_out`, remembered per folder and modification time (pages re-open the zoo every run)."""
    key = (str(folder), folder.stat().st_mtime)
    if key not in _LINK_CHECKS:
        if len(_LINK_CHECKS) > 1024:
            _LINK_CHECKS.clear()
        _LINK_CHECKS[key] = _link_out(folder, allowed)
    return _LINK_CHECKS[key]


def allowed_folders(also: tuple[Path, ...] = ()) -> tuple[Path, ...]:
    """The folders a browser session may open zoos from: the roots, ``also`` (the bundled zoos) and this
    session's upload folder. Empty in local mode (everything is allowed)."""
    rules = serve_rules()
    if rules is None:
        return ()
    own = _this_session_folder()
    return rules.roots + tuple(Path(p).resolve() for p in also) + ((own.resolve(),) if own else ())


def check_zoo_path(path: str | Path, also: tuple[Path, ...] = ()) -> Path:
    """The path of a zoo the browser asked for, checked against the serve rules (unchanged, with ``~``
    expanded, in local mode). In serve mode returns the resolved path, or raises :class:`PathRefused`
    when it contains ``..``, lies outside :func:`allowed_folders` (symlinks followed) or is a folder
    holding a link that points outside them. The message says the same whether or not the path exists."""
    rules = serve_rules()
    if rules is None:
        return Path(path).expanduser()
    text = str(path)
    shared = ", ".join(map(str, rules.roots))
    if ".." in Path(text).parts:
        raise PathRefused(f"{text!r}: '..' is not allowed in zoo paths on this server (shared: {shared})")
    allowed = allowed_folders(also)
    candidate = Path(text)
    if not candidate.is_absolute():  # a name under one of the roots
        under = [root / candidate for root in rules.roots]
        candidate = next((p for p in under if p.exists()), under[0])
    resolved = candidate.resolve()
    if not _inside(resolved, allowed):
        raise PathRefused(f"{text!r} is not inside the folders this server shares ({shared})")
    if resolved.is_dir() and _has_link_out(resolved, allowed):
        raise PathRefused(f"{text!r} holds a link that points outside the folders this server shares ({shared})")
    return resolved


_PATH = re.compile(r"(?<![\w.~])/[^\s'\"`,;:()\[\]{}<>]+")


def public_message(text: str, also: tuple[Path, ...] = ()) -> str:
    """``text`` with every absolute path outside :func:`allowed_folders` replaced by :data:`HIDDEN` (serve
    mode; unchanged in local mode). This session's own upload folder is shown as ``<upload>``."""
    if not serving():
        return text
    own = _this_session_folder()
    if own is not None:
        text = text.replace(str(own), "<upload>")
    allowed = tuple(f for f in allowed_folders(also) if own is None or f != own.resolve())

    def hide(match: re.Match[str]) -> str:
        return match.group(0) if _inside(Path(match.group(0)).resolve(), allowed) else HIDDEN

    return _PATH.sub(hide, text)
