"""Metadata from file and folder names, as training scripts write them.

``lr=0.01_seed=3_epoch=20.pt`` -> ``{"lr": 0.01, "seed": 3, "epoch": 20}``; Lightning's
``epoch=9-step=1000.ckpt`` -> ``{"epoch": 9, "step": 1000}``; where no name has ``=``, ``key_value`` pairs
with numeric values (``lr_0.01_seed_3.pt``) and counters glued to their number (``epoch10``, ``ep10``,
``checkpoint-100``) count too. Values become ints or floats where they are numbers. :func:`epoch_of`
finds the checkpoint's epoch (or step) for folders that keep one checkpoint per epoch; the untrained start
(``epoch_init.pt``, ``step=initial``, ``init.pt``) is epoch 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EPOCH_KEYS = ("epoch", "epochs", "ep", "e")
"""Names under which a file name gives the epoch (``epoch``, ``ep10``); ``e`` only as ``e=10``."""
STEP_KEYS = ("step", "steps", "iter", "iteration", "it", "checkpoint", "ckpt", "global_step")
"""Names of counters that order checkpoints when no epoch is named."""
INIT_WORDS = ("init", "initial", "initialization", "initialisation", "untrained", "start")
"""Words that name the checkpoint before training: epoch 0."""
_NUMBER = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_GLUED = re.compile(r"^(?P<key>epoch|epochs|ep|step|steps|iter|iteration|checkpoint|ckpt)[-]?(?P<value>\d+)$",
                    re.IGNORECASE)
_PAIRS = re.compile(r"[_,;\s]+|-(?=[A-Za-z][A-Za-z0-9_]*=)")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*$")


def _counter(key: str) -> bool:
    return key.lower() in (*EPOCH_KEYS, *STEP_KEYS)


def value_of(text: str) -> int | float | str:
    """``"3"`` -> 3, ``"0.01"`` / ``"1e-3"`` -> float, anything else unchanged."""
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if _NUMBER.match(text):
        return float(text)
    return text


def parse_name(stem: str) -> dict[str, int | float | str]:
    """The ``key=value`` / ``key_value`` pairs of one name without its suffix (see the module docstring);
    keys are lower-cased, later pairs replace earlier ones."""
    out: dict[str, int | float | str] = {}
    if "=" in stem:
        for token in _PAIRS.split(stem):
            key, eq, value = token.partition("=")
            if eq and value and _KEY.match(key):
                out[key.lower()] = 0 if _counter(key) and value.lower() in INIT_WORDS else value_of(value)
        return out
    tokens = [t for t in re.split(r"[_\s,;]+", stem) if t]
    i = 0
    while i < len(tokens):
        glued = _GLUED.match(tokens[i])
        if glued:
            out[glued["key"].lower()] = int(glued["value"])
        elif i + 1 < len(tokens) and re.fullmatch(r"[A-Za-z]+", tokens[i]) and _NUMBER.match(tokens[i + 1]):
            out[tokens[i].lower()] = value_of(tokens[i + 1])
            i += 1
        elif i + 1 < len(tokens) and _counter(tokens[i]) and tokens[i + 1].lower() in INIT_WORDS:
            out[tokens[i].lower()] = 0
            i += 1
        i += 1
    return out


def epoch_of(fields: dict[str, int | float | str], stem: str) -> int | float | None:
    """The epoch of a checkpoint: a parsed epoch key, else a parsed step-like counter, else ``stem`` itself
    when it is a number (``10.pt``), else None."""
    for key in (*EPOCH_KEYS, *STEP_KEYS):
        value = fields.get(key)
        if isinstance(value, int | float) and (key != "e" or "e=" in stem.lower()):
            return value
    if stem.lower() in INIT_WORDS:
        return 0
    return int(stem) if stem.isdigit() else None


def without_epoch(stem: str) -> str:
    """``stem`` with its epoch/step token removed (``seed=3_epoch=20`` -> ``seed=3``): what the checkpoints of
    one model share."""
    if stem.lower() in INIT_WORDS:  # "init.pt" beside "epoch_1.pt": the same run's start
        return ""
    keys = "|".join((*EPOCH_KEYS, *STEP_KEYS))
    values = "|".join((r"\d+", *INIT_WORDS))
    return re.sub(rf"(?i)(?:^|[_\-\s,;])(?:{keys})(?:=|_|-)?(?:{values})(?=$|[_\-\s,;])", "", stem).strip("_- ,;")


def has_epoch(stems: Iterable[str]) -> bool:
    """Whether every name in ``stems`` names its epoch or step explicitly (``epoch_10``, ``step=500``; ``init``
    for the start)."""
    stems = list(stems)
    return bool(stems) and all(s.lower() in INIT_WORDS or any(k in parse_name(s) for k in (*EPOCH_KEYS, *STEP_KEYS))
                               for s in stems)
