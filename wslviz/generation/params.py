"""What a generator can be told, declared by the generator itself so that a page builds its widgets from it.

Each generator class lists its options as :class:`Param` entries (``WeightGenerator.params(zoo)``): the
constructor argument, a label, the kind of widget, the default and the range. The Generate page draws one widget
per entry and passes :meth:`Param.options` of the values back to the constructor; it knows no generator by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WIDGETS = ("slider", "choice", "checkbox", "row", "rows", "range")
"""``slider`` (a number in ``[low, high]`` by ``step``; an int when all three are ints), ``choice`` (one of
``choices``), ``checkbox``, ``row`` (one checkpoint; ``default`` is its position among the rows the linked
selection suggests), ``rows`` (several checkpoints, at most ``high``; ``default`` of them suggested), ``range``
(two numbers, ``name`` a pair of arguments)."""


@dataclass(frozen=True)
class Param:
    """One option of a generator as the app offers it (see the module docstring)."""

    name: str | tuple[str, str]
    label: str
    widget: str
    default: Any
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    none_at: float | None = None
    """A widget value that means None (e.g. a bandwidth of 0 for Scott's rule)."""
    help: str = ""

    def __post_init__(self) -> None:
        if self.widget not in WIDGETS:
            raise ValueError(f"unknown widget {self.widget!r} for {self.name}; known: {', '.join(WIDGETS)}")
        if (self.widget == "range") != isinstance(self.name, tuple):
            raise ValueError(f"{self.name}: a range names two arguments, every other widget one")

    @property
    def key(self) -> str:
        """A name for the widget: the argument, or both of a range joined."""
        return "_".join(self.name) if isinstance(self.name, tuple) else self.name

    def options(self, value: Any) -> dict[str, Any]:
        """The constructor arguments for a widget's ``value``."""
        if isinstance(self.name, tuple):
            return dict(zip(self.name, value, strict=True))
        return {self.name: None if self.none_at is not None and value == self.none_at else value}
