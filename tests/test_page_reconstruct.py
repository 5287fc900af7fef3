"""The Reconstruct page under AppTest: DeepInversion of a digits-resnet checkpoint with its nearest real examples,
then the two distilled students; a network without BatchNorm is told why nothing can be inverted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import SAMPLE
from pagetest import chart
from streamlit.testing.v1 import AppTest

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
    assert any("no BatchNorm" in i.value for i in at.info)
