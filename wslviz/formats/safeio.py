"""Safe reading of files we did not write: checkpoints and archives from strangers.

* :func:`safe_torch_load` always uses ``torch.load(..., weights_only=True)``: the restricted unpickler
  builds tensors, dicts, lists and numbers only, so a pickle that names a Python class (a pickled
  model, a preprocessed ``dataset.pt``) or a callable in ``__reduce__`` is refused *before* anything
  of it runs.
* :func:`load_state_dict` reads ``.safetensors`` (preferred: no code at all) or torch files and checks
  that what comes back is a mapping of names to floating-point tensors.
* :func:`safe_unpack` extracts a ``.zip`` / ``.tar.gz`` with path checks (no ``..``, no absolute
  paths, no links or devices) and caps on total uncompressed bytes and file count that are enforced
  while extracting (so a zip bomb stops at the cap whatever its headers claim). The archive is only
  read, never modified.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import IO

import torch

from wslviz.formats.errors import ZooFormatError

MAX_BYTES = 512 * 2**20
MAX_FILES = 20_000
CHUNK = 2**20
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
RESAVE_HINT = ("re-save it as safetensors (safetensors.torch.save_file) or as a plain state dict "
               "(torch.save(model.state_dict(), path))")
# wrapper keys under which training scripts commonly store the state dict
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "params")


def safe_torch_load(path: str | Path) -> object:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``), on CPU.

    Raises :class:`ZooFormatError` naming the file: for pickled custom classes or callables it says
    that they are refused because unpickling them could run code, and how to re-save the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooFormatError(path, "no such file")
    if path.stat().st_size == 0:
        raise ZooFormatError(path, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing them
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        message = str(e)
        if "Weights only load failed" in message or "WeightsUnpickler" in message:
            glob = re.search(r"GLOBAL ([\w.]+)", message)
            what = (f"it references the Python object {glob.group(1)}" if glob
                    else "it uses pickle features beyond tensors and plain containers")
            raise ZooFormatError(path, f"refused: {what}, and wslviz never unpickles arbitrary objects because "
                                 f"unpickling can run code (a pickled class or a crafted file). If you trust the "
                                 f"file, {RESAVE_HINT}") from None
        first = message.strip().splitlines()[0] if message.strip() else type(e).__name__
        raise ZooFormatError(path, f"not a readable PyTorch file ({first[:200]})") from None


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if path.stat().st_size < 8:
        raise ZooFormatError(path, "file too short for safetensors")
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorError and friends for truncated or corrupt files
        raise ZooFormatError(path, f"not a readable safetensors file ({str(e)[:200]})") from None


def as_state_dict(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """Check that ``obj`` is a state dict (str -> floating tensor), unwrapping one common wrapper
    (``{"state_dict": {...}}`` and the like). Raises :class:`ZooFormatError` naming the problem."""
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ZooFormatError(path, f"expected a state dict (name -> tensor), found {type(obj).__name__}")
    if not obj:
        raise ZooFormatError(path, "the state dict is empty")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ZooFormatError(path, f"state dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise ZooFormatError(path, f"{key!r} is a {type(value).__name__}, not a tensor")
        if key.endswith("num_batches_tracked"):
            continue
        if not value.is_floating_point():
            raise ZooFormatError(path, f"{key!r} has dtype {value.dtype}; weights must be floating point")
        out[key] = value
    return out


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` (read without any code) or a torch file (``.pt``, ``.pth``,
    ``.bin``, or no suffix), loaded with :func:`safe_torch_load`."""
    path = Path(path)
    if not path.is_file():
        raise ZooFormatError(path, "no such file")
    if path.suffix == ".safetensors":
        return as_state_dict(_load_safetensors(path), path)
    return as_state_dict(safe_torch_load(path), path)


# ------------------------------------------------------------------------------------------- archives
def archive_kind(name: str) -> str:
    """``"zip"`` or ``"tar"`` from a file name; raises :class:`ZooFormatError` for anything else."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    raise ZooFormatError(name, f"not an archive wslviz unpacks (use one of {', '.join(ARCHIVE_SUFFIXES)})")


def _check_member(archive: Path, name: str) -> PurePosixPath:
    """The member's relative path, or an error if it is absolute, climbs out with ``..`` or is odd."""
    if "\x00" in name or "\\" in name:
        raise ZooFormatError(archive, f"refused: member {name!r} has a NUL or backslash in its path")
    p = PurePosixPath(name)
    if p.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise ZooFormatError(archive, f"refused: member {name!r} has an absolute path")
    if ".." in p.parts:
        raise ZooFormatError(archive, f"refused: member {name!r} points outside the archive ('..')")
    parts = [q for q in p.parts if q not in ("", ".")]
    if not parts:
        raise ZooFormatError(archive, f"refused: member {name!r} has an empty path")
    return PurePosixPath(*parts)


