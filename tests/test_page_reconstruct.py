"""The Reconstruct page under AppTest: DeepInversion of a digits-resnet checkpoint with its nearest real examples,
then the two distilled students; a network without BatchNorm is told why nothing can be inverted; training
examples read back from a planted homogeneous network by the margin conditions, and a network with biases told why
they do not apply."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from conftest import SAMPLE
from pagetest import arr, chart, run_page
from streamlit.testing.v1 import AppTest
from test_reconstruction import planted, planted_network

from wslviz.core import Zoo, make_task
from wslviz.formats import save_zoo

PAGE = Path(__file__).resolve().parents[1] / "pages" / "10_Reconstruct.py"


def page(zoo: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.session_state["zoo_path"] = str(SAMPLE / zoo)
    return at.run()


def test_inverts_a_resnet_checkpoint_and_distils_students():
    at = page("digits-resnet")
    assert not at.exception
    assert any("Invert the checkpoint" in i.value for i in at.info)
    at.slider(key="rec_per_class").set_value(1)
    at.select_slider(key="rec_steps").set_value(20).run()
    at.button(key="rec_go").click().run()
    assert not at.exception and not at.error
    grid = chart(at, "rec_pairs")
    captions = [a["text"] for a in grid["layout"]["annotations"] if a["text"]]
    assert sorted(int(c.split(" · ")[0]) for c in captions) == list(range(10))
    distances = [float(c.split(" · ")[1]) for c in captions]
    assert len(distances) == 10 and all(0 <= d <= 2 for d in distances)
    frame = at.select_slider(key="rec_frame")  # watch them form: the inputs after an earlier step
    assert frame.value == 20 and frame.options[0] != "20"
    frame.set_value(int(frame.options[0])).run()
    earlier = [a["text"] for a in chart(at, "rec_pairs")["layout"]["annotations"] if a["text"]]
    assert len(earlier) == 10 and earlier != captions
    at.select_slider(key="rec_epochs").set_value(10).run()
    at.button(key="rec_distil").click().run()
    assert not at.exception and not at.error
    scores = at.dataframe[0].value
    assert list(scores["inputs"]) == ["its training data", "the inverted inputs", "noise"]
    assert np.all((scores["test accuracy"] >= 0) & (scores["test accuracy"] <= 1))
    assert scores["test accuracy"].iloc[0] > 0.8  # the teacher: the best checkpoint


def test_a_network_without_batchnorm_is_told_why():
    at = page("moons-mlp")
    assert not at.exception
    assert at.radio(key="rec_method").value.startswith("Training examples")  # no BatchNorm: the other method first
    assert any("has a bias" in i.value for i in at.info)
    at.radio(key="rec_method").set_value(at.radio(key="rec_method").options[0]).run()
    assert any("no BatchNorm" in i.value for i in at.info)


def planted_zoo(tmp_path, arch, weights, task) -> tuple[str, Zoo]:
    """The planted network as a saved zoo whose npz task stores every example also at twice its length (off the
    margin, in the same direction), so that the task's own train/test split keeps every direction in training."""
    x = torch.cat([task.x_train, 2 * task.x_train]).numpy()
    np.savez(tmp_path / "planted.npz", x=x, y=np.tile(task.y_train.numpy(), 2))
    zoo_task = make_task({"name": "npz", "path": str(tmp_path / "planted.npz")})
    zoo = Zoo(name="planted", metadata=pd.DataFrame({"model_id": [0], "epoch": [0]}), weights=weights[None],
              arch=arch, task=zoo_task)
    return str(save_zoo(zoo, tmp_path / "zoo")), zoo


def test_training_examples_come_back_from_a_planted_network(tmp_path, monkeypatch):
    """The planted simplex network of tests/test_reconstruction.py."""
    path, zoo = planted_zoo(tmp_path, *planted())
    zoo_task = zoo.task
    at = run_page(monkeypatch, str(PAGE), path)
    assert any("Solve the margin conditions" in i.value for i in at.info)
    at.button(key="rec_kkt_go").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert len(table) == len(zoo_task.x_train) and set(table["class"]) == {0, 1}
    assert table["recovered"].sum() >= 1, table  # how many: tests/test_reconstruction.py
    said = next(m.value for m in at.markdown if "training examples recovered" in m.value)
    assert said.startswith(f"**{int(table['recovered'].sum())} of {len(table)}**") and "against 0 by" in said


def test_on_two_inputs_the_candidates_are_drawn_over_the_training_points(tmp_path, monkeypatch):
    angles = torch.tensor([90.0, 210.0, 330.0]).deg2rad()  # three points 120 degrees apart
    path, zoo = planted_zoo(tmp_path, *planted_network(torch.stack([angles.cos(), angles.sin()], 1)))
    at = run_page(monkeypatch, str(PAGE), path)
    at.button(key="rec_kkt_go").click().run()
    assert not at.exception and not at.error
    fig = chart(at, "rec_kkt_2d")
    names = [t.get("name") for t in fig["data"]]
    assert names[1:] == ["training point, recovered", "training point, not recovered", "candidate"]
    shown = sum(len(arr(t["x"])) for t in fig["data"][1:3])
    assert shown == len(zoo.task.x_train) and len(arr(fig["data"][3]["x"])) == 2 * len(zoo.task.x_train)
