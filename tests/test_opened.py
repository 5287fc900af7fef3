"""Folders read into a row store: the weight matrix written row by row to a file in the per-user cache and
memory-mapped, reopened from there while the folder is unchanged (wslviz.scale.opened)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from fixtures_formats import write_mixed, write_runs
from safetensors.torch import load_file

import wslviz as wv
from wslviz.formats import read_zoo
from wslviz.scale import opened


@pytest.fixture
def store_everything(tmp_path, monkeypatch):
    """A fresh per-user cache, and every folder large enough for a store."""
    monkeypatch.setenv("WSLVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(opened, "STORE_ABOVE", 0)
    return tmp_path / "cache"


def same(a, b) -> None:
    assert torch.equal(a.weights, b.weights)
    assert a.metadata.equals(b.metadata) and list(a.metadata.dtypes) == list(b.metadata.dtypes)
    assert a.arch == b.arch and a.extra == b.extra and a.description == b.description and a.format == b.format


def test_row_file_holds_what_memory_holds_and_skips_what_it_skips(tmp_path):
    write_runs(tmp_path / "runs", n_runs=2, epochs=(0, 1, 2))
    bad = torch.load(tmp_path / "runs/lr=0.01_seed=1/epoch_1.pt")
    bad[next(iter(bad))][0, 0] = float("nan")
    torch.save(bad, tmp_path / "runs/lr=0.01_seed=1/epoch_1.pt")
    in_memory = read_zoo(tmp_path / "runs", activation="tanh")
    stored = read_zoo(tmp_path / "runs", activation="tanh", store=tmp_path / "rows.safetensors")
    same(in_memory, stored)
    assert stored.n_checkpoints == 5 and list(stored.extra["skipped"]) == ["lr=0.01_seed=1/epoch_1.pt"]
    assert torch.equal(load_file(str(tmp_path / "rows.safetensors"))["weights"], in_memory.weights)


def test_mixed_folder_choosing_a_later_group_rewrites_the_store(tmp_path):
    """The first signature read is stacked as it is read; a group picked in the end that is not it is read
    again into the same file."""
    write_mixed(tmp_path / "m")
    for group in (0, 1, None):
        options = {} if group is None else {"group": group}
        same(read_zoo(tmp_path / "m", **options), read_zoo(tmp_path / "m", store=tmp_path / "w", **options))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_full_disk_is_said_by_the_reader_and_the_opener_reads_into_memory(tmp_path, store_everything, monkeypatch):
    """A row that does not fit raises, the store's file closed; the opener then reads the folder into memory
    instead (nothing kept)."""
    write_runs(tmp_path / "runs", n_runs=2, epochs=(0, 1))
    with pytest.raises(OSError):
        read_zoo(tmp_path / "runs", activation="tanh", store=Path("/dev/full"))
    real = opened.read_zoo
    monkeypatch.setattr(opened, "read_zoo", lambda *args, store, **kw: real(*args, store=Path("/dev/full"), **kw))
    zoo = wv.load_zoo(tmp_path / "runs", activation="tanh")
    same(zoo, wv.load_zoo(tmp_path / "runs", activation="tanh", cache=False))
    assert not (store_everything / "opened").exists() or not any((store_everything / "opened").iterdir())


def test_reopened_from_the_store_without_reading_a_checkpoint(tmp_path, store_everything, monkeypatch):
    write_runs(tmp_path / "runs", n_runs=3, epochs=(0, 5))
    before = sorted(p.relative_to(tmp_path / "runs") for p in (tmp_path / "runs").rglob("*"))
    first = wv.load_zoo(tmp_path / "runs", activation="tanh")
    same(first, wv.load_zoo(tmp_path / "runs", activation="tanh", cache=False))
    assert sorted(p.relative_to(tmp_path / "runs") for p in (tmp_path / "runs").rglob("*")) == before
    assert len(list((store_everything / "opened").iterdir())) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("a checkpoint was read")

    monkeypatch.setattr(opened, "read_zoo", no_reading)
    again = wv.load_zoo(tmp_path / "runs", activation="tanh")
    same(first, again)
    assert again.path == tmp_path / "runs"
    with pytest.raises(AssertionError, match="a checkpoint was read"):  # other options: another matrix
        wv.load_zoo(tmp_path / "runs", activation="relu")


def test_a_changed_folder_replaces_its_store(tmp_path, store_everything):
    written = write_runs(tmp_path / "runs", n_runs=2, epochs=(0, 1))
    wv.load_zoo(tmp_path / "runs", activation="tanh")
    path = tmp_path / "runs/lr=0.1_seed=0/epoch_1.pt"
    changed = {k: v + 1 for k, v in written["lr=0.1_seed=0/epoch_1.pt"].state_dict().items()}
    torch.save(changed, path)
    os.utime(path, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    zoo = wv.load_zoo(tmp_path / "runs", activation="tanh")
    same(zoo, wv.load_zoo(tmp_path / "runs", activation="tanh", cache=False))
    assert len(list((store_everything / "opened").iterdir())) == 1


def test_no_store_below_the_size_or_for_options_that_are_objects(tmp_path, monkeypatch):
    monkeypatch.setenv("WSLVIZ_CACHE", str(tmp_path / "cache"))
    write_runs(tmp_path / "runs", n_runs=2, epochs=(0,))
    wv.load_zoo(tmp_path / "runs", activation="tanh")
    assert not (tmp_path / "cache" / "opened").exists()
    monkeypatch.setattr(opened, "STORE_ABOVE", 0)
    arch = wv.load_zoo(tmp_path / "runs", activation="tanh", cache=False).arch
    assert opened.open_stored(tmp_path / "runs", tmp_path / "cache", arch=arch) is None
    wv.load_zoo(tmp_path / "runs", cache=False, activation="tanh")
    assert not (tmp_path / "cache" / "opened").exists()
