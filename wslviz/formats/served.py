"""Checkpoint files served as the rows of a zoo's weight matrix, read in place: no copy.

Opening a folder by reading its files into a matrix copies every byte once more, and on the files people hold (a
498 MB GPT-2-small per folder) that copy is most of the time of opening, ten times what reading them takes. Where
every file is a safetensors file holding the same float32 tensors at the same offsets, one after the other (files
one library wrote for one architecture; int64 counters and other tensors may lie before or after them), file
``i``'s float32 bytes *are* row ``i`` of the matrix, in the files' tensor order:
:func:`stitch` maps each file (copy-on-write: writing to a row never reaches the file) into its own slot of one
reserved range of addresses, and returns the ``[n, P]`` float32 rows with the slot as row stride (a strided tensor;
each row is contiguous). The architecture is laid out in the files' order (:func:`laid_out`: ``order`` in module and
Hugging Face specs, :func:`wslviz.core.layout.in_order`), the one ``config.json`` builds or, in a folder of
checkpoint files, the one the first file gives (:func:`serve_inferred`). :func:`serve_files` checks the files,
checks each row for NaN/Inf as the readers do (reading every byte once, the pages handed back after each row), and
returns what :func:`wslviz.formats.groups.read_groups` would.

Linux only (``mmap`` at a fixed address through libc); elsewhere, or where a file cannot be mapped, :func:`stitch`
returns None and the files are read as before. As with any memory-mapped file, a file rewritten while it is served
shows its new bytes, and one truncated makes the lost rows unreadable (the process gets SIGBUS); the opened folder's
key (sizes and modification times, :mod:`wslviz.scale.opened`) notices the change at the next open.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import struct
import sys
import weakref
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import torch

from wslviz.core.layout import ArchitectureError
from wslviz.core.memory import drop
from wslviz.core.protocol import ArchitectureLike, from_spec, infer_layout
from wslviz.core.stacks import strip_wrappers
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.groups import Group, GroupedCheckpoints, finite, normalise
from wslviz.formats.safeio import read_checkpoint

PROT = mmap.PROT_READ | mmap.PROT_WRITE
PRIVATE, FIXED, ANONYMOUS, NORESERVE = 0x02, 0x10, 0x20, 0x4000
"""Linux's ``MAP_PRIVATE``, ``MAP_FIXED``, ``MAP_ANONYMOUS``, ``MAP_NORESERVE``."""
MAX_HEADER = 100 * 2**20
SERVE_ABOVE = 2**20
"""Bytes a row must exceed to be served in place: below, copying costs little and a contiguous matrix computes
faster than rows a page apart."""
MAX_FILES = 10_000
"""Files served at most: each mapping is one of the process's memory areas, of which Linux allows 65,530."""


@cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    return libc


