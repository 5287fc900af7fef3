"""Memory-mapped weight matrices read in passes without staying in memory.

A zoo opened from a row store or the native layout holds its weights as a memory-mapped file; every page a pass
reads stays mapped, and counted in the process's resident memory, until the OS needs it back: a feature pass over
eight GPT-2s would hold 4 GB. :func:`release` hands the pages under a block of rows back once it has been read
(Linux's ``MADV_PAGEOUT``: pages only read are dropped and read from the file again if asked for; pages written
since they were mapped are kept, so nothing is lost). Elsewhere, or for memory that is not a file's, it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys
from functools import cache

import numpy as np
import torch

PAGEOUT = 21
"""``MADV_PAGEOUT`` (Linux 5.4 and later)."""
DONTNEED = 4
"""``MADV_DONTNEED``: a private mapping's pages dropped from this process (written ones lost, the rest read again
from the file if asked for)."""


@cache
def _madvise():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc.madvise


def _span(block: torch.Tensor | np.ndarray) -> tuple[int, int] | None:
    """``(address, bytes)`` of a contiguous tensor or array; None for an empty or strided one."""
    if isinstance(block, torch.Tensor):
        if block.numel() == 0 or not block.is_contiguous():
            return None
        return block.data_ptr(), block.numel() * block.element_size()
    if block.size == 0 or not block.flags.c_contiguous:
        return None
    return block.ctypes.data, block.nbytes


def is_file_mapped(block: torch.Tensor | np.ndarray) -> bool:
    """Whether the memory of a tensor or array (its first element) belongs to a file mapping (``/proc/self/maps``;
    False off Linux)."""
    size = block.numel() if isinstance(block, torch.Tensor) else block.size
    if not sys.platform.startswith("linux") or size == 0:
        return False
    address = block.data_ptr() if isinstance(block, torch.Tensor) else block.ctypes.data
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            low, high = (int(v, 16) for v in fields[0].split("-"))
            if low <= address < high:
                return fields[4] != "0" and len(fields) > 5 and fields[5].strip().startswith("/")
    return False


def release(block: torch.Tensor | np.ndarray) -> None:
    """Hand back the whole pages under a contiguous tensor or array, or under each row of a matrix whose rows are
    contiguous (rows served from several files, :mod:`wslviz.formats.served`); see the module docstring."""
    if isinstance(block, torch.Tensor) and block.dim() == 2 and not block.is_contiguous() and block.stride(1) == 1:
        for row in block:
            release(row)
        return
    span = _span(block)
    if not sys.platform.startswith("linux") or span is None:
        return
    page = mmap.PAGESIZE
    start = -(-span[0] // page) * page
    end = (span[0] + span[1]) // page * page
    if end > start:
        _madvise()(start, end - start, PAGEOUT)  # a kernel without it refuses (EINVAL): nothing to do then


def drop(block: torch.Tensor) -> None:
    """Drop the pages under a contiguous tensor of a private file mapping that nothing has written to, together with
    the rest of their first and last page (``MADV_DONTNEED``): they leave this process's resident memory but stay
    in the page cache, unlike :func:`release`'s. Only for memory the caller knows unwritten (rows it mapped itself
    and only read)."""
    span = _span(block)
    if not sys.platform.startswith("linux") or span is None:
        return
    page = mmap.PAGESIZE
    start = span[0] // page * page
    end = -(-(span[0] + span[1]) // page) * page
    _madvise()(start, end - start, DONTNEED)
