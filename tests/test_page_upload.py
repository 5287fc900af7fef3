"""Uploading a zoo archive: the unpack+open function, the uploader widget under AppTest, and the
home page (``app.py``) when it offers the uploader."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_formats import write_cnnzoo, write_modelzoos, zip_folder
from streamlit.testing.v1 import AppTest

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.zoo import Zoo
from wslviz.formats import ZooFormatError, save_zoo
from wslviz.formats.archive import import_archive

ROOT = Path(__file__).resolve().parents[1]




@pytest.fixture
def cnnzoo_zip(tmp_path):
    write_cnnzoo(tmp_path / "zoo", n_models=2, steps=(0, 10))
    return tmp_path / "zoo", zip_folder(tmp_path / "zoo", "mnist_cnns")


def test_import_archive_gives_an_equal_native_zoo(tmp_path, cnnzoo_zip):
    folder, data = cnnzoo_zip
    (tmp_path / "zoo.zip").write_bytes(data)
    direct = wv.load_zoo(folder)
    native = import_archive(tmp_path / "zoo.zip", workdir=tmp_path / "work")
    assert (native / "zoo.json").is_file() and native.is_relative_to(tmp_path / "work")
    imported = wv.load_zoo(native)
    assert imported.format == "native" and imported.arch == direct.arch
    assert torch.equal(imported.weights, direct.weights)
    assert list(imported.metadata["test_acc"]) == list(direct.metadata["test_acc"])
    assert (tmp_path / "zoo.zip").read_bytes() == data
    # load_zoo opens archives directly too
    assert torch.equal(wv.load_zoo(tmp_path / "zoo.zip").weights, direct.weights)


def test_import_archive_with_explicit_layout_and_errors(tmp_path):
    write_modelzoos(tmp_path / "mz", n_trials=1, epochs=(0, 1))
    (tmp_path / "mz.zip").write_bytes(zip_folder(tmp_path / "mz", "mz"))
    zoo = wv.load_zoo(import_archive(tmp_path / "mz.zip", zoo_format="modelzoos", workdir=tmp_path / "w1"))
    assert zoo.n_checkpoints == 2 and "test_acc" in zoo.metadata
    with pytest.raises(ZooFormatError, match="no trial folders|weights.npy"):
        import_archive(tmp_path / "mz.zip", zoo_format="cnnzoo", workdir=tmp_path / "w2")
    assert list((tmp_path / "w2").iterdir()) == []  # nothing left behind


UPLOADER_APP = """
import streamlit as st
from wslviz.ui.upload import zoo_uploader
path = zoo_uploader(max_upload_bytes={cap})
st.write(f"path={{path}}")
"""


def _uploader_app(cap: int = 200 * 2**20) -> AppTest:
    return AppTest.from_string(UPLOADER_APP.format(cap=cap), default_timeout=60)


def _tar_gz(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(folder, arcname="mnist_cnns")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_uploader_widget_loads_archive(cnnzoo_zip, kind):
    folder, data = cnnzoo_zip
    if kind == "tar.gz":
        data = _tar_gz(folder)
    at = _uploader_app()
    at.run()
    assert not at.exception and len(at.file_uploader) == 1
    at.file_uploader[0].set_value((f"mnist_cnns.{kind}", data, "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error
    path = at.session_state["zoo_path"]
    zoo = wv.load_zoo(path)
    assert zoo.format == "native" and torch.equal(zoo.weights, wv.load_zoo(folder).weights)
    assert f"path={path}" in [m.value for m in at.markdown]
    at.run()  # a rerun reuses the unpacked zoo
    assert at.session_state["zoo_path"] == path


def test_uploader_shows_errors_not_tracebacks(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.txt", "x")
    at = _uploader_app()
    at.run()
    at.file_uploader[0].set_value(("evil.zip", buf.getvalue(), "application/zip"))
    at.run()
    assert not at.exception and "refused" in at.error[0].value and "evil.zip" in at.error[0].value
    assert "zoo_path" not in at.session_state or at.session_state["zoo_path"] is None
    at.run()  # the failure is remembered and shown again, not retried
    assert not at.exception and "refused" in at.error[0].value

    np.save(tmp_path / "weights.npy", np.zeros((2, 3), dtype=np.float32))
    (tmp_path / "layout.csv").write_text("varname,start_idx\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(tmp_path / "weights.npy", "z/weights.npy")
        zf.write(tmp_path / "layout.csv", "z/layout.csv")
    at.file_uploader[0].set_value(("broken.zip", buf.getvalue(), "application/zip"))
    at.run()
    assert not at.exception and "layout.csv" in at.error[0].value and "/tmp" not in at.error[0].value

    small = _uploader_app(cap=10)
    small.run()
    small.file_uploader[0].set_value(("big.zip", buf.getvalue(), "application/zip"))
    small.run()
    assert not small.exception and "limit" in small.error[0].value


def test_home_page_loads_an_uploaded_archive(cnnzoo_zip):
    """The app's sidebar offers the uploader; an upload becomes the current zoo of the home page."""
    folder, data = cnnzoo_zip
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    source = at.radio(key="zoo_source")
    assert "Upload" in source.options, "the sidebar offers no upload"
    source.set_value("Upload")
    at.run()
    assert not at.exception
    at.file_uploader(key="zoo_upload").set_value(("mnist_cnns.zip", data, "application/zip"))
    at.run()
    assert not at.exception and not at.error
    path = at.session_state["zoo_path"]
    assert path == at.session_state["zoo_upload_loaded"]["path"]
    zoo = wv.load_zoo(path)
    assert zoo.format == "native" and torch.equal(zoo.weights, wv.load_zoo(folder).weights)
    assert "### mnist_cnns" in [m.value for m in at.markdown]  # the home page's summary card
    at.run()  # stays on the uploaded zoo
    assert at.session_state["zoo_path"] == path and not at.exception


