"""The structure of the library: files of a readable size, no import cycles, no branching on kinds of network.

Every kind of architecture implements one protocol (:mod:`wslviz.core.kind`), so code outside ``wslviz/core``
never asks which kind it holds; import-linter keeps the pillars layered (``lint-imports``), and this keeps the
files inside them acyclic, type-only imports included."""

from __future__ import annotations

import re
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "wslviz"
MAX_LINES = 600
KIND_BRANCH = re.compile(r"is_module_arch|kind ==|kind !=|isinstance\(arch\b")


def test_no_library_file_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in LIBRARY.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by what their parts do: {long}"


def test_no_import_cycle_between_files():
    graph = grimp.build_graph("wslviz", include_external_packages=False, exclude_type_checking_imports=False)
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles, done, path = [], set(), []

    def visit(m: str) -> None:
        if m in path:
            cycles.append(path[path.index(m):] + [m])
            return
        if m in done:
            return
        path.append(m)
        for n in sorted(imports[m]):
            visit(n)
        path.pop()
        done.add(m)

    for m in sorted(imports):
        visit(m)
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_no_code_outside_core_branches_on_the_kind_of_network():
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in LIBRARY.rglob("*.py")
             if LIBRARY / "core" not in p.parents
             for i, line in enumerate(p.read_text().splitlines(), 1) if KIND_BRANCH.search(line)]
    assert not found, "call the architecture protocol instead:\n" + "\n".join(found)
