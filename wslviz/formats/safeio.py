"""Safe reading of files we did not write: checkpoints and archives from strangers.

* :func:`safe_torch_load` always uses ``torch.load(..., weights_only=True)``: the restricted unpickler
  builds tensors, dicts, lists and numbers only, so a pickle that names a Python class (a pickled
  model, a preprocessed ``dataset.pt``) or a callable in ``__reduce__`` is refused *before* anything
  of it runs.
* :func:`read_checkpoint` reads ``.safetensors`` (preferred: no code at all) or torch files (``.pt``,
  ``.pth``, ``.bin``, ``.ckpt``, the zip format and the legacy pre-1.6 one, tensors saved on a GPU loaded to
  CPU) and finds the state dict in them as people save it: the mapping itself, or nested under
  ``state_dict`` / ``model_state_dict`` / ``model`` / ``net`` / ``params`` (Lightning ``.ckpt`` files keep it
  under ``state_dict`` beside hyper-parameters and loop state). Non-tensor entries and integer tensors
  (counters, index buffers) are left out and float16/bfloat16 tensors upcast to float32, each noted;
  :func:`load_state_dict` is its tensors alone.
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
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO

import torch

from wslviz.formats import inert, quantized
from wslviz.formats.errors import ZooFormatError

MAX_BYTES = 512 * 2**20
MAX_FILES = 20_000
CHUNK = 2**20
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
RESAVE_HINT = ("re-save it as safetensors (safetensors.torch.save_file) or as a plain state dict "
               "(torch.save(model.state_dict(), path))")
WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "params")
"""Keys under which training scripts store the state dict (tried in this order, up to three levels deep)."""
UPCAST = (torch.float16, torch.bfloat16)
LIGHTNING_HINT = ("for a Lightning .ckpt, torch.save(torch.load(path, weights_only=False)['state_dict'], new_path) "
                  "in a Python session you trust")


def safe_torch_load(path: str | Path, mmap: bool = False) -> object:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``), on CPU; with ``mmap``, a
    zip-format file's tensors are mapped from the file (copy-on-write) instead of read into memory.

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
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        message = str(e)
        if "Weights only load failed" in message or "WeightsUnpickler" in message:
            glob = re.search(r"GLOBAL ([\w.]+)", message)
            what = (f"it references the Python object {glob.group(1)}" if glob
                    else "it uses pickle features beyond tensors and plain containers")
            hint = f"{RESAVE_HINT}; {LIGHTNING_HINT}" if path.suffix == ".ckpt" else RESAVE_HINT
            raise ZooFormatError(path, f"refused: {what}, and wslviz never unpickles arbitrary objects because "
                                 f"unpickling can run code (a pickled class or a crafted file). If you trust the "
                                 f"file, {hint}") from None
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


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file's state dict: ``tensors`` (name -> floating tensor, float32 where it was half
    precision, in the file's order), ``notes`` (what was left out or converted, one phrase each) and ``scalars``
    (numbers and short strings saved beside the state dict, e.g. ``epoch``, ``best_prec1``: metadata)."""

    tensors: dict[str, torch.Tensor]
    notes: tuple[str, ...] = ()
    scalars: dict[str, int | float | str] = field(default_factory=dict)


def _holds_tensors(obj: object) -> bool:
    return isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values())


def _scalars(obj: Mapping) -> dict[str, int | float | str]:
    """The plain numbers (and short strings) among a mapping's values, by string key: metadata."""
    out: dict[str, int | float | str] = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            continue
        if isinstance(v, torch.Tensor) and v.numel() == 1 and not v.is_complex():
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, int | float | str) or (isinstance(v, str) and len(v) > 80):
            continue
        out[k] = v
    return out


def _state_dict_key(obj: Mapping) -> object | None:
    """Where a checkpoint mapping keeps its state dict: a :data:`WRAPPERS` key, else the one value that is itself
    a mapping holding tensors (``model_state``, beside ``optimizer_state``'s nested mappings), preferring a key that
    names the model when there are several; None when the mapping is the state dict (or none is found)."""
    key = next((k for k in WRAPPERS if isinstance(obj.get(k), Mapping)), None)
    if key is not None:
        return key
    candidates = [k for k, v in obj.items() if _holds_tensors(v)]
    if len(candidates) > 1:
        named = [k for k in candidates if "model" in str(k).lower() or "state" in str(k).lower()]
        candidates = [k for k in named if "optim" not in str(k).lower()] or candidates
    return candidates[0] if len(candidates) == 1 else None


