"""Zoos packed as ``.zip`` / ``.tar.gz`` / ``.tgz`` / ``.tar`` archives (uploads, downloads).

``wv.load_zoo("zoo.zip")`` unpacks the archive with :func:`wslviz.formats.safeio.safe_unpack` (path checks,
size caps) into a private temporary folder and opens what is inside in any other layout
(``zoo_format=`` names it, else it is detected). :func:`import_archive` additionally converts a
foreign layout to the native one, so the result opens fast (memory-mapped) by path alone.
The archive itself is only read. Temporary folders are removed when the process exits.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from wslviz.formats import detect_format, read_zoo, save_zoo
from wslviz.formats._common import read_json
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.safeio import ARCHIVE_SUFFIXES, MAX_BYTES, MAX_FILES, safe_unpack, zoo_root

_TEMP_DIRS: list[Path] = []


def detect(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def private_dir(prefix: str = "wslviz-") -> Path:
    """A new folder only this user can read (``mkdtemp`` gives mode 0700), removed at exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _TEMP_DIRS.append(path)
    return path


def remove_private_dir(path: Path) -> None:
    """Remove a folder made by :func:`private_dir` (no-op for anything else)."""
    path = Path(path)
    if path in _TEMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)
        _TEMP_DIRS.remove(path)


@atexit.register
def _cleanup() -> None:
    for path in list(_TEMP_DIRS):
        remove_private_dir(path)


def unpack(path: Path, workdir: Path | None = None, name: str | None = None, max_bytes: int = MAX_BYTES,
           max_files: int = MAX_FILES) -> Path:
    """Unpack ``path`` safely into ``workdir/unpacked`` (a new private folder by default); returns the
    folder holding the zoo (the archive's single top-level folder when it has one)."""
    workdir = Path(workdir) if workdir is not None else private_dir()
    out = safe_unpack(path, workdir / "unpacked", max_bytes=max_bytes, max_files=max_files, name=name)
    return zoo_root(out)


def check_contained(root: Path) -> None:
    """Refuse a native zoo whose task data file lies outside the unpacked archive (an absolute or
    ``..`` path in ``zoo.json`` would make the server read its own files)."""
    info_path = root / "zoo.json"
    if not info_path.is_file():
        return
    info = read_json(info_path)
    task = info.get("task") if isinstance(info, dict) else None
    data = task.get("path") if isinstance(task, dict) else None
    if data is not None:
        target = (root / str(data)).resolve()
        if not target.is_relative_to(root.resolve()):
            raise ZooFormatError(info_path, f"refused: the task data {data!r} lies outside the archive")


def read(path: Path, zoo_format: str | None = None, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES,
         **options: Any):
    """Open the zoo inside an archive; ``zoo_format`` names its layout (default: detected)."""
    root = unpack(Path(path), max_bytes=max_bytes, max_files=max_files)
    fmt = zoo_format or detect_format(root)
    if fmt == "archive":
        raise ZooFormatError(path, "an archive inside an archive is not opened")
    check_contained(root)
    return read_zoo(root, format=fmt, **options)


def import_archive(path: str | Path, zoo_format: str | None = None, name: str | None = None,
                   workdir: str | Path | None = None, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES,
                   **options: Any) -> Path:
    """Unpack an archive, open the zoo in it (any layout) and return the path of a native zoo:
    the unpacked folder itself when it is native, else a native copy written next to it.

    ``name`` is the archive's original file name (uploads arrive under temporary names); ``workdir``
    (default: a new private temporary folder) receives ``unpacked/`` and ``native/``. Raises
    :class:`ZooFormatError` naming the problem; on failure what it wrote is removed.
    """
    path = Path(path)
    workdir = Path(workdir) if workdir is not None else private_dir()
    try:
        root = unpack(path, workdir, name=name, max_bytes=max_bytes, max_files=max_files)
        fmt = zoo_format or detect_format(root)
        if fmt == "archive":
            raise ZooFormatError(name or path, "an archive inside an archive is not opened")
        check_contained(root)
        zoo = read_zoo(root, format=fmt, **options)
        if fmt == "native":
            return root
        if name:
            zoo.name = Path(name).name.split(".")[0] or zoo.name
        return save_zoo(zoo, workdir / "native")
    except BaseException:
        for child in ("unpacked", "native"):
            shutil.rmtree(workdir / child, ignore_errors=True)
        raise
