"""AppTest on folders of checkpoints as people save them: pick "Folder path", see the summary (with what is
assumed), open the Zoo and Projections pages; a weights-only zoo's function-based pages explain themselves;
the home page's form states the activation and attaches a task, and switches between groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT
from fixtures_formats import FOLDER_WRITERS, write_named
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.scale.cache import load_zoo

TIMEOUT = 180


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("folders")
    out = {}
    for name, writer in FOLDER_WRITERS.items():
        writer(base / name)
        out[name] = str(base / name)
    return out


def open_folder(path: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.sidebar.radio(key="zoo_source").set_value("Folder path").run()
    at.sidebar.text_input(key="zoo_folder").input(path).run()
    assert not at.exception, at.exception
    return at


def page(monkeypatch, path: str, name: str) -> AppTest:
    monkeypatch.setenv(ui.ENV_ZOO, path)
    at = AppTest.from_file(str(ROOT / "pages" / name), default_timeout=TIMEOUT).run()
    assert not at.exception, (name, at.exception)
    return at


def text(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "error", "warning", "info", "caption")
                     for e in getattr(at, kind))


@pytest.mark.parametrize("name", list(FOLDER_WRITERS))
def test_each_folder_kind_opens_with_summary_zoo_and_projections(folders, name, monkeypatch):
    zoo = load_zoo(folders[name])
    at = open_folder(folders[name])
    assert {m.label: m.value for m in at.metric} == {"models": f"{zoo.n_models:,}",
                                                     "checkpoints": f"{zoo.n_checkpoints:,}",
                                                     "parameters": f"{zoo.n_params:,}"}
    shown = text(at)
    assert zoo.arch.describe() in shown
    for phrase in zoo.arch.assumed.values():
        assert f"{phrase} *(assumed)*" in shown
    for page_file in ("1_Zoo.py", "2_Projections.py"):
        page(monkeypatch, folders[name], page_file)


def test_weights_only_function_pages_explain_what_is_missing(folders, monkeypatch):
    path = folders["folder-actor_critic"]
    assert "which hidden units may be permuted is unknown" in text(page(monkeypatch, path, "3_Symmetry.py"))
    assert "no evaluation data" in text(page(monkeypatch, path, "4_Landscape.py"))
    at = page(monkeypatch, path, "6_Generate.py")
    assert "no evaluation data" in text(at)
    at.button(key="gen_go").click().run()  # the default sampler makes weights without evaluating them
    assert not at.exception, at.exception
    home = open_folder(path)
    assert "Weights only:" in text(home) and "2 separate stacks" in text(home)


def test_form_states_activation_and_task_and_the_zoo_evaluates(tmp_path):
    written = write_named(tmp_path / "t", "tutorial", n=4)
    x = torch.randn(60, 4)
    with torch.no_grad():
        y = written[next(iter(written))](x).argmax(1)
    np.savez(tmp_path / "data.npz", x=x.numpy(), y=y.numpy())
    at = open_folder(str(tmp_path / "t"))
    assert "relu after every layer but the last" in text(at)
    at.selectbox(key="home_activation").set_value("tanh")
    at.text_input(key="home_task").input(str(tmp_path / "data.npz"))
    at.button(key="home_state_go").click().run()
    assert not at.exception, at.exception
    shown = text(at)
    assert "MLP 4-16-3 (tanh)" in shown and "**Task:** npz" in shown and "*(assumed)*" not in shown
    # the stated task is used everywhere: accuracies per checkpoint (the first model labelled the data: 100%),
    # pickers that name the files, and a Predict page with something to predict
    at.switch_page("pages/5_Predict.py").run()
    assert not at.exception, at.exception
    assert "Nothing to predict" not in text(at)
    at.switch_page("pages/4_Landscape.py").run()
    assert not at.exception, at.exception
    labels = at.selectbox(key="land_a").options
    assert any(".pt · " in label and label.endswith(" · 1.000") for label in labels), labels


@pytest.mark.parametrize("name", ["3_Symmetry.py", "4_Landscape.py", "7_Merge.py"])
def test_pages_that_run_the_networks_mark_the_assumed_activation(tmp_path, monkeypatch, name):
    """A folder of state dicts does not record its activation: every page whose results depend on it says what
    was assumed and where to state it; once stated in the form, nothing is marked assumed."""
    written = write_named(tmp_path / "t", "tutorial", n=4)
    x = torch.randn(60, 4)
    with torch.no_grad():
        y = written[next(iter(written))](x).argmax(1)
    np.savez(tmp_path / "data.npz", x=x.numpy(), y=y.numpy())
    assumed = page(monkeypatch, str(tmp_path / "t"), name)
    note = [c.value for c in assumed.caption if "*(assumed)*" in c.value]
    assert len(note) == 1 and "activation" in note[0] and "[home page](/)" in note[0], note
    at = open_folder(str(tmp_path / "t"))  # the form states it: the pages no longer assume
    at.selectbox(key="home_activation").set_value("relu")
    at.text_input(key="home_task").input(str(tmp_path / "data.npz"))
    at.button(key="home_state_go").click().run()
    at.switch_page(f"pages/{name}").run()
    assert not at.exception, at.exception
    assert not [c.value for c in at.caption if "*(assumed)*" in c.value]


def test_groups_are_listed_and_switch(folders):
    at = open_folder(folders["folder-mixed"])
    assert "3 architectures in this folder" in text(at)  # the custom-class .ckpt now opens (read inertly)
    at.selectbox(key="home_group").set_value(1).run()
    at.button(key="home_group_go").click().run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric}["parameters"] == "112"


def test_a_recognised_stack_has_its_symmetries_without_a_task(tmp_path, monkeypatch):
    write_named(tmp_path / "lenets", "lenet", n=4)
    at = page(monkeypatch, str(tmp_path / "lenets"), "3_Symmetry.py")
    assert not at.error and "hidden layer(s)" in text(at)


def test_form_picks_a_built_in_for_a_folder_that_opened_as_weights_only(tmp_path):
    from wslviz.core.module_arch import ModuleArchitecture

    kwargs = {"depth": 8, "width": 0.25, "in_channels": 1}
    net = ModuleArchitecture.builtin("resnet20", input_shape=[1, 8, 8], **kwargs)
    folder = tmp_path / "resnets"
    folder.mkdir()
    for i in range(2):
        torch.save(net.unflatten(net.initial_weights() + 0.01 * i), folder / f"seed{i}.pt")
    at = open_folder(str(folder))
    assert "Weights only" in text(at)
    at.selectbox(key="home_builtin").set_value("resnet20")
    at.text_input(key="home_builtin_kwargs").input("{depth: 8")
    at.button(key="home_state_go").click().run()
    assert any("keyword arguments are not valid JSON" in e.value for e in at.error)
    at.text_input(key="home_builtin_kwargs").input(json.dumps(kwargs))
    at.text_input(key="home_input_shape").input("1,8,8")
    at.button(key="home_state_go").click().run()
    assert not at.exception, at.exception
    shown = text(at)
    assert "Weights only" not in shown and "resnet20 (depth=8, in_channels=1, width=0.25)" in shown, shown[:2000]
