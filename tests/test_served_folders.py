"""Folders of safetensors checkpoints without a ``config.json`` served in place (wslviz.formats.served): the
architecture the first file gives (a recognised family, a weights-only layout) laid out in the files' order, the
int64 counters that ``safetensors`` writes before the weights left outside the rows; files that do not allow it are
read as before, with the same values."""

from __future__ import annotations

import json
import struct
import sys

import pytest
import torch
from safetensors.torch import save_file

from wslviz.core.evaluation import model_outputs
from wslviz.core.published import TorchvisionResNet
from wslviz.formats import read_zoo, served
from wslviz.formats.served import float_rows

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="served rows are mapped on Linux")


def resnets(folder, n, prefix="", seed=0):
    """``n`` quarter-width torchvision ResNet-18s (0.83M parameters, above the size served) saved by
    ``safetensors`` with their ``num_batches_tracked`` counters, each key under ``prefix``."""
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    net = TorchvisionResNet(18, width=0.25)
    states = []
    for i in range(n):
        state = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v + i
                 for k, v in net.state_dict().items()}
        save_file({prefix + k: v.contiguous() for k, v in state.items()}, folder / f"net{i}.safetensors")
        states.append(state)
    return states


def copied(folder, monkeypatch):
    """The same folder read file by file into a matrix (nothing served)."""
    with monkeypatch.context() as m:
        m.setattr(served, "SERVE_ABOVE", 2**40)
        zoo = read_zoo(folder)
    assert "served" not in zoo.extra
    return zoo


def test_resnets_saved_with_safetensors_are_served_their_counters_left_out(tmp_path, monkeypatch):
    states = resnets(tmp_path / "zoo", 3, prefix="module.")
    zoo = read_zoo(tmp_path / "zoo")
    assert zoo.extra["served"]["files"] == [str(tmp_path / "zoo" / f"net{i}.safetensors") for i in range(3)]
    assert zoo.extra["notes"]["read in place: rows mapped from the files, no copy"] == 3
    assert zoo.arch.spec["builtin"] == "resnet_torchvision" and not zoo.weights.is_contiguous()
    start, tensors = float_rows(tmp_path / "zoo/net0.safetensors")
    assert [p.name for p in zoo.arch.layout] == [name.removeprefix("module.") for name, _ in tensors]
    assert not any("num_batches_tracked" in p.name for p in zoo.arch.layout)
    for i, state in enumerate(states):  # every weight and running statistic is the file's, bit for bit
        got = zoo.arch.unflatten(zoo.weights[i])
        assert got.keys() == {k for k in state if not k.endswith("num_batches_tracked")}
        assert all(torch.equal(got[k], state[k]) for k in got)
    plain = copied(tmp_path / "zoo", monkeypatch)
    assert plain.arch.describe() == zoo.arch.describe()
    x = zoo.arch.probe_inputs(4)
    torch.testing.assert_close(model_outputs(zoo.arch, zoo.weights, x), model_outputs(plain.arch, plain.weights, x),
                               rtol=1e-5, atol=1e-5)


def test_tensors_of_no_known_network_are_served_as_a_weights_only_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(served, "SERVE_ABOVE", 0)
    gen = torch.Generator().manual_seed(0)
    shapes = {"blocks.0.attn.qkv.weight": (48, 16), "blocks.0.attn.qkv.bias": (48,),
              "blocks.0.mlp.fc1.weight": (64, 16), "blocks.0.norm1.weight": (16,), "pos_embed": (1, 5, 16),
              "cls_token": (1, 1, 16)}
    (tmp_path / "zoo").mkdir()
    states = []
    for i in range(3):
        states.append({k: torch.randn(s, generator=gen) for k, s in shapes.items()})
        save_file({"model." + k: v for k, v in states[-1].items()}, tmp_path / "zoo" / f"vit{i}.safetensors")
    zoo = read_zoo(tmp_path / "zoo")
    assert "served" in zoo.extra and zoo.arch.spec["kind"] == "weights-only"
    _, tensors = float_rows(tmp_path / "zoo/vit0.safetensors")
    assert [p.name for p in zoo.arch.layout] == [name.removeprefix("model.") for name, _ in tensors]
    for i, state in enumerate(states):
        got = zoo.arch.unflatten(zoo.weights[i])
        assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    plain = copied(tmp_path / "zoo", monkeypatch)
    for i in range(3):  # the same tensors, laid out in two orders
        a, b = zoo.arch.unflatten(zoo.weights[i]), plain.arch.unflatten(plain.weights[i])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_sequential_stack_keeps_its_order_and_is_read(tmp_path, monkeypatch):
    """``safetensors`` writes ``0.bias`` before ``0.weight``: an MLP's layout is not the files' order, and a
    sequential architecture takes no other, so the files are copied."""
    monkeypatch.setattr(served, "SERVE_ABOVE", 0)
    (tmp_path / "zoo").mkdir()
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    for i in range(2):
        save_file({k: v + i for k, v in net.state_dict().items()}, tmp_path / "zoo" / f"mlp{i}.safetensors")
    zoo = read_zoo(tmp_path / "zoo")
    assert "served" not in zoo.extra and zoo.arch.has_forward
    x = torch.randn(5, 8)
    with torch.no_grad():
        want = torch.stack([torch.func.functional_call(net, {k: v + i for k, v in net.state_dict().items()}, (x,))
                            for i in range(2)])
    torch.testing.assert_close(model_outputs(zoo.arch, zoo.weights, x), want, rtol=1e-5, atol=1e-5)


