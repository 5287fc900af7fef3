"""The package's shape: imports point down the pillar stack, no import cycles, no private names across modules.

The layer order itself is the import-linter contract in ``pyproject.toml``; this test runs it and adds the two
rules import-linter does not check: cycles between modules of one subpackage, and private imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
LONG_REASON = "This module is long because"


def _wslviz_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("wslviz", exclude_type_checking_imports=True)
    return {m: {x for x in graph.find_modules_directly_imported_by(m) if x.startswith("wslviz")}
            for m in graph.modules}


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed in this environment (make test installs it)")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "broken" not in done.stdout.lower().replace("0 broken", "")


def test_no_import_cycles_between_modules():
    """Module-level imports and imports inside functions alike: an import deferred into a function to dodge a
    cycle is still a cycle."""
    assert _strongly_connected(_wslviz_graph()) == []


def _python_files() -> list[Path]:
    files = sorted((ROOT / "wslviz").rglob("*.py")) + sorted((ROOT / "pages").glob("*.py"))
    return files + [ROOT / "app.py"] + sorted((ROOT / "benchmarks").glob("*.py"))


def _private_imports(source: str, name: str) -> list[str]:
    """``from wslviz... import _name`` statements anywhere in ``source`` (module level or inside functions)."""
    bad = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wslviz"):
            bad += [f"{name}:{node.lineno} imports {a.name} from {node.module}"
                    for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return bad


def test_private_import_finder_flags_one():
    probe = "import torch\n\ndef f():\n    from wslviz.understand.symmetry import _take, apply_symmetry\n"
    assert _private_imports(probe, "probe.py") == ["probe.py:4 imports _take from wslviz.understand.symmetry"]
    assert _private_imports("from wslviz.core.zoo import Zoo\n", "ok.py") == []


def test_no_private_names_imported_across_modules():
    bad = [line for f in _python_files() for line in _private_imports(f.read_text(), str(f.relative_to(ROOT)))]
    assert bad == []


def test_long_modules_say_why():
    """A module of the library over ~500 lines states in its docstring why it is one module."""
    long = []
    for f in sorted((ROOT / "wslviz").rglob("*.py")):
        text = f.read_text()
        if text.count("\n") > MAX_LINES and LONG_REASON not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{f.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert long == []
