"""Hugging Face folders served in place (wslviz.formats.served): the rows are the files' own bytes, mapped without a
copy, the architecture laid out in the files' order; everything computed from them is what the copied rows give."""

from __future__ import annotations

import gc
import json
import sys

import numpy as np
import pytest
import torch

import wslviz as wv
from wslviz.core import zoo as zoo_module
from wslviz.core.evaluation import model_outputs
from wslviz.core.memory import is_file_mapped, release
from wslviz.core.protocol import from_spec
from wslviz.formats import read_zoo, served
from wslviz.formats.served import float_rows, stitch
from wslviz.represent.features import compute_features
from wslviz.scale import opened
from wslviz.understand.align import weight_matching

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="served rows are mapped on Linux")


@pytest.fixture(autouse=True)
def serve_small_rows(monkeypatch):
    """These GPT-2s are a few KB: served all the same (larger rows than SERVE_ABOVE are served by default)."""
    monkeypatch.setattr(served, "SERVE_ABOVE", 0)


def _config():
    return transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=8, vocab_size=24,
                                   architectures=["GPT2LMHeadModel"])


def write_family(folder, names, dtype=torch.float32):
    """GPT-2s written by ``transformers`` (``save_pretrained``), one per name, each a perturbed copy of one model."""
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(_config()).eval()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    for i, name in enumerate(names):
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(base[k] + 0.01 * (i + 1) * torch.randn_like(p))
        model.to(dtype).save_pretrained(folder / name)
        model.float()
    return folder


def plain(folder):
    """The same folder's rows copied, in the model's own layout order (the files read one by one)."""
    from safetensors.torch import load_file

    arch = from_spec({"kind": "hf", "config": json.loads((folder / "config.json").read_text())})
    return arch, torch.stack([arch.flatten(load_file(str(folder / "model.safetensors")))])


def test_rows_are_the_files_bytes_in_the_files_order(tmp_path):
    write_family(tmp_path / "zoo", ["a", "b", "c"])
    zoo = read_zoo(tmp_path / "zoo")
    assert zoo.extra["served"]["files"] == [str(tmp_path / "zoo" / n / "model.safetensors") for n in "abc"]
    assert any("in place" in note for note in zoo.extra["notes"])
    assert not zoo.weights.is_contiguous() and all(row.is_contiguous() for row in zoo.weights)
    start, tensors = float_rows(tmp_path / "zoo/a/model.safetensors")
    assert [p.name for p in zoo.arch.layout] == [zoo.arch.layout_name(name) for name, _ in tensors]
    for i, name in enumerate("abc"):
        arch, rows = plain(tmp_path / "zoo" / name)
        again = zoo.arch.unflatten(zoo.weights[i])
        assert all(torch.equal(again[k], v) for k, v in arch.unflatten(rows[0]).items())  # same tensors, bit for bit
        assert torch.equal(zoo.weights[i], zoo.arch.flatten(arch.unflatten(rows[0])))
    x = zoo.arch.probe_inputs(6)
    arch, rows = plain(tmp_path / "zoo/b")
    torch.testing.assert_close(model_outputs(zoo.arch, zoo.weights[1:2], x), model_outputs(arch, rows, x),
                               rtol=1e-6, atol=1e-6)


def test_features_alignment_and_saving_work_on_served_rows(tmp_path):
    write_family(tmp_path / "zoo", ["a", "b", "c"])
    zoo = read_zoo(tmp_path / "zoo")
    copied = zoo.weights.contiguous()
    stats = compute_features(zoo, "stats")
    zoo_copy = read_zoo(tmp_path / "zoo")
    zoo_copy.weights = copied
    assert zoo.fingerprint == zoo_copy.fingerprint
    with pytest.MonkeyPatch.context() as m:  # sampled in blocks that cross rows: the same values in the same order
        m.setattr(zoo_module, "FINGERPRINT_BLOCK", 100)
        assert zoo.weights.numel() > 64 * 100 and zoo.fingerprint == zoo_copy.fingerprint
    np.testing.assert_allclose(stats, compute_features(zoo_copy, "stats"), rtol=1e-6, atol=1e-9)
    matched = weight_matching(zoo.arch, zoo.weights[0], zoo.weights[2])
    x = zoo.arch.probe_inputs(6)
    torch.testing.assert_close(model_outputs(zoo.arch, matched[None], x),
                               model_outputs(zoo.arch, zoo.weights[2:3], x), rtol=1e-4, atol=1e-5)
    wv.save_zoo(zoo, tmp_path / "native")
    assert torch.equal(wv.load_zoo(tmp_path / "native", cache=False).weights, copied)
    torch.save(zoo.weights, tmp_path / "w.pt")  # the whole mapped range is readable, the gaps between rows too
    assert torch.equal(torch.load(tmp_path / "w.pt"), copied)


def test_writing_to_a_row_never_reaches_the_file_and_release_keeps_it(tmp_path):
    write_family(tmp_path / "zoo", ["a", "b"])
    file = tmp_path / "zoo/b/model.safetensors"
    before = file.read_bytes()
    zoo = read_zoo(tmp_path / "zoo")
    assert is_file_mapped(zoo.weights)
    zoo.weights[1, 3] = 123.0
    release(zoo.weights)
    assert zoo.weights[1, 3] == 123.0 and file.read_bytes() == before
    assert read_zoo(tmp_path / "zoo").weights[1, 3] != 123.0