def write_raw(path, entries, data):
    """A safetensors file with the header ``entries`` and the data region ``data``, written by hand."""
    header = json.dumps(entries).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def test_float_rows_finds_the_float32_run_or_refuses(tmp_path):
    ints, floats = torch.arange(3, dtype=torch.int64), torch.arange(6, dtype=torch.float32)
    write_raw(tmp_path / "counters_first.safetensors",
              {"n": {"dtype": "I64", "shape": [3], "data_offsets": [0, 24]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [40, 48]},
               "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [24, 40]}},
              ints.numpy().tobytes() + floats.numpy().tobytes())
    header = len(json.dumps({"n": {"dtype": "I64", "shape": [3], "data_offsets": [0, 24]},
                             "b": {"dtype": "F32", "shape": [2], "data_offsets": [40, 48]},
                             "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [24, 40]}}).encode())
    assert float_rows(tmp_path / "counters_first.safetensors") == (8 + header + 24, [("a", (2, 2)), ("b", (2,))])
    write_raw(tmp_path / "between.safetensors",  # an int64 tensor between two float32 ones: no single run
              {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "n": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]},
               "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}, bytes(24))
    write_raw(tmp_path / "overlap.safetensors",  # two tensors on the same bytes
              {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "n": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8))
    write_raw(tmp_path / "short.safetensors", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8))
    write_raw(tmp_path / "half.safetensors", {"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 8]}}, bytes(8))
    write_raw(tmp_path / "odd.safetensors", {"a": {"dtype": "F32", "shape": [2], "data_offsets": "0-8"}}, bytes(8))
    for name in ("between", "overlap", "short", "half", "odd"):
        assert float_rows(tmp_path / f"{name}.safetensors") is None, name


def test_interleaved_files_are_read_with_the_same_values(tmp_path, monkeypatch):
    monkeypatch.setattr(served, "SERVE_ABOVE", 0)
    (tmp_path / "zoo").mkdir()
    for i in range(2):
        a, b = torch.full((2, 3), float(i)), torch.arange(4, dtype=torch.float32) + i
        write_raw(tmp_path / "zoo" / f"m{i}.safetensors",
                  {"x.weight": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                   "x.steps": {"dtype": "I64", "shape": [1], "data_offsets": [24, 32]},
                   "y.weight": {"dtype": "F32", "shape": [4], "data_offsets": [32, 48]}},
                  a.numpy().tobytes() + torch.tensor([7]).numpy().tobytes() + b.numpy().tobytes())
    zoo = read_zoo(tmp_path / "zoo")
    assert "served" not in zoo.extra
    for i in range(2):
        got = zoo.arch.unflatten(zoo.weights[i])
        assert torch.equal(got["x.weight"], torch.full((2, 3), float(i)))
        assert torch.equal(got["y.weight"], torch.arange(4, dtype=torch.float32) + i)


def test_a_model_folder_whose_config_builds_nothing_is_served_from_its_tensors(tmp_path):
    """timm writes ``config.json`` (its own, no ``model_type``) beside ``model.safetensors``."""
    for i, name in enumerate(("a", "b")):
        folder = tmp_path / "zoo" / name
        resnets(folder, 1, seed=i)
        (folder / "net0.safetensors").rename(folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps({"architecture": "resnet18", "num_classes": 1000}))
    zoo = read_zoo(tmp_path / "zoo")
    assert zoo.format == "huggingface" and zoo.arch.spec["builtin"] == "resnet_torchvision"
    assert zoo.extra["served"]["files"] == [str(tmp_path / "zoo" / n / "model.safetensors") for n in "ab"]
    assert zoo.n_checkpoints == 2 and not zoo.weights.is_contiguous()
