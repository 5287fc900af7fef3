"""Checkpoint files grouped by architecture signature, one group stacked into a zoo's weight matrix.

A folder may hold checkpoints of several architectures (a detector's three nets, a sweep over widths). Each
readable file's *signature* is its tensor names (wrapper prefixes ``module.``/``model.``/``_orig_mod.``
stripped) and shapes; files with equal signatures form a :class:`Group`. :func:`read_groups` reads every
file once, one state dict alive at a time, groups them, and stacks one group (the largest by default) into
``[n_files, P]`` in the layout order of its architecture.
Files that cannot be used (unreadable, refused, NaN/Inf, not matching a stated architecture) are returned
with the reason, never dropped silently; the rest still open.
"""

from __future__ import annotations

import inspect
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wslviz.core.layout import ArchitectureError
from wslviz.core.protocol import ArchitectureLike, infer_layout
from wslviz.core.stacks import strip_wrappers
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.native import mmap_safetensor
from wslviz.formats.safeio import Checkpoint

Signature = tuple[tuple[str, tuple[int, ...]], ...]
Loader = Callable[[Path], Checkpoint]
Progress = Callable[[int, int], None] | None


@dataclass
class Group:
    """Checkpoints sharing one signature: ``index`` (0 = largest), ``members`` (positions in the file list, in
    file order), ``n_params``, ``example`` (first file's name), ``architecture`` (its description)."""

    index: int
    signature: Signature
    members: list[int]
    n_params: int
    example: str
    architecture: str = ""

    def summary(self) -> dict[str, Any]:
        """``{"group", "files", "parameters", "example", "architecture"}`` for tables."""
        return {"group": self.index, "files": len(self.members), "parameters": self.n_params,
                "example": self.example, "architecture": self.architecture}


@dataclass
class GroupedCheckpoints:
    """What :func:`read_groups` returns: the chosen group's ``arch`` and ``weights`` ``[len(rows), P]``,
    ``rows`` (positions of its files), every ``group``, ``skipped`` (file name -> reason), ``notes``
    (phrase -> number of files it applies to)."""

    arch: ArchitectureLike
    weights: torch.Tensor
    rows: list[int]
    groups: list[Group]
    chosen: int
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    scalars: dict[int, dict[str, int | float | str]] = field(default_factory=dict)
    """Per file position, the numbers saved beside its state dict (``epoch``, ``best_prec1``, ...)."""
    served: dict[str, Any] | None = None
    """For rows read in place from the files (:mod:`wslviz.formats.served`): the files, in row order, and where
    their rows start; plain data, to map them again (a reopen, another row order)."""