def test_the_mapping_goes_when_the_rows_go(tmp_path):
    write_family(tmp_path / "zoo", ["a", "b"])
    file = str(tmp_path / "zoo/a/model.safetensors")

    def mapped() -> bool:
        with open("/proc/self/maps") as maps:
            return any(line.rstrip().endswith(file) for line in maps)

    zoo = read_zoo(tmp_path / "zoo")
    row = zoo.weights[0]
    del zoo
    gc.collect()
    assert mapped() and row.abs().sum() > 0  # a row still held keeps the mapping
    del row
    gc.collect()
    assert not mapped()


def test_nan_rows_are_left_out_and_the_rest_still_served(tmp_path):
    from safetensors.torch import load_file, save_file

    write_family(tmp_path / "zoo", ["a", "b", "c"])
    path = tmp_path / "zoo/b/model.safetensors"
    tensors = load_file(str(path))
    tensors[next(iter(tensors))][0] = float("nan")
    save_file(tensors, str(path), metadata={"format": "pt"})
    zoo = read_zoo(tmp_path / "zoo")
    assert list(zoo.metadata["model"]) == ["a", "c"] and "served" in zoo.extra
    assert "NaN" in zoo.extra["skipped"]["b"]
    assert torch.equal(zoo.weights[1], read_zoo(tmp_path / "zoo/c").weights[0])
    assert read_zoo(tmp_path / "zoo", check_finite=False).n_checkpoints == 3


def test_rows_in_epoch_order_are_mapped_again_not_gathered(tmp_path):
    write_family(tmp_path / "zoo", ["checkpoint-500", "checkpoint-50", "checkpoint-1000"])
    zoo = read_zoo(tmp_path / "zoo")
    assert list(zoo.metadata["model"]) == ["checkpoint-50", "checkpoint-500", "checkpoint-1000"]
    assert not zoo.weights.is_contiguous()  # not a gathered copy
    for i, name in enumerate(zoo.metadata["model"]):
        assert zoo.extra["served"]["files"][i].endswith(f"{name}/model.safetensors")
        assert torch.equal(zoo.weights[i], read_zoo(tmp_path / "zoo" / name).weights[0])


def test_files_of_other_layouts_are_read_as_before(tmp_path):
    write_family(tmp_path / "half", ["a", "b"], dtype=torch.float16)  # upcast: not the rows' bytes
    zoo = read_zoo(tmp_path / "half")
    assert "served" not in zoo.extra and zoo.weights.is_contiguous() and zoo.n_checkpoints == 2
    write_family(tmp_path / "mixed", ["a", "b"])
    other = read_zoo(tmp_path / "half/a")
    other_file = tmp_path / "half/a/model.safetensors"
    (tmp_path / "mixed/b/model.safetensors").write_bytes(other_file.read_bytes())
    assert "served" not in read_zoo(tmp_path / "mixed").extra
    assert torch.equal(read_zoo(tmp_path / "mixed").weights[1], other.weights[0])
    assert stitch([tmp_path / "missing"], 8, 4) is None


def test_small_rows_are_copied(tmp_path, monkeypatch):
    write_family(tmp_path / "zoo", ["a", "b"])
    monkeypatch.setattr(served, "SERVE_ABOVE", 2**20)
    zoo = read_zoo(tmp_path / "zoo")
    assert "served" not in zoo.extra and zoo.weights.is_contiguous()
    monkeypatch.setattr(served, "SERVE_ABOVE", 0)
    served_zoo = read_zoo(tmp_path / "zoo")
    assert "served" in served_zoo.extra and served_zoo.arch.spec["order"] != [p.name for p in zoo.arch.layout]
    for i in range(2):  # the same tensors, laid out in two orders
        copied, mapped = zoo.arch.unflatten(zoo.weights[i]), served_zoo.arch.unflatten(served_zoo.weights[i])
        assert copied.keys() == mapped.keys() and all(torch.equal(copied[k], mapped[k]) for k in copied)


def test_reopened_from_the_store_maps_the_files_again(tmp_path, monkeypatch):
    monkeypatch.setenv("WSLVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(opened, "STORE_ABOVE", 0)
    write_family(tmp_path / "zoo", ["a", "b"])
    first = wv.load_zoo(tmp_path / "zoo")
    (store,) = (tmp_path / "cache/opened").iterdir()
    assert not (store / "weights.safetensors").exists()  # nothing copied

    def no_reading(*args, **kwargs):
        raise AssertionError("a checkpoint was read")

    with monkeypatch.context() as m:
        m.setattr(opened, "read_zoo", no_reading)
        again = wv.load_zoo(tmp_path / "zoo")
    assert torch.equal(again.weights, first.weights) and again.arch == first.arch
    assert again.extra == first.extra and again.metadata.equals(first.metadata)
    write_family(tmp_path / "zoo", ["a", "b", "c"])  # changed: read again
    assert wv.load_zoo(tmp_path / "zoo").n_checkpoints == 3
