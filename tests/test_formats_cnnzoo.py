"""Small CNN Zoo (Unterthiner et al. 2020): metadata, TF -> PyTorch layouts, exact functions."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_formats import cnnzoo_forward, write_cnnzoo

import wslviz as wv
from wslviz.core.evaluation import evaluate, model_outputs
from wslviz.formats import ZooFormatError, detect_format

CONFIG_COLUMNS = ["config.activation", "config.b_init", "config.dropout", "config.init_std", "config.l2reg",
                  "config.learning_rate", "config.optimizer", "config.random_seed", "config.train_fraction",
                  "config.w_init"]


def test_metadata_and_architecture(tmp_path):
    write_cnnzoo(tmp_path / "mnist", n_models=3, steps=(0, 100))
    assert detect_format(tmp_path / "mnist") == "cnnzoo"
    calls = []
    zoo = wv.load_zoo(tmp_path / "mnist", progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6)
    m = zoo.metadata
    assert zoo.weights.shape == (6, 4970) and zoo.task is None
    for col in ["test_accuracy", "step", "modeldir", "train_accuracy", *CONFIG_COLUMNS]:
        assert col in m, col
    assert list(m["model_id"]) == [0, 0, 1, 1, 2, 2] and list(m["epoch"]) == [0, 100] * 3
    np.testing.assert_allclose(m["test_acc"], m["test_accuracy"])
    np.testing.assert_allclose(m["ggap"], m["train_accuracy"] - m["test_accuracy"])
    assert list(m["seed"]) == [100, 100, 101, 101, 102, 102]
    assert zoo.arch.input_shape == (1, 28, 28)
    convs = [layer for layer in zoo.arch.layers if layer["type"] == "conv2d"]
    assert [(c["out_channels"], c["kernel_size"], c["stride"], c["padding"]) for c in convs] == [(16, 3, 2, 0)] * 3
    assert [layer["type"] for layer in zoo.arch.layers][-2:] == ["global_avg_pool", "linear"]


def test_function_equals_tensorflow_arithmetic(tmp_path):
    params = write_cnnzoo(tmp_path / "zoo", n_models=2, steps=(0, 5), activations=("tanh",), gz=False)
    zoo = wv.load_zoo(tmp_path / "zoo")
    x = np.random.default_rng(1).random((4, 28, 28, 1)).astype(np.float32)  # NHWC, as TensorFlow feeds it
    ours = model_outputs(zoo.arch, zoo.weights, torch.from_numpy(x).permute(0, 3, 1, 2)).double().numpy()
    for row, p in enumerate(params):
        np.testing.assert_allclose(ours[row], cnnzoo_forward(p, x, "tanh"), rtol=1e-4, atol=1e-5)
    # the conversion moves values, never changes them
    flat = np.load(tmp_path / "zoo" / "weights.npy")
    np.testing.assert_array_equal(np.sort(flat, axis=1), np.sort(zoo.weights.numpy(), axis=1))


def test_weights_only_zoo_takes_npz_data(tmp_path):
    params = write_cnnzoo(tmp_path / "zoo", n_models=2, steps=(0,))
    zoo = wv.load_zoo(tmp_path / "zoo")
    rng = np.random.default_rng(2)
    x = rng.random((40, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    with_data = zoo.with_task(str(tmp_path / "data.npz"))
    result = evaluate(with_data.arch, with_data.task, with_data.weights)
    xt, yt = with_data.task.x_test.numpy(), with_data.task.y_test.numpy()
    for row, p in enumerate(params):
        logits = cnnzoo_forward(p, xt.transpose(0, 2, 3, 1), "relu")
        assert result["accuracy"][row].item() == pytest.approx((logits.argmax(1) == yt).mean())


def test_mixed_activations_and_cifar_size(tmp_path):
    write_cnnzoo(tmp_path / "cifar10_gs", n_models=3, steps=(0,), activations=("relu", "tanh"))
    with pytest.warns(UserWarning, match="mixes activations"):
        zoo = wv.load_zoo(tmp_path / "cifar10_gs")
    assert zoo.arch.activations == ["relu"] and len(zoo.metadata) == 2
    assert zoo.arch.input_shape == (1, 32, 32)
    assert len(wv.load_zoo(tmp_path / "cifar10_gs", activation="tanh").metadata) == 1


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_metrics(path, fn):
    with gzip.open(path / "metrics.csv.gz", "rt") as f:
        df = pd.read_csv(f)
    df = fn(df)
    with gzip.open(path / "metrics.csv.gz", "wt") as f:
        df.to_csv(f, index=False)


def test_malformed_inputs(tmp_path):
    root = tmp_path / "zoo"
    write_cnnzoo(root, n_models=2, steps=(0, 10))

    bad = _copy(root, tmp_path / "short")
    np.save(bad / "weights.npy", np.load(bad / "weights.npy")[:, :4000])
    with pytest.raises(ZooFormatError, match="layout covers 4970 columns, weights.npy rows have 4000"):
        wv.load_zoo(bad)

    bad = _copy(root, tmp_path / "ints")
    np.save(bad / "weights.npy", np.zeros((4, 4970), dtype=np.int32))
    with pytest.raises(ZooFormatError, match="2-D float array") as e:
        wv.load_zoo(bad)
    assert e.value.path.endswith("weights.npy")

    bad = _copy(root, tmp_path / "nan")
    w = np.load(bad / "weights.npy")
    w[3, 100] = np.inf
    np.save(bad / "weights.npy", w)
    with pytest.raises(ZooFormatError, match="NaN/Inf") as e:
        wv.load_zoo(bad)
    assert e.value.path.endswith("weights.npy row 3")

    bad = _copy(root, tmp_path / "rows")
    _edit_metrics(bad, lambda df: df.iloc[:3])
    with pytest.raises(ZooFormatError, match="3 rows, but weights.npy has 4"):
        wv.load_zoo(bad)

    bad = _copy(root, tmp_path / "dup")
    _edit_metrics(bad, lambda df: df.assign(step=[0, 0, 0, 10]))
    with pytest.raises(ZooFormatError, match="appears twice"):
        wv.load_zoo(bad)

    bad = _copy(root, tmp_path / "acc")
    _edit_metrics(bad, lambda df: df.assign(test_accuracy=["0.1", "high", "0.2", "0.3"]))
    with pytest.raises(ZooFormatError, match="'high' is not a number"):
        wv.load_zoo(bad)

    bad = _copy(root, tmp_path / "layout")
    lay = pd.read_csv(bad / "layout.csv")
    lay.loc[1, "shape"] = "(3, 3, 2, 16)"
    lay.to_csv(bad / "layout.csv", index=False)
    with pytest.raises(ZooFormatError, match="does not match the range"):
        wv.load_zoo(bad)

    bad = _copy(root, tmp_path / "trunc")
    data = (bad / "weights.npy").read_bytes()
    (bad / "weights.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(ZooFormatError, match="weights.npy"):
        wv.load_zoo(bad)