def normalise(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with the wrapper prefixes every key shares stripped (:func:`wslviz.core.stacks.strip_wrappers`)."""
    return {new: tensors[old] for new, old in strip_wrappers(tensors).items()}


def signature(tensors: Mapping[str, torch.Tensor]) -> Signature:
    """Sorted ``(name, shape)`` pairs: equal for files of one architecture, whatever their key order."""
    return tuple(sorted((k, tuple(v.shape)) for k, v in tensors.items()))


def finite(tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor holds only finite values. A finite sum proves it (NaN and Inf
    propagate), at a fraction of the cost of testing every value; only a sum that is not finite (or overflowed in
    the tensor's own precision) is checked value by value."""
    return all(bool(torch.isfinite(t.sum()) or torch.isfinite(t).all())
               for t in tensors.values() if t.is_floating_point())


class RowFile:
    """A weight matrix written row by row into a safetensors file holding one float32 tensor ``weights``
    ``[n, P]`` (the native layout's ``weights.safetensors``), never mapped while it is written, so that the rows
    written do not stay in this process's memory; :meth:`finish` maps it (copy-on-write) once complete. The header
    is written first for ``capacity`` rows and rewritten, padded with spaces to the same length, for the rows there
    are in the end."""

    def __init__(self, path: Path, capacity: int, n_params: int):
        self.path, self.n_params, self.count = Path(path), n_params, 0
        self.length = len(self._header(capacity)) + 8 - len(self._header(capacity)) % 8
        self.file = open(self.path, "wb")  # noqa: SIM115 (closed by finish)
        self.file.write(struct.pack("<Q", self.length) + self._header(capacity).ljust(self.length))

    def _header(self, rows: int) -> bytes:
        entry = {"dtype": "F32", "shape": [rows, self.n_params], "data_offsets": [0, 4 * rows * self.n_params]}
        return json.dumps({"weights": entry}).encode()

    def __setitem__(self, row: int, values: torch.Tensor) -> None:
        if row != self.count:
            raise IndexError(f"rows are written in order: row {self.count} next, not {row}")
        self.file.write(memoryview(values.detach().to(torch.float32).contiguous().numpy()).cast("B"))
        self.count += 1

    def close(self) -> None:
        """Stop writing, the file left as it is, to be replaced or removed (what writing it raised, a full disk,
        no longer matters)."""
        with suppress(OSError):
            self.file.close()

    def finish(self) -> torch.Tensor:
        try:
            self.file.seek(8)
            self.file.write(self._header(self.count).ljust(self.length))
            self.file.truncate(8 + self.length + 4 * self.count * self.n_params)
            self.file.flush()
        finally:
            self.close()
        return mmap_safetensor(self.path)


@dataclass
class _Stack:
    """The rows of one signature, flattened by its architecture as each file is read (``keys``: the tensors
    the architecture was built from, all of them unless one stack of several was picked); in memory, or in a
    :class:`RowFile` at ``store``. Where the architecture's ``flatten`` takes ``out=``, a row is packed straight
    into the matrix, or into one buffer used again for every row of a store: no fresh row of memory per file
    (at 45 MB a row, touching new pages cost as much as reading the file)."""

    signature: Signature
    arch: ArchitectureLike
    keys: list[str]
    rows: torch.Tensor | RowFile
    buffer: torch.Tensor | None = None
    count: int = 0

    @classmethod
    def start(cls, sig: Signature, arch: ArchitectureLike, tensors: Mapping[str, torch.Tensor],
              capacity: int, store: Path | None = None) -> _Stack:
        keys = list(getattr(arch, "source_keys", None) or tensors)
        into = "out" in inspect.signature(arch.flatten).parameters
        if store is not None:
            buffer = torch.empty(arch.n_params, dtype=torch.float32) if into else None
            return cls(sig, arch, keys, RowFile(store, capacity, arch.n_params), buffer)
        rows = torch.empty(capacity, arch.n_params, dtype=torch.float32)
        return cls(sig, arch, keys, rows, rows if into else None)

    def add(self, tensors: Mapping[str, torch.Tensor]) -> None:
        state = {k: tensors[k] for k in self.keys}
        if self.buffer is None:
            self.rows[self.count] = self.arch.flatten(state, by_order=True)
        elif self.buffer is self.rows:
            self.arch.flatten(state, by_order=True, out=self.rows[self.count])
        else:
            self.rows[self.count] = self.arch.flatten(state, by_order=True, out=self.buffer)
        self.count += 1

    def weights(self) -> torch.Tensor:
        """The rows filled, without a copy when every row was (a skipped file leaves one unused row)."""
        if isinstance(self.rows, RowFile):
            return self.rows.finish()
        return self.rows if self.count == len(self.rows) else self.rows[:self.count].clone()


def read_groups(files: Sequence[Path], names: Sequence[str], loader: Loader, arch: ArchitectureLike | None = None,
                activation: str | None = None, input_shape: Sequence[int] | None = None,
                stack: int | str | None = None, group: int | None = None, check_finite: bool = True,
                progress: Progress = None, store: Path | None = None) -> GroupedCheckpoints:
    """Read ``files`` (shown as ``names``), group them by signature and stack one group.

    The architecture of the chosen group is ``arch`` when given (any kind; the largest group it fits is
    chosen) else inferred from its first file (:func:`wslviz.core.protocol.infer_layout`:
    a sequential stack, with ``activation``, ``input_shape``, ``stack``, else a weights-only layout).
    ``group`` picks a group by index (0 = most files). Raises :class:`ZooFormatError` when no file can be used.

    One checkpoint is alive at a time: the first signature seen (that fits ``arch``) is flattened into its row
    as each file is read, so a uniform folder is read once and holds its weight matrix and one checkpoint at
    most; when another group is chosen in the end (a mixed folder), that group's files are read a second time.
    With ``store`` (a file path), the weight matrix is written there (:class:`RowFile`) and memory-mapped: one
    checkpoint in memory whatever the number of files.
    """
    members: dict[Signature, list[int]] = {}
    described: dict[Signature, str] = {}
    examples: dict[Signature, dict[str, torch.Tensor]] = {}  # first checkpoint of each signature not stacked
    skipped: dict[str, str] = {}
    notes: dict[str, int] = {}
    scalars: dict[int, dict[str, int | float | str]] = {}
    first: _Stack | None = None
    try:
        every = 1 if len(files) <= 100 else 100
        for i, f in enumerate(files):
            tensors = _read(f, names[i], loader, check_finite, skipped, notes, scalars, i)
            if tensors is None:
                continue
            sig = signature(tensors)
            if sig not in members:
                found = _describe(tensors, arch, activation, input_shape, stack)
                described[sig] = found[1]
                if first is None and group is None and (arch is None or found[0] is not None):
                    try:
                        first = _start(sig, tensors, found, len(files), store)
                    except ZooFormatError as e:
                        raise ZooFormatError(f, e.problem) from None
                if first is None or first.signature != sig:
                    examples[sig] = tensors
            members.setdefault(sig, []).append(i)
            if first is not None and first.signature == sig:
                first.add(tensors)
            if progress is not None and (i + 1) % every == 0:
                progress(i + 1, len(files))
        if not members:
            shown = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
            raise ZooFormatError(files[0].parent if files else None,
                                 f"none of the {len(files)} checkpoint file(s) can be used ({shown})")
        order = sorted(members, key=lambda s: (-len(members[s]), members[s][0]))
        groups = [Group(j, sig, members[sig], _n_values(sig), names[members[sig][0]], described[sig])
                  for j, sig in enumerate(order)]
        chosen = _choose(groups, group, arch)
        if first is None or first.signature != chosen.signature:  # read the chosen group's files again
            example = examples[chosen.signature]
            if first is not None and isinstance(first.rows, RowFile):
                first.rows.close()  # its file is written again, for the chosen group
            try:
                first = _start(chosen.signature, example, _describe(example, arch, activation, input_shape, stack),
                               len(chosen.members), store)
            except ZooFormatError as e:
                raise ZooFormatError(files[chosen.members[0]], e.problem) from None
            first.add(example)
            for i in chosen.members[1:]:
                first.add(normalise(loader(files[i]).tensors))
        if arch is not None:
            for g in groups:
                if g is not chosen and g.architecture.startswith("does not fit"):
                    why = g.architecture.removeprefix("does not fit: ")
                    skipped.update({names[i]: f"does not fit the stated architecture ({why})" for i in g.members})
        if progress is not None:
            progress(len(files), len(files))
        return GroupedCheckpoints(first.arch, first.weights(), list(chosen.members), groups, chosen.index, skipped,
                                  notes, scalars)
    except BaseException:  # the store's file closed (to be removed by the caller) before saying what went wrong
        if first is not None and isinstance(first.rows, RowFile):
            first.rows.close()
        raise


def _n_values(sig: Signature) -> int:
    return sum(math.prod(shape) for _, shape in sig)


def _read(f: Path, name: str, loader: Loader, check_finite: bool, skipped: dict[str, str], notes: dict[str, int],
          scalars: dict[int, dict[str, int | float | str]], i: int) -> dict[str, torch.Tensor] | None:
    """One file's tensors (wrapper prefixes stripped), its notes and scalars recorded; None (and the reason in
    ``skipped``) for a file that cannot be used."""
    try:
        checkpoint = loader(f)
    except ZooFormatError as e:
        skipped[name] = e.problem
        return None
    tensors = normalise(checkpoint.tensors)
    if check_finite and not finite(tensors):
        skipped[name] = "contains NaN/Inf weights (open with check_finite=False to keep it)"
        return None
    for note in checkpoint.notes:
        notes[note] = notes.get(note, 0) + 1
    if checkpoint.scalars:
        scalars[i] = checkpoint.scalars
    return tensors


def _start(sig: Signature, tensors: Mapping[str, torch.Tensor], found: tuple[ArchitectureLike | None, str],
           capacity: int, store: Path | None) -> _Stack:
    """The stack of the group ``sig`` with the architecture :func:`_describe` ``found`` for it (raises
    :class:`ZooFormatError` saying why when there is none)."""
    architecture, described = found
    if architecture is None:
        raise ZooFormatError(None, f"cannot work out the architecture: {described.removeprefix('not inferred: ')}")
    try:
        return _Stack.start(sig, architecture, tensors, capacity, store)
    except (ArchitectureError, KeyError, TypeError, ValueError, OverflowError) as e:
        raise ZooFormatError(None, f"cannot work out the architecture: {e}") from None


def _describe(example: Mapping[str, torch.Tensor], stated: ArchitectureLike | None, activation: str | None,
              input_shape: Sequence[int] | None, stack: int | str | None) -> tuple[ArchitectureLike | None, str]:
    """A group's architecture and what it is: the stated one when it fits (else None and why not), else what its
    first file gives with the reader's options (:func:`wslviz.core.protocol.infer_layout`; else None and why)."""
    try:
        if stated is not None:
            stated.flatten(example, by_order=True)
            return stated, stated.describe()
        inferred = infer_layout(example, activation=activation, input_shape=input_shape, stack=stack)
        return inferred, inferred.describe()
    except (ArchitectureError, KeyError, TypeError, ValueError, OverflowError) as e:
        return None, f"does not fit: {e}" if stated is not None else f"not inferred: {e}"


def _choose(groups: list[Group], group: int | None, stated: ArchitectureLike | None) -> Group:
    if group is not None:
        if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < len(groups):
            raise ZooFormatError(None, f"group {group!r} does not exist; this folder has {len(groups)} "
                                       f"group(s) of checkpoints (0 to {len(groups) - 1})")
        return groups[group]
    if stated is None:
        return groups[0]
    fitting = [g for g in groups if not g.architecture.startswith("does not fit")]
    if not fitting:
        raise ZooFormatError(None, f"no checkpoint fits the stated architecture ({stated.describe()}): "
                                   f"{groups[0].architecture}")
    return fitting[0]
