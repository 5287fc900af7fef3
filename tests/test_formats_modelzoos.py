"""Model Zoos (Schürholt et al. 2022) raw Ray Tune layout: metadata, architectures, exact functions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from fixtures_formats import edit_state_dict, modelzoos_forward, write_modelzoos

import wslviz as wv
from wslviz.core.evaluation import model_outputs
from wslviz.formats import ZooFormatError, detect_format


def test_metadata_columns_epochs_and_ggap(tmp_path):
    write_modelzoos(tmp_path / "zoo", n_trials=2, epochs=(0, 1, 2))
    assert detect_format(tmp_path / "zoo") == "modelzoos"
    calls = []
    zoo = wv.load_zoo(tmp_path / "zoo", progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6)
    m = zoo.metadata
    assert zoo.weights.shape == (6, 2464) and zoo.arch.n_params == 2464
    assert zoo.task is None and zoo.format == "modelzoos"
    assert list(m["model_id"]) == [0, 0, 0, 1, 1, 1]
    assert list(m["epoch"]) == [0, 1, 2, 0, 1, 2]  # both folder spellings (checkpoint_000000, checkpoint_1)
    assert list(m["training_iteration"]) == [0, 1, 2, 0, 1, 2]
    assert list(m["seed"]) == [0, 0, 0, 1, 1, 1]
    assert list(m["optim::lr"]) == [1e-3] * 3 + [1e-4] * 3
    # epoch 0 is the untrained model: result.json has no line for it
    assert m.loc[m["epoch"] == 0, "test_acc"].isna().all()
    trained = m[m["epoch"] > 0]
    expected_test = [0.45 + 0.1 * e + 0.02 * t for t, e in zip(trained["model_id"], trained["epoch"], strict=True)]
    np.testing.assert_allclose(trained["test_acc"], expected_test)
    np.testing.assert_allclose(trained["ggap"], trained["train_acc"] - trained["test_acc"])
    np.testing.assert_allclose(trained["ggap"], [0.05 - 0.01 * t for t in trained["model_id"]])
    assert "time_this_iter_s" not in m and "config" not in m


@pytest.mark.parametrize("model_type,channels,size,n_params", [("CNN", 1, 28, 2464), ("CNN3", 3, 32, 10853)])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_functions_equal_the_original_module_list(tmp_path, model_type, channels, size, n_params, dropout):
    originals = write_modelzoos(tmp_path / "zoo", n_trials=1, epochs=(0, 1), model_type=model_type,
                                channels=channels, nlin="tanh", dropout=dropout)
    if dropout:  # the dropout layers shift the module_list indices: 0 conv, 1 pool, 2 act, 3 dropout, 4 conv
        keys = torch.load(next((tmp_path / "zoo").rglob("checkpoints")), weights_only=True)
        assert "module_list.4.weight" in keys and "module_list.3.weight" not in keys
    zoo = wv.load_zoo(tmp_path / "zoo")
    assert zoo.arch.n_params == n_params and zoo.arch.input_shape == (channels, size, size)
    x = torch.randn(5, channels, size, size)
    ours = model_outputs(zoo.arch, zoo.weights, x)
    for row, epoch in enumerate(zoo.metadata["epoch"]):
        torch.testing.assert_close(ours[row], modelzoos_forward(originals[(0, epoch)], x), rtol=1e-5, atol=1e-5)


def test_mixed_activations_keep_one_and_say_so(tmp_path):
    write_modelzoos(tmp_path / "zoo", n_trials=3, epochs=(0, 1), nlin=["relu", "tanh", "relu"])
    with pytest.warns(UserWarning, match="mixes activations"):
        zoo = wv.load_zoo(tmp_path / "zoo")
    assert zoo.arch.activations == ["relu"] and sorted(set(zoo.metadata["model_id"])) == [0, 2]
    tanh = wv.load_zoo(tmp_path / "zoo", activation="tanh")
    assert tanh.arch.activations == ["tanh"] and set(tanh.metadata["model_id"]) == {1}


def _trial(root):
    return sorted(p for p in root.iterdir() if p.is_dir())[0]


def test_malformed_inputs_name_file_and_problem(tmp_path):
    root = tmp_path / "zoo"
    write_modelzoos(root, n_trials=2, epochs=(0, 1))
    t = _trial(root)

    bad = tmp_path / "dup"
    shutil.copytree(root, bad)
    shutil.copytree(_trial(bad) / "checkpoint_1", _trial(bad) / "checkpoint_000001")
    with pytest.raises(ZooFormatError, match="epoch 1 appears twice"):
        wv.load_zoo(bad)

    bad = tmp_path / "resultjson"
    shutil.copytree(root, bad)
    (_trial(bad) / "result.json").write_text('{"training_iteration": 1}\n{not json\n')
    with pytest.raises(ZooFormatError, match="result.json: line 2 is not valid JSON"):
        wv.load_zoo(bad)

    bad = tmp_path / "resnet"
    shutil.copytree(root, bad)
    params = json.loads((t / "params.json").read_text())
    (_trial(bad) / "params.json").write_text(json.dumps({**params, "model::type": "Resnet18"}))
    with pytest.raises(ZooFormatError, match="Resnet18"):
        wv.load_zoo(bad)

    bad = tmp_path / "nan"
    shutil.copytree(root, bad)
    f = _trial(bad) / "checkpoint_1" / "checkpoints"
    edit_state_dict(f, lambda sd: sd["module_list.0.weight"][0, 0, 0, 0].fill_(float("nan")))
    with pytest.raises(ZooFormatError, match="NaN/Inf") as e:
        wv.load_zoo(bad)
    assert e.value.path == str(f)

    bad = tmp_path / "mixed"
    shutil.copytree(root, bad)
    f = sorted(bad.iterdir())[1] / "checkpoint_1" / "checkpoints"
    edit_state_dict(f, lambda sd: sd.update({"module_list.9.weight": torch.zeros(20, 37)}))
    with pytest.raises(ZooFormatError, match="mixed architectures") as e:
        wv.load_zoo(bad)
    assert e.value.path == str(f)

    bad = tmp_path / "empty"
    shutil.copytree(root, bad)
    (_trial(bad) / "checkpoint_1" / "checkpoints").write_bytes(b"")
    with pytest.raises(ZooFormatError, match="empty file"):
        wv.load_zoo(bad)


@pytest.mark.parametrize("value", ["1e309", "NaN", "1.5", '"3"'])
def test_training_iteration_must_be_an_integer(tmp_path, value):
    write_modelzoos(tmp_path / "zoo", n_trials=1, epochs=(0, 1))
    line = '{"training_iteration": ' + value + ', "test_acc": 0.5}\n'
    (_trial(tmp_path / "zoo") / "result.json").write_text(line)
    with pytest.raises(ZooFormatError, match="training_iteration .* is not an integer"):
        wv.load_zoo(tmp_path / "zoo")