def as_checkpoint(obj: object, path: str | Path) -> Checkpoint:
    """The state dict inside a loaded checkpoint (see the module docstring), or :class:`ZooFormatError`
    naming the problem: no mapping of names to tensors, or none of them floating point."""
    notes: list[str] = []
    scalars: dict[str, int | float | str] = {}
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        key = _state_dict_key(obj)
        if key is None or (_holds_tensors(obj) and not _holds_tensors(obj[key])):
            break
        scalars.update(_scalars(obj))
        others = sorted(str(k) for k in obj if k != key)
        notes.append(f"state dict read from {key!r}" + (f" (besides {', '.join(others[:6])}"
                                                         f"{' ...' if len(others) > 6 else ''})" if others else ""))
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ZooFormatError(path, f"expected a state dict (name -> tensor), found {type(obj).__name__}")
    obj, dequantized = quantized.dequantized(obj)
    if dequantized:
        notes.append(dequantized)
    if not obj:
        raise ZooFormatError(path, "the state dict is empty")
    if not _holds_tensors(obj):
        raise ZooFormatError(path, f"expected a state dict (name -> tensor), found a mapping of "
                             f"{', '.join(sorted({type(v).__name__ for v in obj.values()}))} "
                             f"(keys {', '.join(map(repr, list(obj)[:5]))}; none of {', '.join(WRAPPERS)})")
    out: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    integer: list[str] = []
    upcast: set[str] = set()
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            skipped.append(repr(key))
        elif key.endswith("num_batches_tracked"):
            continue
        elif not value.is_floating_point():
            integer.append(key)
        elif value.dtype in UPCAST:
            upcast.add(str(value.dtype).removeprefix("torch."))
            out[key] = value.float()
        else:
            out[key] = value
    if not out:
        raise ZooFormatError(path, "the state dict holds no floating-point tensors"
                             + (f" (integer tensors {', '.join(integer[:5])})" if integer else ""))
    if skipped:
        notes.append(f"non-tensor entries ignored ({', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''})")
    if integer:
        notes.append(f"integer tensors are not weights ({', '.join(integer[:5])}{' ...' if len(integer) > 5 else ''})")
    if upcast:
        notes.append(f"{'/'.join(sorted(upcast))} tensors upcast to float32")
    return Checkpoint(out, tuple(notes), scalars)


def as_state_dict(obj: object, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of :func:`as_checkpoint` (name -> floating tensor)."""
    return as_checkpoint(obj, path).tensors


TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
"""The first bytes of a legacy (pre-1.6, non-zip) ``torch.save`` file: pickle protocol 2 and torch's magic number."""


def sniff(path: str | Path) -> str | None:
    """What a file holds, from its first bytes rather than its name: ``"safetensors"`` (an 8-byte header length,
    then a JSON header), ``"torch"`` (a zip holding a ``data.pkl``, as ``torch.save`` writes since 1.6),
    ``"torch-legacy"`` (torch's magic number after a pickle header), or None."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if len(head) >= 9 and 0 < int.from_bytes(head[:8], "little") < size and head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                return "torch" if any(n.endswith("/data.pkl") or n == "data.pkl" for n in zf.namelist()) else None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError):  # a crafted or broken zip
            return None
    return None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The state dict of a safetensors file (read without any code) or a torch file (loaded with
    :func:`safe_torch_load`), with notes on what was left out; which of the two a file is comes from its content
    (:func:`sniff`), whatever its name (``final.1.0.3.v2``, ``resnet20-12fca82f.th``). Both kinds of file are
    memory-mapped where they allow it (safetensors, torch's zip format): the tensors are read from the page cache
    when they are used, without a copy in between."""
    path = Path(path)
    if not path.is_file():
        raise ZooFormatError(path, "no such file")
    content = sniff(path)
    if content == "safetensors" or (path.suffix == ".safetensors" and content is None):
        return as_checkpoint(_load_safetensors(path), path)
    try:
        obj, notes = safe_torch_load(path, mmap=content == "torch"), ()
    except ZooFormatError as refused:
        if not refused.problem.startswith("refused:"):
            raise
        obj, notes = _read_inert(path, refused)
    checkpoint = as_checkpoint(obj, path)
    return replace(checkpoint, notes=(*notes, *checkpoint.notes))


def _read_inert(path: Path, refused: ZooFormatError) -> tuple[object, tuple[str, ...]]:
    """A file ``weights_only`` refused (a pickled module or optimiser), read through inert stand-ins
    (:mod:`wslviz.formats.inert`: nothing from the file runs); ``refused`` again when that finds no tensors."""
    try:
        raw = inert.load_inert(path)
        obj = inert.as_plain(raw)
    except Exception:  # noqa: BLE001 - a crafted or broken file may raise anything: it stays refused
        raise refused from None
    found = inert.classes_in(raw)
    if not found:
        raise refused
    shown = ", ".join(sorted(found)[:4]) + (" ..." if len(found) > 4 else "")
    return obj, (f"tensors read from a pickled {shown} through inert stand-ins (no code from the file ran)",)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of :func:`read_checkpoint` (name -> floating tensor)."""
    return read_checkpoint(path).tensors


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


def _members(archive: Path, container: str) -> Iterator[tuple[PurePosixPath, bool, IO[bytes] | None]]:
    """Yield (relative path, is_dir, stream) per member of a ``"zip"`` or tar ``container``, refusing links, devices
    and bad paths."""
    if container == "zip":
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
