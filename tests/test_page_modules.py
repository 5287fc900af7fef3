"""Every page under AppTest on the two module-architecture sample zoos (digits-resnet, tiny-transformer); the
Symmetry page shows their derived groups and fixed axes and applies and undoes an element."""

from __future__ import annotations

import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.scale.cache import load_zoo
from wslviz.ui.home import page_files
from wslviz.understand import symmetry as S

ZOOS = ("digits-resnet", "tiny-transformer")


def zoo_path(name: str) -> str:
    path = ROOT / "sample_zoo" / name
    if not (path / "zoo.json").is_file():
        pytest.fail(f"sample zoo {name} is missing (run `wslviz make-zoo --only {name}`)")
    return str(path)


def run(monkeypatch, page: str, name: str) -> AppTest:
    monkeypatch.setenv(ui.ENV_ZOO, zoo_path(name))
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("name", ZOOS)
@pytest.mark.parametrize("page", [p.name for p in page_files()])
def test_every_page_runs_on_module_zoos(monkeypatch, page, name):
    run(monkeypatch, page, name)


@pytest.mark.parametrize("name", ZOOS)
def test_symmetry_page_shows_the_derived_group(monkeypatch, name):
    at = run(monkeypatch, "3_Symmetry.py", name)
    spec = load_zoo(zoo_path(name)).arch.perm_spec
    tables = [df.value for df in at.dataframe]
    groups = next(v for v in tables if "group" in v.columns)
    fixed = next(v for v in tables if "reason" in v.columns)
    assert list(groups["group"]) == [g.name for g in spec.groups]
    assert len(fixed) == len(spec.fixed) and "reaches the network output" in set(fixed["reason"])
    assert any(f"10^{S.group_size_log10(load_zoo(zoo_path(name)).arch):.1f}" in e.label for e in at.expander)
    at.button(key="sym_apply").click().run()
    assert not at.exception, at.exception
    gap = next(m for m in at.metric if m.label == "Max output difference")
    assert float(gap.value) < 1e-4
