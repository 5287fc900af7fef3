"""Typed results: the small frozen dataclasses that reports reach pages and notebooks as.

A report is read by attribute (``report.barrier_after``) and, so that code written against the dicts these
replaced keeps working, by key too (``report["barrier_after"]``, ``dict(report)``, ``**report``): every report
is a read-only :class:`~collections.abc.Mapping` of its fields. Fields named in ``OPTIONAL`` are left out of that
key view while they are None (the dicts left those keys out when there was nothing to say, e.g. barriers without
a task). Reports compare by identity: their fields hold tensors and tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True, eq=False)
class Report(Mapping[str, Any]):
    """Base of the typed results (see the module docstring); subclasses are frozen dataclasses too."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    def _keys(self) -> list[str]:
        return [f.name for f in fields(self) if not (f.name in self.OPTIONAL and getattr(self, f.name) is None)]

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    __eq__ = object.__eq__
    __hash__ = object.__hash__
