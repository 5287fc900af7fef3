"""The ``wslviz`` command line: make-zoo, info, export, app."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
import torch
from conftest import SAMPLE
from test_training import TINY

from wslviz import cli
from wslviz.core import training
from wslviz.scale.cache import load_zoo


@pytest.fixture
def tiny_recipe(monkeypatch):
    monkeypatch.setitem(training.RECIPES, TINY.name, TINY)
    return TINY.name


def test_make_zoo_writes_a_native_zoo_and_refuses_to_overwrite(tiny_recipe, tmp_path, capsys):
    assert cli.main(["make-zoo", "--out", str(tmp_path), "--only", tiny_recipe, "--seed", "2"]) == 0
    zoo = load_zoo(tmp_path / tiny_recipe)
    assert zoo.n_models == TINY.n_models and zoo.n_checkpoints == TINY.n_models * len(TINY.checkpoints)
    assert torch.equal(zoo.weights, training.train_zoo(TINY, seed=2).weights)
    before = (tmp_path / tiny_recipe / "weights.safetensors").read_bytes()

    capsys.readouterr()
    assert cli.main(["make-zoo", "--out", str(tmp_path), "--only", tiny_recipe, "--seed", "5"]) == 1
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err
    assert (tmp_path / tiny_recipe / "weights.safetensors").read_bytes() == before

    assert cli.main(["make-zoo", "--out", str(tmp_path), "--only", tiny_recipe, "--seed", "5", "--overwrite"]) == 0
    assert (tmp_path / tiny_recipe / "weights.safetensors").read_bytes() != before


def test_make_zoo_names_unknown_recipes(tmp_path, capsys):
    assert cli.main(["make-zoo", "--out", str(tmp_path), "--only", "no-such-zoo"]) == 1
    err = capsys.readouterr().err
    assert "no-such-zoo" in err and "moons-mlp" in err
    assert not any(tmp_path.iterdir())


def test_info_prints_the_summary(capsys):
    assert cli.main(["info", str(SAMPLE / "moons-mlp")]) == 0
    out = capsys.readouterr().out
    zoo = load_zoo(SAMPLE / "moons-mlp")
    assert f"models: {zoo.n_models}" in out
    assert f"checkpoints: {zoo.n_checkpoints}" in out
    assert zoo.arch.describe() in out


def test_info_on_a_non_zoo_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert cli.main(["info", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "Traceback" not in err


def test_export_round_trips(tmp_path, capsys):
    out = tmp_path / "copy"
    assert cli.main(["export", str(SAMPLE / "spirals-tanh"), str(out)]) == 0
    original, copy = load_zoo(SAMPLE / "spirals-tanh"), load_zoo(out)
    assert torch.equal(original.weights, copy.weights)
    pd.testing.assert_frame_equal(original.metadata, copy.metadata)
    assert original.arch == copy.arch and original.task.spec == copy.task.spec
    assert cli.main(["export", str(SAMPLE / "spirals-tanh"), str(out)]) == 1
    assert "exists" in capsys.readouterr().err


def test_app_passes_the_zoo_to_streamlit(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, cwd, env: calls.append((cmd, cwd, env)) or 0)
    assert cli.main(["app", str(SAMPLE / "digits-cnn"), "--", "--server.port", "8600"]) == 0
    cmd, cwd, env = calls[0]
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4] == str(cli.ROOT / "app.py")
    assert "--browser.gatherUsageStats" in cmd and cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[-2:] == ["--server.port", "8600"]
    assert env[cli.ZOO_ENV] == str((SAMPLE / "digits-cnn").resolve())
    assert cli.main(["app", "--", "--server.headless", "true"]) == 0
    assert calls[1][0][-2:] == ["--server.headless", "true"]
    assert cli.main(["app", "/no/such/zoo"]) == 1
    assert len(calls) == 2


def test_make_zoo_refuses_a_file_in_the_way(tiny_recipe, tmp_path, capsys):
    (tmp_path / tiny_recipe).write_text("not a zoo")
    assert cli.main(["make-zoo", "--out", str(tmp_path), "--only", tiny_recipe, "--overwrite"]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert (tmp_path / tiny_recipe).read_text() == "not a zoo"