def _members(archive: Path, kind: str) -> Iterator[tuple[PurePosixPath, bool, IO[bytes] | None]]:
    """Yield (relative path, is_dir, stream) per member, refusing links, devices and bad paths."""
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                rel = _check_member(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise ZooFormatError(archive, f"refused: member {info.filename!r} is a symbolic link")
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: no type recorded
                    raise ZooFormatError(archive, f"refused: member {info.filename!r} is not a regular file")
                if info.is_dir():
                    yield rel, True, None
                else:
                    with zf.open(info) as stream:
                        yield rel, False, stream
    else:
        with tarfile.open(archive, mode="r:*") as tf:
            for member in tf:
                rel = _check_member(archive, member.name)
                if member.issym() or member.islnk():
                    raise ZooFormatError(archive, f"refused: member {member.name!r} is a link")
                if member.isdir():
                    yield rel, True, None
                elif member.isfile():
                    stream = tf.extractfile(member)
                    if stream is None:
                        raise ZooFormatError(archive, f"refused: member {member.name!r} cannot be read")
                    yield rel, False, stream
                else:
                    raise ZooFormatError(archive, f"refused: member {member.name!r} is a device, FIFO or "
                                         "other special file")


def safe_unpack(archive: str | Path, dest: str | Path, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES,
                name: str | None = None) -> Path:
    """Extract a ``.zip`` / ``.tar.gz`` / ``.tgz`` / ``.tar`` into the empty (or new) folder ``dest``.

    Every member is checked before it is written: relative path without ``..``, regular file or
    folder only (symlinks, hard links, devices refused). ``max_bytes`` caps the total *uncompressed*
    bytes and ``max_files`` the number of files; both are counted while data is written, whatever
    the headers claim. Files are created exclusively, so nothing is overwritten. ``name`` (default:
    the archive's file name) decides zip vs tar. On any refusal, what was extracted is removed and
    :class:`ZooFormatError` names the archive and the problem. Returns ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(name or archive.name)
    if not archive.is_file():
        raise ZooFormatError(archive, "no such file")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ZooFormatError(dest, "the destination folder is not empty")
    root = dest.resolve()
    total = files = 0
    try:
        for rel, is_dir, stream in _members(archive, kind):
            target = root.joinpath(*rel.parts)
            # belt and braces: the resolved target must stay inside dest (no links exist in dest)
            if root != target.resolve() and root not in target.resolve().parents:
                raise ZooFormatError(archive, f"refused: member {str(rel)!r} resolves outside the destination")
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            files += 1
            if files > max_files:
                raise ZooFormatError(archive, f"refused: more than {max_files} files")
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:
                while chunk := stream.read(CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise ZooFormatError(archive, f"refused: more than {max_bytes:,} bytes uncompressed "
                                             "(the size cap)")
                    out.write(chunk)
    except ZooFormatError:
        _empty(dest)
        raise
    except FileExistsError as e:
        _empty(dest)
        raise ZooFormatError(archive, f"refused: member {Path(e.filename).relative_to(root)} appears twice") from None
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, ValueError, RuntimeError,
            NotImplementedError) as e:  # corrupt headers or compressed streams, unsupported compression
        _empty(dest)
        raise ZooFormatError(archive, f"not a readable {kind} archive ({str(e)[:200]})") from None
    return dest


def _empty(folder: Path) -> None:
    """Remove everything inside ``folder`` (which we created or found empty)."""
    for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
        for f in filenames:
            os.unlink(os.path.join(dirpath, f))
        for d in dirnames:
            os.rmdir(os.path.join(dirpath, d))


def zoo_root(folder: str | Path) -> Path:
    """The folder an unpacked archive's zoo lives in: ``folder`` itself, or its only sub-folder when
    the archive wrapped everything in one top-level directory (ignoring ``__MACOSX`` and dot files)."""
    folder = Path(folder)
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
