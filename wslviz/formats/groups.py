"""Checkpoint files grouped by architecture signature, one group stacked into a zoo's weight matrix.

A folder may hold checkpoints of several architectures (a detector's three nets, a sweep over widths). Each
readable file's *signature* is its tensor names (wrapper prefixes ``module.``/``model.``/``_orig_mod.``
stripped) and shapes; files with equal signatures form a :class:`Group`. :func:`read_groups` reads every
file once (one state dict alive at a time, kept as a flat float32 vector in name order), groups them, and
stacks one group (the largest by default) into ``[n_files, P]`` in the layout order of its architecture.
Files that cannot be used (unreadable, refused, NaN/Inf, not matching a stated architecture) are returned
with the reason, never dropped silently; the rest still open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wslviz.core.layout import ArchitectureError
from wslviz.core.protocol import ArchitectureLike, infer_layout
from wslviz.core.stacks import strip_wrappers
from wslviz.formats.errors import ZooFormatError
from wslviz.formats.safeio import Checkpoint

Signature = tuple[tuple[str, tuple[int, ...]], ...]
Loader = Callable[[Path], Checkpoint]
Progress = Callable[[int, int], None] | None
INDEX_BASE = 4096
"""Tensor positions are carried through ``flatten`` as three float32 digits of this base (each exact)."""


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


def normalise(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with the wrapper prefixes every key shares stripped (:func:`wslviz.core.stacks.strip_wrappers`)."""
    return {new: tensors[old] for new, old in strip_wrappers(tensors).items()}


def signature(tensors: Mapping[str, torch.Tensor]) -> Signature:
    """Sorted ``(name, shape)`` pairs: equal for files of one architecture, whatever their key order."""
    return tuple(sorted((k, tuple(v.shape)) for k, v in tensors.items()))


def _flat(tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The tensors in name order as one float32 vector (the signature's order)."""
    return torch.cat([tensors[k].detach().reshape(-1).to(torch.float32) for k in sorted(tensors)])


def _gather_index(arch: ArchitectureLike, example: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``idx`` [P] with ``layout_vector = name_order_vector[idx]``: every tensor of ``example`` (those of
    ``arch.source_keys`` when it was built from some of them: one stack of several) replaced by the positions
    of its entries (three float32 digits, so positions stay exact) and flattened by ``arch``."""
    offsets, start = {}, 0
    for k in sorted(example):
        offsets[k] = start
        start += example[k].numel()
    if start >= INDEX_BASE ** 3:
        raise ArchitectureError(f"{start:,} parameters per model are more than this reader maps")
    keys = getattr(arch, "source_keys", None) or list(example)
    digits = []
    for scale in (INDEX_BASE ** 2, INDEX_BASE, 1):
        probe = {k: (torch.arange(offsets[k], offsets[k] + example[k].numel()).reshape(example[k].shape)
                     // scale % INDEX_BASE).float() for k in keys}
        digits.append(arch.flatten(probe, by_order=True).long())
    return digits[0] * INDEX_BASE ** 2 + digits[1] * INDEX_BASE + digits[2]


def read_groups(files: Sequence[Path], names: Sequence[str], loader: Loader, arch: ArchitectureLike | None = None,
                activation: str | None = None, input_shape: Sequence[int] | None = None,
                stack: int | str | None = None, group: int | None = None, check_finite: bool = True,
                progress: Progress = None) -> GroupedCheckpoints:
    """Read ``files`` (shown as ``names``), group them by signature and stack one group.

    The architecture of the chosen group is ``arch`` when given (any kind; the largest group it fits is
    chosen) else inferred from its first file (:func:`wslviz.core.protocol.infer_layout`:
    a sequential stack, with ``activation``, ``input_shape``, ``stack``, else a weights-only layout).
    ``group`` picks a group by index (0 = most files). Raises :class:`ZooFormatError` when no file can be used.
    """
    vectors: dict[int, torch.Tensor] = {}
    examples: dict[Signature, dict[str, torch.Tensor]] = {}
    members: dict[Signature, list[int]] = {}
    skipped: dict[str, str] = {}
    notes: dict[str, int] = {}
    scalars: dict[int, dict[str, int | float | str]] = {}
    for i, f in enumerate(files):
        try:
            checkpoint = loader(f)
        except ZooFormatError as e:
            skipped[names[i]] = e.problem
            continue
        tensors = normalise(checkpoint.tensors)
        flat = _flat(tensors)
        if check_finite and not torch.isfinite(flat).all():
            skipped[names[i]] = "contains NaN/Inf weights (open with check_finite=False to keep it)"
            continue
        for note in checkpoint.notes:
            notes[note] = notes.get(note, 0) + 1
        if checkpoint.scalars:
            scalars[i] = checkpoint.scalars
        sig = signature(tensors)
        members.setdefault(sig, []).append(i)
        examples.setdefault(sig, tensors)
        vectors[i] = flat
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1, len(files))
    if not members:
        shown = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
        raise ZooFormatError(files[0].parent if files else None,
                             f"none of the {len(files)} checkpoint file(s) can be used ({shown})")
    order = sorted(members, key=lambda s: (-len(members[s]), members[s][0]))
    groups = [Group(j, sig, members[sig], sum(t.numel() for t in examples[sig].values()), names[members[sig][0]])
              for j, sig in enumerate(order)]
    stated = arch
    for g in groups:
        g.architecture = _describe(examples[g.signature], stated)
    chosen = _choose(groups, group, stated)
    example = examples[chosen.signature]
    try:
        architecture = stated or infer_layout(example, activation=activation, input_shape=input_shape, stack=stack)
        index = _gather_index(architecture, example)
    except (ArchitectureError, KeyError, TypeError, ValueError, OverflowError) as e:
        raise ZooFormatError(files[chosen.members[0]], f"cannot work out the architecture: {e}") from None
    weights = torch.empty(len(chosen.members), architecture.n_params, dtype=torch.float32)
    for row, i in enumerate(chosen.members):
        weights[row] = vectors.pop(i)[index]
    if stated is not None:
        for g in groups:
            if g is not chosen and g.architecture.startswith("does not fit"):
                why = g.architecture.removeprefix("does not fit: ")
                skipped.update({names[i]: f"does not fit the stated architecture ({why})" for i in g.members})
    if progress is not None:
        progress(len(files), len(files))
    return GroupedCheckpoints(architecture, weights, list(chosen.members), groups, chosen.index, skipped, notes,
                              scalars)


def _describe(example: Mapping[str, torch.Tensor], stated: ArchitectureLike | None) -> str:
    """A group's architecture: the stated one when it fits (else why not), else what its first file gives."""
    try:
        if stated is not None:
            stated.flatten(example, by_order=True)
            return stated.describe()
        return infer_layout(example).describe()
    except (ArchitectureError, KeyError, TypeError, ValueError) as e:
        return f"does not fit: {e}" if stated is not None else f"not inferred: {e}"


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