def test_archive_task_data_must_stay_inside(tmp_path):
    """A native zoo.json in an archive may not point the server at data files outside the archive."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "outside.npz", x=rng.random((20, 2)).astype(np.float32), y=rng.integers(0, 2, 20))
    arch = Architecture(mlp_spec([2, 4, 2]))
    save_zoo(Zoo(name="z", metadata=pd.DataFrame({"model_id": [0]}), weights=torch.zeros(1, arch.n_params),
                 arch=arch), tmp_path / "z")
    info = json.loads((tmp_path / "z" / "zoo.json").read_text())
    for data, ok in [(str(tmp_path / "outside.npz"), False), ("../outside.npz", False), ("data.npz", True)]:
        info["task"] = {"name": "npz", "path": data}
        (tmp_path / "z" / "zoo.json").write_text(json.dumps(info))
        shutil.copy(tmp_path / "outside.npz", tmp_path / "z" / "data.npz")
        archive = tmp_path / "z.zip"
        archive.write_bytes(zip_folder(tmp_path / "z", "z"))
        if ok:
            assert wv.load_zoo(archive).task is not None
        else:
            with pytest.raises(ZooFormatError, match="outside the archive"):
                wv.load_zoo(archive)


def test_failed_upload_keeps_the_previous_zoo(cnnzoo_zip):
    _, data = cnnzoo_zip
    at = _uploader_app()
    at.run()
    at.file_uploader[0].set_value(("good.zip", data, "application/zip"))
    at.run()
    good = at.session_state["zoo_path"]
    at.file_uploader[0].set_value(("bad.zip", b"PK\x03\x04 not a zip", "application/zip"))
    at.run()
    assert not at.exception and "not a readable zip" in at.error[0].value
    assert at.session_state["zoo_path"] == good and wv.load_zoo(good).n_checkpoints == 4
    at.file_uploader[0].set_value(("again.zip", data, "application/zip"))
    at.run()
    assert at.session_state["zoo_path"] != good and not Path(good).exists()  # replaced, old folder removed
