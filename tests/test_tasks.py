"""Tasks: deterministic data, disjoint splits, user .npz data and its errors, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wslviz.core.tasks import TaskError, make_task


@pytest.mark.parametrize("name", ["moons", "circles", "spirals", "digits"])
def test_builtin_tasks_are_deterministic_with_disjoint_splits(name):
    a, b = make_task(name), make_task({"name": name})
    for t in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, t), getattr(b, t))
    assert a.kind == "classification" and a.x_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    train = {tuple(r) for r in a.x_train.reshape(len(a.x_train), -1).tolist()}
    test = {tuple(r) for r in a.x_test.reshape(len(a.x_test), -1).tolist()}
    assert not train & test
    n = len(a.x_train) + len(a.x_test)
    assert len(a.x_test) == round(0.3 * n)
    assert a.n_classes == int(torch.cat([a.y_train, a.y_test]).max()) + 1


@pytest.mark.parametrize(("name", "rule"), [("modadd", lambda a, b: (a + b) % 7), ("tokenmax", max)])
def test_two_token_tasks_hold_every_problem_once_with_its_answer(name, rule):
    task = make_task({"name": name, "p": 7})
    x = torch.cat([task.x_train, task.x_test]).long()
    y = torch.cat([task.y_train, task.y_test])
    assert len(x) == 49 and len({tuple(r) for r in x.tolist()}) == 49 and (x[:, 2] == 7).all()  # "=" token
    assert all(int(t) == rule(int(a), int(b)) for (a, b, _), t in zip(x.tolist(), y, strict=True))
    assert len(task.x_test) in (24, 25) and task.n_classes == 7


def test_seed_changes_the_data_and_input_shapes():
    assert not torch.equal(make_task({"name": "moons", "seed": 1}).x_test, make_task("moons").x_test)
    digits = make_task("digits")
    assert digits.input_shape == (1, 8, 8) and len(digits.x_test) == round(0.3 * 1797)
    assert 0 <= float(digits.x_train.min()) and float(digits.x_train.max()) <= 1
    assert make_task("spirals").n_classes == 3 and make_task("moons").is_2d


def test_unknown_task_and_split():
    with pytest.raises(TaskError, match="unknown task"):
        make_task("mnist")
    with pytest.raises(ValueError, match="split must be"):
        make_task("moons").split("val")


def test_npz_classification(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 4, 50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    task = make_task({"name": "npz", "path": str(tmp_path / "d.npz"), "test_fraction": 0.2})
    assert task.kind == "classification" and task.n_classes == int(y.max()) + 1
    assert len(task.x_test) == 10 and len(task.x_train) == 40
    rows = {tuple(r) for r in np.concatenate([task.x_train.numpy(), task.x_test.numpy()])}
    assert rows == {tuple(r) for r in x}


def test_npz_regression_and_loss(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(20, 1)).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=y)
    task = make_task({"name": "npz", "path": str(tmp_path / "r.npz")})
    assert task.kind == "regression" and task.y_test.dtype == torch.float32
    out = torch.randn(3, len(task.y_test), 1)
    expected = ((out - task.y_test) ** 2).mean(dim=(1, 2))
    assert torch.allclose(task.loss(out, task.y_test), expected)
    assert torch.equal(task.correct(out, task.y_test), torch.zeros(3))


def test_classification_loss_and_correct():
    task = make_task("moons")
    out = torch.randn(4, len(task.y_test), 2)
    for i in range(4):
        assert torch.allclose(task.loss(out, task.y_test)[i], F.cross_entropy(out[i], task.y_test))
        assert task.correct(out, task.y_test)[i] == (out[i].argmax(1) == task.y_test).sum()


def _save(path, **arrays):
    np.savez(path, **arrays)
    return {"name": "npz", "path": str(path)}


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.zeros((5, 2))}, "needs arrays 'x' and 'y'"),
    ({"x": np.zeros((5, 2)), "y": np.zeros(4, dtype=int)}, "must match"),
    ({"x": np.zeros((5, 2)), "y": -np.ones(5, dtype=int)}, "labels must be >= 0"),
    ({"x": np.zeros((5, 2)), "y": np.array(list("abcde"))}, "dtype"),
    ({"x": np.full((5, 2), np.nan), "y": np.zeros(5, dtype=int)}, "NaN or Inf"),
])
def test_npz_errors(tmp_path, arrays, match):
    with pytest.raises(TaskError, match=match):
        make_task(_save(tmp_path / "bad.npz", **arrays))


def test_npz_missing_and_corrupt(tmp_path):
    with pytest.raises(TaskError, match="no such data file"):
        make_task({"name": "npz", "path": str(tmp_path / "nope.npz")})
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    with pytest.raises(TaskError, match="not a readable .npz"):
        make_task({"name": "npz", "path": str(tmp_path / "junk.npz")})
    np.savez(tmp_path / "obj.npz", x=np.array([object()] * 3, dtype=object), y=np.zeros(3, dtype=int))
    with pytest.raises(TaskError, match="not a readable .npz"):  # pickles are never loaded
        make_task({"name": "npz", "path": str(tmp_path / "obj.npz")})
