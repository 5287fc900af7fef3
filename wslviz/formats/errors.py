"""The one error every reader raises."""

from __future__ import annotations

from pathlib import Path


class ZooFormatError(ValueError):
    """A zoo on disk that cannot be read; the message names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)
