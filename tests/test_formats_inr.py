"""INR zoos (DWSNets / NFN): SIREN state dicts below a root, labels from paths or splits.json."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from fixtures_formats import edit_state_dict, siren_forward, write_inr

import wslviz as wv
from wslviz.core.evaluation import model_outputs
from wslviz.formats import ZooFormatError, detect_format


def test_labels_from_paths_and_exact_siren(tmp_path):
    sds = write_inr(tmp_path / "inrs", labels=(3, 7, 3, 1))
    assert detect_format(tmp_path / "inrs") == "inr"
    zoo = wv.load_zoo(tmp_path / "inrs")
    assert zoo.arch.n_params == 2 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    assert [layer["w0"] for layer in zoo.arch.layers if layer["type"] == "sin"] == [30.0, 30.0]
    assert zoo.extra["output_offset"] == 0.5 and zoo.task is None
    m = zoo.metadata
    by_file = dict(zip(m["file"], zip(m["label"], m["split"], strict=True), strict=True))
    for rel in sds:
        label = int(rel.split("_")[3])
        split = "train" if "_training_" in rel else "test"
        assert by_file[rel] == (label, split)
    coords = torch.rand(50, 2) * 2 - 1
    ours = model_outputs(zoo.arch, zoo.weights, coords).double()
    for row, rel in enumerate(m["file"]):
        torch.testing.assert_close(ours[row], siren_forward(sds[rel], coords), rtol=1e-4, atol=1e-4)


def test_splits_json_overrides_labels(tmp_path):
    write_inr(tmp_path / "inrs", labels=(3, 7), splits=True)
    listing = json.loads((tmp_path / "inrs" / "splits.json").read_text())
    listing["train"]["label"] = ["three"]
    (tmp_path / "inrs" / "splits.json").write_text(json.dumps(listing))
    zoo = wv.load_zoo(tmp_path / "inrs", format="inr")
    row = zoo.metadata[zoo.metadata["split"] == "train"]
    assert list(row["label"]) == ["three"]


def test_malformed(tmp_path):
    root = tmp_path / "inrs"
    write_inr(root, labels=(3, 7), splits=True)

    bad = tmp_path / "missing"
    shutil.copytree(root, bad)
    listing = json.loads((bad / "splits.json").read_text())
    listing["test"]["path"].append("/elsewhere/mnist_png_testing_9_99/checkpoints/model_final.pth")
    listing["test"]["label"].append(9)
    (bad / "splits.json").write_text(json.dumps(listing))
    with pytest.raises(ZooFormatError, match="matches no single file") as e:
        wv.load_zoo(bad)
    assert e.value.path.endswith("splits.json")

    bad = tmp_path / "twice"
    shutil.copytree(root, bad)
    listing = json.loads((bad / "splits.json").read_text())
    listing["test"]["path"] += listing["train"]["path"]
    listing["test"]["label"] += listing["train"]["label"]
    (bad / "splits.json").write_text(json.dumps(listing))
    with pytest.raises(ZooFormatError, match="listed twice"):
        wv.load_zoo(bad)

    bad = tmp_path / "shape"
    shutil.copytree(root, bad)
    f = sorted(bad.rglob("*.pth"))[1]
    edit_state_dict(f, lambda sd: sd.update({"seq.1.weight": torch.zeros(32, 31)}))
    with pytest.raises(ZooFormatError, match="mixed architectures") as e:
        wv.load_zoo(bad)
    assert e.value.path == str(f)
