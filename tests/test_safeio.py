"""Untrusted files: restricted unpickling, safe archive unpacking."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import tarfile
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from wslviz.formats import ZooFormatError
from wslviz.formats.safeio import load_state_dict, safe_torch_load, safe_unpack, zoo_root


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: the file appears only if the pickle is executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Dataset:  # like the preprocessed dataset.pt files of the Model Zoos
    def __init__(self):
        self.data = torch.zeros(3)


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"net.0.weight": torch.zeros(2, 2), "x": _RunsCode(marker)}
    if how == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ZooFormatError, match="refused") as e:
        safe_torch_load(path)
    assert not marker.exists()
    assert "can run code" in str(e.value) and e.value.path == str(path)
    if how == "torch":  # the checkpoint reader takes the tensors through inert stand-ins, running nothing
        assert set(load_state_dict(path)) == {"net.0.weight"}
    else:  # a bare pickle is no torch file: refused
        with pytest.raises(ZooFormatError):
            load_state_dict(path)
    assert not marker.exists()


def test_pickled_custom_class_says_why_and_what_to_do(tmp_path):
    torch.save(Dataset(), tmp_path / "dataset.pt")
    with pytest.raises(ZooFormatError) as e:
        safe_torch_load(tmp_path / "dataset.pt")
    msg = str(e.value)
    assert "Dataset" in msg and "safetensors" in msg and "state_dict()" in msg


def test_plain_files_load(tmp_path):
    sd = {"0.weight": torch.randn(3, 2), "0.bias": torch.randn(3)}
    torch.save(sd, tmp_path / "a.pt")
    save_file(sd, str(tmp_path / "a.safetensors"))
    for name in ("a.pt", "a.safetensors"):
        got = load_state_dict(tmp_path / name)
        assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ZooFormatError, match="empty file"):
        load_state_dict(tmp_path / "empty.pt")
    (tmp_path / "junk.pth").write_bytes(b"\x80\x02 not a pickle")
    with pytest.raises(ZooFormatError, match="junk.pth"):
        load_state_dict(tmp_path / "junk.pth")


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def test_unpack_zip_and_tar(tmp_path):
    z = _zip(tmp_path / "zoo.zip", [("myzoo/a.txt", b"hello"), ("myzoo/sub/b.bin", b"\x00" * 10)])
    before = _digest(z)
    out = safe_unpack(z, tmp_path / "out")
    assert (out / "myzoo" / "a.txt").read_bytes() == b"hello" and zoo_root(out) == out / "myzoo"
    assert _digest(z) == before  # the original is never modified
    t = tmp_path / "zoo.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        tf.add(out / "myzoo", arcname="myzoo")
    out2 = safe_unpack(t, tmp_path / "out2")
    assert (out2 / "myzoo" / "sub" / "b.bin").read_bytes() == b"\x00" * 10


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/abs/evil", "C:/evil"])
def test_zip_slip_and_absolute_paths_refused(tmp_path, name):
    z = _zip(tmp_path / "bad.zip", [("ok.txt", b"1"), (name, b"x")])
    with pytest.raises(ZooFormatError, match="refused") as e:
        safe_unpack(z, tmp_path / "dest" / "inner")
    assert e.value.path == str(z)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "dest" / "evil").exists()
    assert list((tmp_path / "dest" / "inner").iterdir()) == []  # what was extracted is removed


def _tar_with(tmp_path, member: tarfile.TarInfo, data: bytes | None = None):
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def test_tar_links_devices_and_slip_refused(tmp_path):
    link = tarfile.TarInfo("link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hard = tarfile.TarInfo("hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../outside"
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    slip = tarfile.TarInfo("../evil")
    slip.size = 1
    for i, (member, data, what) in enumerate([(link, None, "link"), (hard, None, "link"), (dev, None, "device"),
                                              (slip, b"x", r"\.\.")]):
        d = tmp_path / str(i)
        d.mkdir()
        with pytest.raises(ZooFormatError, match=what):
            safe_unpack(_tar_with(d, member, data), d / "out")
        assert list((d / "out").iterdir()) == [] and not (d / "evil").exists()


def test_zip_symlink_refused(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ZooFormatError, match="symbolic link"):
        safe_unpack(path, tmp_path / "out")
    assert not os.path.lexists(tmp_path / "out" / "link")


def test_zip_bomb_and_file_count_caps(tmp_path):
    bomb = _zip(tmp_path / "bomb.zip", [("zeros.bin", b"\x00" * (5 * 2**20))])
    assert bomb.stat().st_size < 50_000  # compresses ~1000x
    with pytest.raises(ZooFormatError, match="size cap"):
        safe_unpack(bomb, tmp_path / "out", max_bytes=2**20)
    assert list((tmp_path / "out").iterdir()) == []
    many = _zip(tmp_path / "many.zip", [(f"f{i}", b"x") for i in range(11)])
    with pytest.raises(ZooFormatError, match="more than 10 files"):
        safe_unpack(many, tmp_path / "out2", max_files=10)


def test_refuses_non_empty_destination_and_unknown_archives(tmp_path):
    z = _zip(tmp_path / "z.zip", [("a", b"1")])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("mine")
    with pytest.raises(ZooFormatError, match="not empty"):
        safe_unpack(z, tmp_path / "full")
    assert (tmp_path / "full" / "keep").read_text() == "mine"
    (tmp_path / "x.rar").write_bytes(b"Rar!")
    with pytest.raises(ZooFormatError, match="not an archive"):
        safe_unpack(tmp_path / "x.rar", tmp_path / "o")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ZooFormatError, match="not a readable zip"):
        safe_unpack(tmp_path / "broken.zip", tmp_path / "o2")
