"""The native zoo format (save/load, memory mapping, every malformed case) and the Zoo object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_zoo
from safetensors.torch import save_file

from wslviz.core.tasks import make_task
from wslviz.core.zoo import METRICS, Zoo
from wslviz.formats import ZooFormatError, save_zoo
from wslviz.scale.cache import load_zoo


@pytest.fixture
def saved(tmp_path, random_mlp_zoo) -> Path:
    return save_zoo(random_mlp_zoo, tmp_path / "zoo")


def test_round_trip_is_bit_exact(saved, random_mlp_zoo):
    zoo = load_zoo(saved)
    assert torch.equal(zoo.weights, random_mlp_zoo.weights)
    assert zoo.weights.dtype == torch.float32
    assert zoo.arch == random_mlp_zoo.arch
    assert torch.equal(zoo.task.x_test, random_mlp_zoo.task.x_test)
    # float32 metric columns come back as float64 from the CSV, with the same float32 values
    pd.testing.assert_frame_equal(zoo.metadata.astype(random_mlp_zoo.metadata.dtypes), random_mlp_zoo.metadata,
                                  check_exact=True)
    assert zoo.name == "random" and zoo.path == saved and zoo.format == "native"
    assert zoo.fingerprint == load_zoo(saved).fingerprint
    assert sorted(p.name for p in saved.iterdir()) == ["metadata.csv", "weights.safetensors", "zoo.json"]


def test_cnn_round_trip_and_weights_only_zoo(tmp_path, random_cnn_zoo):
    zoo = load_zoo(save_zoo(random_cnn_zoo, tmp_path / "cnn"))
    assert torch.equal(zoo.weights, random_cnn_zoo.weights) and zoo.arch == random_cnn_zoo.arch
    bare = Zoo(name="bare", metadata=random_cnn_zoo.metadata, weights=random_cnn_zoo.weights, arch=zoo.arch)
    again = load_zoo(save_zoo(bare, tmp_path / "bare"))
    assert again.task is None and torch.equal(again.weights, bare.weights)


def test_weights_are_memory_mapped_copy_on_write(saved):
    zoo = load_zoo(saved)
    maps = Path("/proc/self/maps")
    if maps.exists():  # the tensor's memory lies in a mapping of the weights file
        ptr, target = zoo.weights.data_ptr(), str((saved / "weights.safetensors").resolve())
        regions = [line.split() for line in maps.read_text().splitlines() if line.endswith(target)]
        assert any(int(r[0].split("-")[0], 16) <= ptr < int(r[0].split("-")[1], 16) for r in regions)
    before = (saved / "weights.safetensors").read_bytes()
    zoo.weights[0, 0] += 1.0  # copy-on-write: the file never changes
    assert (saved / "weights.safetensors").read_bytes() == before
    assert not torch.equal(load_zoo(saved).weights[0], zoo.weights[0])


def test_refuses_to_overwrite(saved, random_mlp_zoo):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_zoo(random_mlp_zoo.subset([0, 1]), saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    save_zoo(random_mlp_zoo.subset([0, 1]), saved, overwrite=True)
    assert load_zoo(saved).n_checkpoints == 2
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_write_refuses_mismatched_rows(tmp_path, random_mlp_zoo):
    bad = Zoo(name="bad", metadata=random_mlp_zoo.metadata.iloc[:3], weights=random_mlp_zoo.weights,
              arch=random_mlp_zoo.arch)
    with pytest.raises(ValueError, match="3 metadata rows"):
        save_zoo(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def _edit_json(path: Path, **changes) -> None:
    info = json.loads((path / "zoo.json").read_text())
    info.update(changes)
    (path / "zoo.json").write_text(json.dumps(info))


def _write_weights(path: Path, tensors: dict) -> None:
    save_file(tensors, str(path / "weights.safetensors"))


def _break(kind: str, path: Path, n_params: int) -> str:
    """Damage a saved zoo in one way; return the file the error must name."""
    st = path / "weights.safetensors"
    if kind.startswith("missing "):
        (path / kind.split()[1]).unlink()
        return kind.split()[1]
    if kind == "bad json":
        (path / "zoo.json").write_text("{not json")
    elif kind == "wrong format":
        _edit_json(path, format="something-else")
    elif kind == "newer version":
        _edit_json(path, version=99)
    elif kind == "bad architecture":
        _edit_json(path, architecture={"input_shape": [2], "layers": [{"type": "softmax"}]})
    elif kind == "bad task":
        _edit_json(path, task={"name": "mnist"})
    elif kind == "wrong dtype":
        _write_weights(path, {"weights": torch.zeros(12, n_params, dtype=torch.float64)})
    elif kind == "wrong rank":
        _write_weights(path, {"weights": torch.zeros(12 * n_params)})
    elif kind == "wrong width":
        _write_weights(path, {"weights": torch.zeros(12, n_params + 1)})
    elif kind == "wrong name":
        _write_weights(path, {"w": torch.zeros(12, n_params)})
    elif kind == "truncated":
        st.write_bytes(st.read_bytes()[:-7])
    elif kind == "bad header length":
        st.write_bytes(b"\xff" * 8 + st.read_bytes()[8:])
    elif kind == "garbage header":
        data = st.read_bytes()
        st.write_bytes(data[:8] + b"\x00" * 16 + data[24:])
    elif kind == "tiny file":
        st.write_bytes(b"abc")
    elif kind == "row count":
        pd.read_csv(path / "metadata.csv").iloc[:-1].to_csv(path / "metadata.csv", index=False)
        return "metadata.csv"
    elif kind == "empty csv":
        (path / "metadata.csv").write_text("")
        return "metadata.csv"
    elif kind == "nan":
        w = torch.ones(12, n_params)
        w[3, 5], w[7, 0] = float("nan"), float("inf")
        _write_weights(path, {"weights": w})
    return "zoo.json" if kind in ("bad json", "wrong format", "newer version", "bad architecture",
                                  "bad task") else "weights.safetensors"


MALFORMED = {
    "missing zoo.json": "missing", "missing metadata.csv": "missing", "missing weights.safetensors": "missing",
    "bad json": "not valid JSON", "wrong format": "'format' must be", "newer version": "newer",
    "bad architecture": "bad architecture", "bad task": "bad task", "wrong dtype": "dtype F64",
    "wrong rank": "expected \\[n_checkpoints, n_params\\]", "wrong width": "parameters",
    "wrong name": "tensor named 'weights'", "truncated": "truncated", "bad header length": "bad header length",
    "garbage header": "unreadable header", "tiny file": "too short", "row count": "11 rows",
    "empty csv": "not a readable CSV", "nan": "2 checkpoints contain NaN/Inf",
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_zoo_names_file_and_problem(saved, random_mlp_zoo, kind):
    file = _break(kind, saved, random_mlp_zoo.n_params)
    with pytest.raises(ZooFormatError, match=MALFORMED[kind]) as err:
        load_zoo(saved, format="native")
    assert err.value.path.endswith(file)


def test_nan_rows_listed_and_openable_on_request(saved, random_mlp_zoo):
    _break("nan", saved, random_mlp_zoo.n_params)
    with pytest.raises(ZooFormatError, match=r"rows \[3, 7\]"):
        load_zoo(saved)
    assert torch.isnan(load_zoo(saved, check_finite=False).weights[3, 5])


def test_not_a_zoo(tmp_path):
    with pytest.raises(ZooFormatError, match="no such file"):
        load_zoo(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooFormatError, match="not a zoo in any known layout"):
        load_zoo(tmp_path / "empty")
    with pytest.raises(ZooFormatError, match="unknown zoo format"):
        load_zoo(tmp_path / "empty", format="nope")


def test_subset_and_final_index(random_mlp_zoo):
    zoo = random_mlp_zoo  # 6 models x epochs (0, 1), rows ordered model-major
    final = zoo.final_index()
    assert final.tolist() == [1, 3, 5, 7, 9, 11]
    assert (zoo.metadata["epoch"].iloc[final] == 1).all()
    sub = zoo.subset(final)
    assert sub.n_checkpoints == 6 and sub.n_models == 6
    assert torch.equal(sub.weights, zoo.weights[final.tolist()])
    assert sub.metadata.index.tolist() == list(range(6))
    mask = (zoo.metadata["lr"] == 0.1).to_numpy()
    by_mask = zoo.subset(mask)
    assert by_mask.metadata["model_id"].tolist() == [1, 1, 3, 3, 5, 5]
    assert by_mask.final_index().tolist() == [1, 3, 5]
    # shuffled rows: the last epoch per model is still found, models in id order
    shuffled = zoo.subset(np.random.default_rng(0).permutation(zoo.n_checkpoints))
    fi = shuffled.final_index()
    assert shuffled.metadata["model_id"].iloc[fi].tolist() == list(range(6))
    assert (shuffled.metadata["epoch"].iloc[fi] == 1).all()


def test_fingerprint_is_stable_and_content_sensitive(random_mlp_zoo, mlp_arch, moons_task):
    same = random_zoo(mlp_arch, moons_task)
    assert same.fingerprint == random_mlp_zoo.fingerprint
    assert random_zoo(mlp_arch, moons_task, seed=1).fingerprint != random_mlp_zoo.fingerprint
    assert random_mlp_zoo.subset([0, 1]).fingerprint != random_mlp_zoo.fingerprint
    other_task = random_mlp_zoo.with_task({"name": "moons", "seed": 3})
    assert other_task.fingerprint != random_mlp_zoo.fingerprint


def test_with_task(tmp_path, random_mlp_zoo, random_cnn_zoo):
    bare = Zoo(name="bare", metadata=random_mlp_zoo.metadata, weights=random_mlp_zoo.weights,
               arch=random_mlp_zoo.arch)
    circles = bare.with_task("circles")
    assert circles.task.name == "circles"
    assert set(METRICS) <= set(circles.metadata.columns)
    assert np.allclose(circles.metadata["ggap"], circles.metadata["train_acc"] - circles.metadata["test_acc"])
    assert bare.with_task(make_task("circles"), metrics=False).metadata.columns.equals(bare.metadata.columns)
    with pytest.raises(ValueError, match="3 classes, the zoo's networks give 2 outputs"):
        bare.with_task(make_task("spirals"))
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(30, 2)), y=rng.integers(0, 2, 30))
    assert bare.with_task(str(tmp_path / "d.npz")).task.name == "npz"
    with pytest.raises(ValueError, match="expects \\[1, 8, 8\\]"):
        random_cnn_zoo.with_task("moons")


def test_summary_and_repr(random_mlp_zoo):
    s = random_mlp_zoo.summary()
    assert s["models"] == 6 and s["checkpoints"] == 12 and s["parameters"] == random_mlp_zoo.arch.n_params
    assert "final test accuracy" in s
    assert "6 models" in repr(random_mlp_zoo)
