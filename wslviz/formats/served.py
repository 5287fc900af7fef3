"""Checkpoint files served as the rows of a zoo's weight matrix, read in place: no copy.

Opening a folder by reading its files into a matrix copies every byte once more, and on the files people hold (a
498 MB GPT-2-small per folder) that copy is most of the time of opening, ten times what reading them takes. Where
every file is a safetensors file holding the same float32 tensors at the same offsets (files one library wrote for
one architecture), file ``i``'s data region *is* row ``i`` of the matrix, in the files' tensor order:
:func:`stitch` maps each file (copy-on-write: writing to a row never reaches the file) into its own slot of one
reserved range of addresses, and returns the ``[n, P]`` float32 rows with the slot as row stride (a strided tensor;
each row is contiguous). The architecture is laid out in the files' order (``order`` in module specs,
:func:`wslviz.core.layout.in_order`). :func:`serve_files` checks the files, checks each row for NaN/Inf as the
readers do (reading every byte once, the pages handed back after each row), and returns what
:func:`wslviz.formats.groups.read_groups` would.

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

from wslviz.core.memory import drop
from wslviz.core.protocol import ArchitectureLike
from wslviz.formats.groups import Group, GroupedCheckpoints, finite

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
    """``(byte where the data starts, [(name, shape)] in byte order)`` of a safetensors file whose tensors are all
    float32 and fill its data region; None for any other file (or one that cannot be read)."""
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
    entries = sorted((v.get("data_offsets", [-1])[0], k, v) for k, v in header.items()
                     if k != "__metadata__" and isinstance(v, dict))
    end = 0
    for begin, _, v in entries:
        count = _count(v.get("shape"))
        if v.get("dtype") != "F32" or begin != end or count < 0 or v.get("data_offsets") != [begin, begin + 4 * count]:
            return None
        end = begin + 4 * count
    if not entries or 8 + n + end != size:
        return None
    return 8 + n, [(k, tuple(v["shape"])) for _, k, v in entries]


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
    float32 safetensors file with the same tensors at the same offsets, ``ordered`` (the tensor names in byte order
    -> the architecture laid out in that order, None when the names are not exactly its tensors) refuses, or no
    mapping; also for rows of at most :data:`SERVE_ABOVE` bytes and more than :data:`MAX_FILES` files. Rows with
    NaN/Inf are left out with the reason, as the readers do (``check_finite``)."""
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
    if rows is None:
        return None
    group = Group(0, tuple(sorted(tensors)), good, n_values, names[good[0]], arch.describe())
    served = {"files": [str(files[i]) for i in good], "start": start, "values": n_values}
    return GroupedCheckpoints(arch, rows, good, [group], 0, skipped, served=served)


def serve_again(served: dict, order: Sequence[int] | None = None) -> torch.Tensor | None:
    """The rows :func:`serve_files` described in ``served`` (its ``served`` entry), mapped again, in ``order``
    when given (positions into its files): a reopen or a reordering without a copy; None where they cannot be."""
    files = [Path(f) for f in served["files"]]
    if order is not None:
        files = [files[i] for i in order]
    return stitch(files, int(served["start"]), int(served["values"]))
