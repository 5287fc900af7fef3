"""p-diff checkpoint folders, plain folders of checkpoints, Hugging Face folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_formats import mlp_forward, mlp_state_dict, write_folder, write_hf, write_pdiff

import wslviz as wv
from wslviz.core.evaluation import model_outputs
from wslviz.formats import READERS, ZooFormatError, detect_format


def _check_functions(zoo, state_dicts, n_in):
    x = torch.randn(9, n_in)
    ours = model_outputs(zoo.arch, zoo.weights, x).double()
    for row, sd in enumerate(state_dicts):
        torch.testing.assert_close(ours[row], mlp_forward(sd, x), rtol=1e-5, atol=1e-5)


def test_pdiff_names_carry_accuracy_and_seed(tmp_path):
    written = write_pdiff(tmp_path / "pdiff", n=3)
    assert detect_format(tmp_path / "pdiff") == "pdiff"
    assert detect_format(tmp_path / "pdiff" / "checkpoint") == "pdiff"
    zoo = wv.load_zoo(tmp_path / "pdiff")
    m = zoo.metadata
    assert list(m["model_id"]) == [0, 1, 2] and list(m["tag"]) == ["resnet18"] * 3
    assert list(m["test_acc"]) == [acc for acc, _, _ in written]
    assert list(m["seed"]) == [s for _, s, _ in written]
    _check_functions(zoo, [sd for _, _, sd in written], 2)


def test_pdiff_duplicate_index(tmp_path):
    write_pdiff(tmp_path / "p", n=2)
    f = next((tmp_path / "p" / "checkpoint").iterdir())
    shutil.copy(f, f.parent / "0001_acc0.5000_seed0001_other.pth")
    shutil.copy(f, f.parent / "0001_acc0.5100_seed0002_other.pth")
    with pytest.raises(ZooFormatError, match="index 1 is used twice"):
        wv.load_zoo(tmp_path / "p")


@pytest.mark.parametrize("metadata", ["csv", "json", None])
def test_folder_of_mixed_suffixes_with_metadata(tmp_path, metadata):
    written = write_folder(tmp_path / "f", metadata=metadata)
    assert detect_format(tmp_path / "f") == "folder"
    zoo = wv.load_zoo(tmp_path / "f")
    m = zoo.metadata
    assert list(m["file"]) == sorted(written)
    if metadata:  # the csv is written in reverse order: rows must follow the files, not the csv
        assert list(m["test_acc"]) == [0.5, 0.6, 0.7, 0.8]
    else:
        # model_0.pt reads as key_value "model=0"; every folder zoo records file size and modification time
        assert list(m.columns) == ["model_id", "file", "model", "file_size", "modified"]
        assert list(m["model"]) == [0, 1, 2, 3] and (m["file_size"] > 0).all()
    _check_functions(zoo, [written[f] for f in m["file"]], 2)


def test_folder_malformed(tmp_path):
    root = tmp_path / "f"
    write_folder(root)

    bad = tmp_path / "unknown"
    shutil.copytree(root, bad)
    df = pd.read_csv(bad / "metadata.csv")
    df.loc[0, "file"] = "nope.pt"
    df.to_csv(bad / "metadata.csv", index=False)
    with pytest.raises(ZooFormatError, match="nope.pt"):
        wv.load_zoo(bad)

    bad = tmp_path / "dupmeta"
    shutil.copytree(root, bad)
    df = pd.read_csv(bad / "metadata.csv")
    df.loc[0, "file"] = df.loc[1, "file"]
    df.to_csv(bad / "metadata.csv", index=False)
    with pytest.raises(ZooFormatError, match="more than one row"):
        wv.load_zoo(bad)

    bad = tmp_path / "mixed"  # another architecture: a group of its own, the larger group opens
    shutil.copytree(root, bad)
    torch.save(mlp_state_dict(torch.Generator().manual_seed(0), widths=(2, 8, 3)), bad / "model_2.pth")
    zoo = wv.load_zoo(bad)
    assert list(zoo.metadata["file"]) == ["model_0.safetensors", "model_1.pt", "model_3.bin"]
    assert [(g["files"], g["example"]) for g in zoo.extra["groups"]] == [(3, "model_0.safetensors"), (1, "model_2.pth")]
    assert list(wv.load_zoo(bad, group=1).metadata["file"]) == ["model_2.pth"]
    with pytest.raises(ZooFormatError, match="group 2 does not exist"):
        wv.load_zoo(bad, group=2)

    bad = tmp_path / "dtype"  # an integer tensor is not a weight: left out (noted), so another signature
    shutil.copytree(root, bad)
    sd = torch.load(bad / "model_1.pt", weights_only=True)
    sd["net.0.weight"] = sd["net.0.weight"].to(torch.int64)
    torch.save(sd, bad / "model_1.pt")
    zoo = wv.load_zoo(bad)
    assert "model_1.pt" not in list(zoo.metadata["file"]) and len(zoo.extra["groups"]) == 2
    assert zoo.extra["notes"] == {"integer tensors are not weights (net.0.weight)": 1}

    bad = tmp_path / "unusable"  # files that cannot be read are listed with the reason; the rest opens
    shutil.copytree(root, bad)
    torch.save([torch.zeros(3)], bad / "model_1.pt")
    data = (bad / "model_0.safetensors").read_bytes()
    (bad / "model_0.safetensors").write_bytes(data[:-7])
    sd = torch.load(bad / "model_2.pth", weights_only=True)
    sd["net.2.bias"][0] = float("-inf")
    torch.save(sd, bad / "model_2.pth")
    zoo = wv.load_zoo(bad)
    assert list(zoo.metadata["file"]) == ["model_3.bin"]
    skipped = zoo.extra["skipped"]
    assert set(skipped) == {"model_0.safetensors", "model_1.pt", "model_2.pth"}
    assert "safetensors" in skipped["model_0.safetensors"] and "expected a state dict" in skipped["model_1.pt"]
    assert "NaN/Inf" in skipped["model_2.pth"]
    assert wv.load_zoo(bad, check_finite=False).weights.isinf().sum() == 1
    (bad / "model_3.bin").write_bytes(b"junk")
    with pytest.raises(ZooFormatError, match="none of the 4 checkpoint file"):
        wv.load_zoo(bad)


def test_folder_wrapped_state_dict_and_cnn_input_shape(tmp_path):
    gen = torch.Generator().manual_seed(0)
    (tmp_path / "w").mkdir()
    torch.save({"state_dict": mlp_state_dict(gen)}, tmp_path / "w" / "a.pt")
    assert wv.load_zoo(tmp_path / "w").n_params == 2 * 16 + 16 + 16 * 3 + 3
    (tmp_path / "c").mkdir()
    torch.save({"0.weight": torch.randn(4, 1, 3, 3), "0.bias": torch.zeros(4), "2.weight": torch.randn(3, 4),
                "2.bias": torch.zeros(3)}, tmp_path / "c" / "cnn.pt")
    guessed = wv.load_zoo(tmp_path / "c")  # the image size is not recorded: assumed, and said so
    assert guessed.arch.input_shape == (1, 28, 28) and "input_shape" in guessed.arch.assumed
    zoo = wv.load_zoo(tmp_path / "c", input_shape=[1, 8, 8])
    assert [layer["type"] for layer in zoo.arch.layers] == ["conv2d", "relu", "global_avg_pool", "linear"]
    assert "input_shape" not in zoo.arch.assumed


@pytest.mark.parametrize("sharded", [False, True])
def test_huggingface_single_and_sharded(tmp_path, sharded):
    sd = write_hf(tmp_path / "hf", sharded=sharded)
    assert detect_format(tmp_path / "hf") == "huggingface"
    zoo = wv.load_zoo(tmp_path / "hf")
    assert zoo.n_checkpoints == 1 and list(zoo.metadata["model"]) == ["hf"]
    _check_functions(zoo, [sd], 4)


def test_huggingface_folder_of_models_and_bad_index(tmp_path):
    sds = [write_hf(tmp_path / "many" / f"m{i}", sharded=bool(i % 2), seed=i) for i in range(3)]
    zoo = wv.load_zoo(tmp_path / "many")
    assert list(zoo.metadata["model"]) == ["m0", "m1", "m2"]
    _check_functions(zoo, sds, 4)

    index = json.loads((tmp_path / "many" / "m1" / "model.safetensors.index.json").read_text())
    index["weight_map"]["classifier.0.weight"] = "../m0/model.safetensors"
    (tmp_path / "many" / "m1" / "model.safetensors.index.json").write_text(json.dumps(index))
    zoo = wv.load_zoo(tmp_path / "many")  # the bad model is listed with the reason, the others open
    assert list(zoo.metadata["model"]) == ["m0", "m2"]
    assert "must be a file name in this folder" in zoo.extra["skipped"]["m1"]
    (tmp_path / "many" / "m1" / "model-00002-of-00002.safetensors").unlink()
    index["weight_map"]["classifier.0.weight"] = "model-00001-of-00002.safetensors"
    (tmp_path / "many" / "m1" / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "missing shard" in wv.load_zoo(tmp_path / "many").extra["skipped"]["m1"]


def test_registry_order_and_unknown(tmp_path):
    assert list(READERS)[0] == "native" and list(READERS)[-1] == "folder"
    assert {"modelzoos", "cnnzoo", "inr", "pdiff", "folder", "huggingface"} <= set(READERS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooFormatError, match="not a zoo in any known layout"):
        wv.load_zoo(tmp_path / "empty")
    with pytest.raises(ZooFormatError, match="unknown zoo format"):
        wv.load_zoo(tmp_path / "empty", format="nope")


@pytest.mark.parametrize("layout", ["folder", "pdiff", "huggingface"])
def test_progress_reaches_the_total(tmp_path, layout):
    {"folder": write_folder, "pdiff": write_pdiff, "huggingface": write_hf}[layout](tmp_path / "z")
    calls = []
    zoo = wv.load_zoo(tmp_path / "z", progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (zoo.n_checkpoints, zoo.n_checkpoints)


def test_metadata_model_id_groups_checkpoints(tmp_path):
    write_folder(tmp_path / "f", suffixes=(".pt", ".pth", ".bin"), metadata=None)
    pd.DataFrame({"file": ["model_0.pt", "model_1.pth", "model_2.bin"], "model_id": [7, 7, 9],
                  "epoch": [0, 1, 0]}).to_csv(tmp_path / "f" / "metadata.csv", index=False)
    zoo = wv.load_zoo(tmp_path / "f")
    assert list(zoo.metadata.columns[:2]) == ["model_id", "file"]
    assert list(zoo.metadata["model_id"]) == [7, 7, 9] and zoo.n_models == 2
    assert list(zoo.final_index()) == [1, 2]


def test_checkpoints_are_recognised_by_content_whatever_their_names(tmp_path):
    """``resnet20-12fca82f.th``, ``final.1.0.3.v2``, no suffix, a legacy (pre-zip) torch file, safetensors under
    another suffix: all open; a notes file beside them is not a checkpoint; a folder of none says what it found."""
    from safetensors.torch import save_file

    from wslviz.formats.safeio import sniff

    nets = [torch.nn.Linear(4, 2) for _ in range(5)]
    torch.save(nets[0].state_dict(), tmp_path / "resnet20-12fca82f.th")
    torch.save(nets[1].state_dict(), tmp_path / "final.1.0.3.v2")
    torch.save(nets[2].state_dict(), tmp_path / "model")
    torch.save(nets[3].state_dict(), tmp_path / "legacy.tar1", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in nets[4].state_dict().items()}, tmp_path / "weights.st")
    (tmp_path / "notes.txt").write_text("trained on Tuesday")
    assert [sniff(tmp_path / n) for n in ("resnet20-12fca82f.th", "legacy.tar1", "weights.st", "notes.txt")] == \
        ["torch", "torch-legacy", "safetensors", None]
    zoo = wv.load_zoo(tmp_path, cache=False)
    assert zoo.n_checkpoints == 5 and "notes.txt" not in set(zoo.metadata["file"])
    by_file = dict(zip(zoo.metadata["file"], zoo.weights, strict=True))
    for name, net in zip(("resnet20-12fca82f.th", "final.1.0.3.v2", "model", "legacy.tar1", "weights.st"), nets,
                         strict=True):
        assert torch.equal(by_file[name], zoo.arch.flatten(net.state_dict(), by_order=True)), name
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.th").write_text("not a checkpoint")
    (bad / "b.json").write_text("{}")
    with pytest.raises(wv.ZooFormatError, match=r"2 file\(s\) \(1 \.th, 1 \.json\), none of them a checkpoint"):
        wv.load_zoo(bad, cache=False)


def test_other_nestings_and_the_numbers_saved_beside_the_weights(tmp_path):
    """The one mapping of tensors inside a checkpoint dict is its state dict (beside an optimizer's nested state);
    numbers saved beside it (step, epoch, best_prec1, noise_level) become metadata columns."""
    nets = [torch.nn.Linear(3, 2) for _ in range(3)]
    opt = torch.optim.Adam(nets[0].parameters())
    nets[0](torch.randn(4, 3)).sum().backward()
    opt.step()
    torch.save({"step": 500, "model_state": nets[0].state_dict(), "optimizer_state": opt.state_dict()},
               tmp_path / "a.pt")
    torch.save({"num_edges": 7, "noise_level": 0.1, "model_state_dict": nets[1].state_dict()}, tmp_path / "b.pt")
    torch.save({"epoch": 90, "best_prec1": torch.tensor(91.25), "arch": "resnet20", "state_dict": nets[2].state_dict()},
               tmp_path / "c.pt")
    zoo = wv.load_zoo(tmp_path, cache=False)
    meta = zoo.metadata.set_index("file")
    assert zoo.n_checkpoints == 3
    assert meta.loc["a.pt", "step"] == 500 and meta.loc["b.pt", "noise_level"] == 0.1
    assert meta.loc["c.pt", "best_prec1"] == pytest.approx(91.25) and meta.loc["c.pt", "arch"] == "resnet20"
    for name, net in zip(("a.pt", "b.pt", "c.pt"), nets, strict=True):
        row = int(np.flatnonzero(zoo.metadata["file"] == name)[0])
        assert torch.equal(zoo.weights[row], zoo.arch.flatten(net.state_dict(), by_order=True))


def test_whole_module_pickles_give_their_tensors_and_a_crafted_pickle_runs_nothing(tmp_path):
    """``torch.save(model)`` of a user's class (zip format) and a legacy file with its optimiser object open through
    inert stand-ins, named as the module names them, the GRU's duplicate flat weights once; pickles crafted to run
    code (os.system through __reduce__, eval, a class whose __setstate__ writes a file) run nothing beside them."""
    import os
    import pickle

    from fixtures_formats import write_pickled_modules

    nets = write_pickled_modules(tmp_path, n=2)
    marker = tmp_path / "MARKER"

    class System:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    class Eval:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w').write('x')",))

    torch.save({"w": torch.ones(3), "x": System()}, tmp_path / "crafted1.pt")
    torch.save({"state_dict": {"w": torch.ones(3)}, "y": Eval()}, tmp_path / "crafted2.pt",
               _use_new_zipfile_serialization=False)
    with open(tmp_path / "crafted3.pt", "wb") as f:  # a raw pickle (no torch framing) naming os.system
        pickle.dump(System(), f, protocol=2)
    zoo = wv.load_zoo(tmp_path, cache=False)
    assert not marker.exists()
    assert sorted(zoo.metadata["file"]) == ["model0.pt", "model1.pt", "model2.pt"]
    names = [p.name for p in zoo.arch.layout]
    assert names == list(nets[0].state_dict())  # i2h.weight_ih_l0 ... head.bias, each once
    for i, net in enumerate(nets):
        row = int(np.flatnonzero(zoo.metadata["file"] == f"model{i}.pt")[0])
        torch.testing.assert_close(zoo.weights[row], torch.cat([t.reshape(-1) for t in net.state_dict().values()]))
    assert zoo.metadata.set_index("file").loc["model2.pt", "epoch"] == 4  # saved beside the module
    assert any("inert stand-ins" in note and "PickledNet" in note for note in zoo.extra["notes"])


def test_quantized_networks_read_as_their_dequantized_weights(tmp_path):
    """``torch.ao`` quantized state dicts (packed linear pairs, int8 conv weights, scales and zero points) open as
    the float network they quantize, each weight equal to its dequantized int8 values; nothing is dropped."""
    import warnings

    torch.manual_seed(0)
    nets = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated, and still what people saved with
        for seed in range(3):
            net = torch.ao.quantization.quantize_dynamic(
                torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)),
                {torch.nn.Linear}, dtype=torch.qint8)
            torch.save(net.state_dict(), tmp_path / f"seed={seed}.pt")
            nets.append(net)
    zoo = wv.load_zoo(tmp_path)
    assert zoo.arch.describe().startswith("MLP 4-8-2") and zoo.n_models == 3
    assert any("dequantized: 0, 2" in note for note in zoo.extra["notes"])
    seeds = zoo.metadata["seed"].to_numpy()
    for row, seed in enumerate(seeds):
        expected = {}
        for layer in (0, 2):
            weight, bias = nets[seed][layer]._packed_params._weight_bias()
            expected |= {f"{layer}.weight": weight.dequantize(), f"{layer}.bias": bias.detach()}
        assert torch.equal(zoo.weights[row], zoo.arch.flatten(expected, by_order=True))