def float_rows(path: Path) -> tuple[int, list[tuple[str, tuple[int, ...]]]] | None:
    """``(byte where the float32 tensors start, [(name, shape)] in byte order)`` of a safetensors file whose float32
    tensors lie one after the other; None for any other file (or one that cannot be read). Tensors of other types
    may come before or after them: ``safetensors`` writes tensors by type, the widest first, so the int64
    counters of BatchNorm layers (``num_batches_tracked``) or position ids precede the float32 weights."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 0 < n <= MAX_HEADER:
                return None
            header = json.loads(f.read(n))
        size = path.stat().st_size
    except (OSError, struct.error, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    entries = [v for k, v in header.items() if k != "__metadata__"]
    if not all(isinstance(v, dict) and _offsets(v.get("data_offsets")) for v in entries):
        return None
    floats = sorted((v["data_offsets"][0], k, v) for k, v in header.items()
                    if k != "__metadata__" and v.get("dtype") == "F32")
    if not floats:
        return None
    first = end = floats[0][0]
    for begin, _, v in floats:
        count = _count(v.get("shape"))
        if begin != end or count < 0 or v["data_offsets"][1] != begin + 4 * count:
            return None
        end = begin + 4 * count
    others = [v["data_offsets"] for v in entries if v.get("dtype") != "F32"]
    if any(b < end and e > first for b, e in others) or 8 + n + max(e for _, e in [*others, (0, end)]) > size:
        return None
    return 8 + n + first, [(k, tuple(v["shape"])) for _, k, v in floats]


def _offsets(offsets: object) -> bool:
    """Whether ``offsets`` is a ``[begin, end]`` pair of byte positions."""
    return (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool)
                                                                    for o in offsets) and 0 <= offsets[0] <= offsets[1])


def _count(shape: object) -> int:
    """The number of values of a shape list, -1 for anything that is not a list of sizes."""
    if not isinstance(shape, list):
        return -1
    out = 1
    for s in shape:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            return -1
        out *= s
    return out


def stitch(files: Sequence[Path], start: int, n_values: int) -> torch.Tensor | None:
    """``[len(files), n_values]`` float32: row ``i`` is the ``n_values`` floats at byte ``start`` of ``files[i]``,
    mapped in place (copy-on-write), none of it read yet; None off Linux, on a big-endian machine, or when a file
    cannot be mapped."""
    if not sys.platform.startswith("linux") or sys.byteorder != "little" or not files or start % 4:
        return None
    page = mmap.PAGESIZE
    slot = -(-(start + 4 * n_values) // page) * page
    total = slot * len(files)
    libc = _libc()
    failed = ctypes.c_void_p(-1).value
    base = libc.mmap(None, total, PROT, PRIVATE | ANONYMOUS | NORESERVE, -1, 0)
    if base in (None, failed):
        return None
    for i, f in enumerate(files):
        try:
            fd = os.open(f, os.O_RDONLY)
        except OSError:
            libc.munmap(base, total)
            return None
        try:
            at = libc.mmap(base + i * slot, start + 4 * n_values, PROT, PRIVATE | FIXED, fd, 0)
        finally:
            os.close(fd)
        if at != base + i * slot:
            libc.munmap(base, total)
            return None
    region = (ctypes.c_char * total).from_address(base)
    # unmapped once no tensor holds the rows; left to the OS at exit, where a tensor may outlive the finalizer
    weakref.finalize(region, libc.munmap, base, total).atexit = False
    flat = torch.frombuffer(region, dtype=torch.float32)
    return flat.as_strided((len(files), n_values), (slot // 4, 1), start // 4)


def serve_files(files: Sequence[Path], names: Sequence[str], ordered: Callable[[list[str]], ArchitectureLike | None],
                check_finite: bool = True, progress: Callable[[int, int], None] | None = None,
                ) -> GroupedCheckpoints | None:
    """The files as rows read in place (see the module docstring), or None where they cannot be: not every file a
    safetensors file with the same float32 tensors at the same offsets (:func:`float_rows`), ``ordered`` (the
    float32 tensors' names in byte order -> the architecture laid out in that order, None when the names are not
    exactly its tensors: :func:`laid_out`) refuses, or no mapping; also for rows of at most :data:`SERVE_ABOVE`
    bytes and more than :data:`MAX_FILES` files. Rows with NaN/Inf are left out with the reason, as the readers do
    (``check_finite``)."""
    first = float_rows(files[0]) if 0 < len(files) <= MAX_FILES else None
    if first is None:
        return None
    start, tensors = first
    n_values = sum(_count(list(shape)) for _, shape in tensors)
    if 4 * n_values <= SERVE_ABOVE or any(float_rows(f) != first for f in files[1:]):
        return None
    arch = ordered([name for name, _ in tensors])
    if arch is None or arch.n_params != n_values:
        return None
    rows = stitch(files, start, n_values)
    if rows is None:
        return None
    good, skipped = list(range(len(files))), {}
    if check_finite:
        good = []
        for i, row in enumerate(rows):
            if finite({"row": row}):
                good.append(i)
            else:
                skipped[names[i]] = "contains NaN/Inf weights (open with check_finite=False to keep it)"
            drop(row)  # only read, in a mapping made here: its pages leave this process, not the page cache
            if progress is not None:
                progress(i + 1, len(files))
        if not good:
            return None
        if len(good) < len(files):
            rows = stitch([files[i] for i in good], start, n_values)
    elif progress is not None:
        progress(len(files), len(files))
    if rows is None:
        return None
    group = Group(0, tuple(sorted(tensors)), good, n_values, names[good[0]], arch.describe())
    served = {"files": [str(files[i]) for i in good], "start": start, "values": n_values}
    return GroupedCheckpoints(arch, rows, good, [group], 0, skipped, served=served)


def laid_out(arch: ArchitectureLike, names: Sequence[str]) -> ArchitectureLike | None:
    """``arch`` with its tensors laid out in the order of ``names`` (each of its layout names once): itself when
    that is its order, else the same spec with that ``order`` where its kind takes one (module and Hugging Face
    architectures); None otherwise, or when ``names`` are not exactly its tensors."""
    names = list(names)
    if [p.name for p in arch.layout] == names:
        return arch
    try:
        ordered = from_spec({**arch.spec, "order": names})
    except ArchitectureError:
        return None
    return ordered if [p.name for p in ordered.layout] == names else None


def serve_inferred(files: Sequence[Path], names: Sequence[str], arch: ArchitectureLike | None = None,
                   activation: str | None = None, input_shape: Sequence[int] | None = None, check_finite: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> GroupedCheckpoints | None:
    """Safetensors ``files`` served in place (:func:`serve_files`) as a folder of checkpoints is read: ``arch``,
    else the architecture the first file gives (:func:`wslviz.core.protocol.infer_layout` of its tensors, wrapper
    prefixes stripped, as :func:`wslviz.formats.groups.read_groups` infers it), laid out in the files' order
    (:func:`laid_out`: a recognised family's module or a weights-only layout; a sequential stack keeps its own
    order, and its files are read). None where the files do not allow it."""

    def ordered(keys: list[str]) -> ArchitectureLike | None:
        try:
            tensors = read_checkpoint(files[0]).tensors
            chosen = arch or infer_layout(normalise(tensors), activation=activation, input_shape=input_shape)
        except (ZooFormatError, ArchitectureError, KeyError, TypeError, ValueError, OverflowError):
            return None  # the files are read, and the reader says what is wrong
        renamed = {old: new for new, old in strip_wrappers(tensors).items()}
        return laid_out(chosen, [renamed[k] for k in keys])

    return serve_files(files, names, ordered, check_finite, progress)


def serve_again(served: dict, order: Sequence[int] | None = None) -> torch.Tensor | None:
    """The rows :func:`serve_files` described in ``served`` (its ``served`` entry), mapped again, in ``order``
    when given (positions into its files): a reopen or a reordering without a copy; None where they cannot be."""
    files = [Path(f) for f in served["files"]]
    if order is not None:
        files = [files[i] for i in order]
    return stitch(files, int(served["start"]), int(served["values"]))
