"""Tensors out of whole-module and legacy pickles, without running any code from the file.

``torch.save(model)`` (a user's class, an ``nn.GRU`` with its optimiser object, a torch 0.4 file) pickles classes
and callables that ``torch.load(weights_only=True)`` rightly refuses: unpickling them imports and calls whatever
the file names. This reader unpickles such files with a ``find_class`` that never returns a real class or
function from the file: every name it asks for becomes an inert stand-in (:class:`Inert`) that only records the
arguments and state it is given. The only real callables handed out are torch's own tensor and storage
rebuilders and ``OrderedDict`` (what ``weights_only=True`` allows too); storages are read by torch's loader
from the file itself. The tensors are then collected from the recorded object graph, named as ``nn.Module``
names them (``encoder.0.weight``); one tensor reachable under two names (``i2h.weight`` and an RNN's flat
``weight_ih_l0`` copy) is kept once, under the first.
"""

from __future__ import annotations

import collections
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

SAFE_CALLABLES: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): torch.Size,
}
"""The only real callables a pickle may reach: torch's tensor rebuilders and plain containers."""
MAX_DEPTH = 64
"""How deep the object graph is followed when collecting tensors (a crafted file may nest without end)."""


class Inert:
    """A stand-in for a class or function named in a pickle: calling it, building it or setting its state only
    records what was given (``args``, ``kwargs``, ``state``); nothing from the file ever runs."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items=[], elements=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __call__(self, *args: Any, **kwargs: Any) -> Inert:
        return type(self)(*args, **kwargs)

    # a pickled dict, list or set subclass is filled through these: recorded, in order (keys may be unhashable)
    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"].append((key, value))

    def append(self, value: Any) -> None:
        self.__dict__["elements"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["elements"].extend(values)

    add = append


class _InertUnpickler(pickle.Unpickler):
    """``find_class`` hands out :data:`SAFE_CALLABLES` and stand-ins, never anything else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_CALLABLES:
            return SAFE_CALLABLES[(module, name)]
        return type(name, (Inert,), {"qualname": f"{module}.{name}"})


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load``, both inert."""

    __name__ = "wslviz_inert_pickle"
    Unpickler = _InertUnpickler

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _InertUnpickler(file, **kwargs).load()


def classes_in(obj: Any, depth: int = 0, found: set[str] | None = None) -> set[str]:
    """The qualified names of the stand-ins in an unpickled graph (what the file pickled, for notes)."""
    found = set() if found is None else found
    if depth > MAX_DEPTH:
        return found
    if isinstance(obj, Inert):
        found.add(obj.qualname)
        for part in (obj.state, obj.args, obj.items, obj.elements):
            classes_in(part, depth + 1, found)
    elif isinstance(obj, dict):
        for v in obj.values():
            classes_in(v, depth + 1, found)
    elif isinstance(obj, list | tuple):
        for v in obj:
            classes_in(v, depth + 1, found)
    return found


def _module_tensors(state: dict, prefix: str, out: dict[str, torch.Tensor], seen: set[int], depth: int) -> None:
    """An ``nn.Module``'s recorded ``__dict__``: its parameters and buffers under their names, then its
    sub-modules, then any other attribute holding tensors (kept only when not already named)."""
    for group in ("_parameters", "_buffers"):
        for k, v in (state.get(group) or {}).items():
            _collect(v, prefix + str(k), out, seen, depth + 1)
    for k, v in (state.get("_modules") or {}).items():
        _collect(v, f"{prefix}{k}.", out, seen, depth + 1, as_prefix=True)
    for k, v in state.items():
        if not str(k).startswith("_") or k == "_flat_weights":
            _collect(v, prefix + str(k), out, seen, depth + 1)


def _collect(obj: Any, name: str, out: dict[str, torch.Tensor], seen: set[int], depth: int,
             as_prefix: bool = False) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(obj, torch.Tensor):
        key = id(obj)
        if key not in seen and not obj.is_sparse:
            seen.add(key)
            out[name.rstrip(".")] = obj.detach()
        return
    if isinstance(obj, Inert):
        state = obj.state if isinstance(obj.state, dict) else None
        prefix = name if as_prefix or not name else name + "."
        if state is not None and ("_parameters" in state or "_modules" in state):
            _module_tensors(state, prefix, out, seen, depth)
        elif state is not None:
            for k, v in state.items():
                _collect(v, prefix + str(k), out, seen, depth + 1)
        for k, v in obj.items:  # a dict subclass (a custom state dict class): its entries by key
            _collect(v, prefix + str(k), out, seen, depth + 1)
        for i, v in enumerate(obj.elements):
            _collect(v, prefix + str(i), out, seen, depth + 1)
        return
    if isinstance(obj, dict):
        prefix = name if as_prefix or not name else name + "."
        for k, v in obj.items():
            _collect(v, prefix + str(k), out, seen, depth + 1)
    elif isinstance(obj, list | tuple):
        prefix = name if as_prefix or not name else name + "."
        for i, v in enumerate(obj):
            _collect(v, prefix + str(i), out, seen, depth + 1)


def as_plain(obj: Any, depth: int = 0) -> Any:
    """The unpickled graph with every stand-in that holds tensors replaced by a plain ``{name: tensor}`` dict
    (a pickled module becomes its state dict), so that the usual checkpoint rules (wrappers, nestings) apply."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(obj, Inert):
        tensors: dict[str, torch.Tensor] = {}
        _collect(obj, "", tensors, set(), depth)
        return tensors
    if isinstance(obj, dict):
        return {k: as_plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(as_plain(v, depth + 1) for v in obj) if not hasattr(obj, "_fields") else obj
    return obj


def load_inert(path: str | Path) -> Any:
    """Unpickle a torch file (zip or legacy format) with stand-ins for every class and function it names (see the
    module docstring); storages come from the file through torch's own loader. Raises what the loader raises for
    a broken file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(Path(path), map_location="cpu", weights_only=False, pickle_module=_PickleModule)
