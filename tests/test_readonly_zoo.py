"""Nothing is written where the user did not ask: a zoo in a read-only folder is opened, precomputed (the
cache goes to the per-user cache folder) and browsed page by page in the app, and the folder is
byte-identical afterwards.

The tests run as root, for whom ``chmod -R a-w`` stops nothing, so the folder is also checked by hashing
every file (and listing every folder) before and after: a write would show even where permissions did
not stop it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from fixtures_formats import write_cnnzoo
from streamlit.testing.v1 import AppTest

from wslviz.formats import save_zoo
from wslviz.scale.cache import CACHE_ENV, PrecomputeCache, load_zoo, user_cache_path
from wslviz.scale.precompute import precompute_zoo
from wslviz.ui.home import page_files

distributed = pytest.importorskip("distributed")

BUTTONS = ("Compute paths", "Fit predictor", "Generate", "Compute", "Align B to A")
"""Main buttons pressed where a page has them (so that the page computes, not only draws its widgets)."""


def snapshot(folder: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``folder``: kind, and the SHA-256 of its bytes for files."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir", "")
        else:
            out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def make_read_only(folder: Path) -> None:
    """``chmod -R a-w``."""
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def read_only_zoos(tmp_path, moons_zoo):
    """A native zoo with a task and a Small CNN Zoo folder, both read-only; writable again afterwards
    (so that pytest can delete them)."""
    native = save_zoo(moons_zoo.subset(np.arange(40)), tmp_path / "ro" / "moons")
    foreign = tmp_path / "ro" / "cnnzoo"
    write_cnnzoo(foreign, n_models=3, steps=(0, 10))
    make_read_only(tmp_path / "ro")
    yield Path(native), foreign
    for path in [tmp_path / "ro", *(tmp_path / "ro").rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.slow
def test_a_read_only_zoo_is_opened_precomputed_and_browsed_untouched(read_only_zoos, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "user-cache"))
    monkeypatch.delenv("WSLVIZ_ZOO", raising=False)
    native, foreign = read_only_zoos
    before = {z: snapshot(z) for z in (native, foreign)}
    assert not os.stat(native).st_mode & stat.S_IWUSR

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        report = precompute_zoo(native, features=("stats", "spectral", "functional", "aligned"), evaluate=True,
                                client=client)
        assert report.complete
        assert precompute_zoo(foreign, features=("stats",), client=client).complete
    for zoo_path in (native, foreign):
        zoo = load_zoo(zoo_path)
        assert zoo.cache is not None and zoo.cache.path == user_cache_path(zoo.fingerprint)
        assert PrecomputeCache(zoo.cache.path).matches(zoo)

    for zoo_path in (native, foreign):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        at.query_params["zoo"] = str(zoo_path)
        at.run()
        assert not at.exception, at.exception
        for page in page_files():
            at.switch_page(f"pages/{page.name}").run()
            assert not at.exception, (page.name, at.exception)
            pressed = [b for b in at.button if b.label in BUTTONS and not b.disabled]
            if pressed:
                pressed[0].click().run()
                assert not at.exception, (page.name, pressed[0].label, at.exception)

    for zoo_path in (native, foreign):
        assert snapshot(zoo_path) == before[zoo_path], f"{zoo_path.name} changed"
