"""Fuzzing every reader with generated corruptions of valid fixtures (hypothesis).

For each layout a valid tiny zoo is written once; each example copies it, applies one to three
corruptions (byte flips, truncation, deletion or emptying of a file, edits of JSON/CSV fields,
duplicated lines, appended junk) and opens it with that reader. The only acceptable outcomes are a
:class:`ZooFormatError` or a consistent zoo (one metadata row per weight row, finite weights of the
architecture's size). The number of cases per reader is written to ``tests/artifacts/fuzz_counts.json``
and printed; ``WSLVIZ_FUZZ_EXAMPLES`` sets the examples per reader (default 60).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from fixtures_formats import FOLDER_WRITERS, WRITERS, mlp_state_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.zoo import Zoo
from wslviz.formats import ZooFormatError, save_zoo

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
EXAMPLES = int(os.environ.get("WSLVIZ_FUZZ_EXAMPLES", "60"))
COUNTS: dict[str, Counter] = {}
TEXT_SUFFIXES = (".json", ".csv")
REPLACEMENTS = ["", "nan", "inf", "-inf", "-1", "0", "1e309", "abc", '"', "{", "[]", "null", "true", "99999999999"]


def _write_native(path: Path) -> None:
    import pandas as pd

    arch = Architecture(mlp_spec([2, 4, 2]))
    w = torch.randn(3, arch.n_params)
    save_zoo(Zoo(name="n", metadata=pd.DataFrame({"model_id": [0, 1, 2], "test_acc": [0.1, 0.2, 0.3]}), weights=w,
                 arch=arch), path)


def _write_archive(path: Path) -> None:
    src = path.parent / (path.name + "-src")
    (src / "ckpts").mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(2):
        torch.save(mlp_state_dict(gen), src / "ckpts" / f"m{i}.pt")
    path.mkdir()
    with zipfile.ZipFile(path / "zoo.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(src.rglob("*")):
            zf.write(f, f.relative_to(src).as_posix())


LAYOUTS = {**WRITERS, "native": _write_native, "archive": _write_archive, **FOLDER_WRITERS}
READER = {name: "folder" for name in FOLDER_WRITERS}
"""Layouts read by another reader than their name (checkpoint folders as people keep them)."""


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz-templates")
    out = {}
    for name, writer in LAYOUTS.items():
        writer(base / name)
        files = sorted(str(p.relative_to(base / name)) for p in (base / name).rglob("*") if p.is_file())
        out[name] = (base / name, files)
    yield out
    if not COUNTS:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    summary = {name: dict(c) for name, c in sorted(COUNTS.items())}
    summary["total_cases"] = sum(c["cases"] for c in COUNTS.values())
    (ARTIFACTS / "fuzz_counts.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nfuzz cases: {json.dumps(summary)}")


@st.composite
def corruptions(draw, n_files: int):
    kind = draw(st.sampled_from(["flip", "truncate", "delete", "empty", "edit", "append", "duplicate_line"]))
    index = draw(st.integers(0, n_files - 1))
    if kind == "flip":
        return kind, index, draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                          min_size=1, max_size=8))
    if kind == "truncate":
        return kind, index, draw(st.floats(0, 1, exclude_max=True))
    if kind in ("edit", "duplicate_line"):
        return kind, index, (draw(st.floats(0, 1, exclude_max=True)), draw(st.sampled_from(REPLACEMENTS)))
    if kind == "append":
        return kind, index, draw(st.binary(min_size=1, max_size=64))
    return kind, index, None


def _corrupt(root: Path, files: list[str], corruption) -> None:
    kind, index, arg = corruption
    path = root / files[index]
    if not path.exists():  # deleted by an earlier step
        return
    data = path.read_bytes()
    if kind == "flip" and data:
        buf = bytearray(data)
        for where, xor in arg:
            buf[int(where * len(buf))] ^= xor
        path.write_bytes(bytes(buf))
    elif kind == "truncate":
        path.write_bytes(data[: int(arg * len(data))])
    elif kind == "delete":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "append":
        path.write_bytes(data + arg)
    elif kind == "edit":
        if not path.name.endswith(TEXT_SUFFIXES):  # binary files get a byte flip instead
            if data:
                path.write_bytes(data[: int(arg[0] * len(data))] + b"\xff" + data[int(arg[0] * len(data)) + 1:])
            return
        text = data.decode(errors="surrogateescape")  # earlier steps may have left invalid UTF-8
        tokens = list(re.finditer(r"-?\d+(?:\.\d+)?(?:e-?\d+)?|[A-Za-z_]+", text))
        if tokens:
            t = tokens[int(arg[0] * len(tokens))]
            path.write_bytes((text[: t.start()] + arg[1] + text[t.end():]).encode(errors="surrogateescape"))
    elif kind == "duplicate_line":
        lines = data.splitlines(keepends=True)
        if lines:
            i = int(arg[0] * len(lines))
            path.write_bytes(b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1:]))


def _check(name: str, root: Path) -> str:
    target = root / "zoo.zip" if name == "archive" else root
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zoo = wv.load_zoo(target, format=READER.get(name, name))
    except ZooFormatError as e:
        assert str(e), "a ZooFormatError must say what is wrong"
        return "rejected"
    assert zoo.weights.shape == (len(zoo.metadata), zoo.arch.n_params)
    assert torch.isfinite(zoo.weights).all()
    return "accepted"


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_fuzz_reader(templates, name):
    template, files = templates[name]
    counts = COUNTS.setdefault(name, Counter())

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(steps=st.lists(corruptions(len(files)), min_size=1, max_size=3))
    def run(steps):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / name
            shutil.copytree(template, root)
            for corruption in steps:
                _corrupt(root, files, corruption)
            outcome = _check(name, root)
        counts["cases"] += 1
        counts[outcome] += 1

    assert _check(name, template) == "accepted"  # the uncorrupted fixture opens
    run()
    assert counts["cases"] >= EXAMPLES // 2


def test_every_reader_on_every_other_layout(templates):
    """A reader named explicitly on another layout's folder refuses it with a ZooFormatError (or, where
    the layouts overlap, opens a consistent zoo); auto-detection picks the writer's own layout."""
    for layout, (root, _) in templates.items():
        target = root / "zoo.zip" if layout == "archive" else root
        assert wv.formats.detect_format(target) == READER.get(layout, layout)
        for name in dict.fromkeys(READER.get(n, n) for n in LAYOUTS):
            if name != READER.get(layout, layout):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        zoo = wv.load_zoo(target, format=name)
                except ZooFormatError:
                    continue
                assert zoo.weights.shape == (len(zoo.metadata), zoo.arch.n_params), (layout, name)
