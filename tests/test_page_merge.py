"""The Merge page under Streamlit's AppTest, on the fine-tuning and federated sample zoos, and every method on
the module sample zoos (the BatchNorm ResNet and the transformer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMPLE
from pagetest import arr, chart
from streamlit.testing.v1 import AppTest

from wslviz.generation import merging as M

PAGE = Path(__file__).resolve().parents[1] / "pages" / "7_Merge.py"


def page(zoo: str) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=300)
    at.session_state["zoo_path"] = str(SAMPLE / zoo)
    return at.run()


def test_task_arithmetic_on_the_finetunes_with_similarity_conflicts_and_a_sweep():
    at = page("digits-finetunes")
    assert not at.exception
    assert any("press **Merge**" in i.value for i in at.info)
    at.selectbox(key="merge_method").select("task_arithmetic").run()
    assert len(at.multiselect(key="merge_rows_False").value) == 30  # the fine-tunes, base apart
    at.button(key="merge_go").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["model"][:3]) == ["merged", "ensemble of the inputs", "base (#4)"]
    assert {"original", "rotate90", "mirror", "invert", "noise", "average"} <= set(table.columns)
    assert len(table) == 3 + 30
    assert any("average accuracy over the tasks" in m.value for m in at.markdown)
    assert len(chart(at, "merge_bars")["data"]) == 14
    sim = chart(at, "merge_similarity")["data"][0]
    assert len(sim["x"]) == 30
    assert [t["name"] for t in chart(at, "merge_conflicts")["data"]] == ["touched by a trimmed task vector",
                                                                       "sign conflict"]
    at.slider(key="merge_sweep_steps").set_value(5).run()
    at.button(key="merge_sweep_go").click().run()
    assert not at.exception
    curve = chart(at, "merge_sweep_curve")["data"]
    assert [t["name"] for t in curve] == ["original", "rotate90", "mirror", "invert", "noise", "average"]
    assert len(arr(curve[-1]["x"])) == 5
    assert [b.label for b in at.get("download_button")] == ["Download weights (.safetensors)"]


@pytest.mark.parametrize("method", ["ties", "soup"])
def test_other_methods_on_the_finetunes(method):
    at = page("digits-finetunes")
    at.selectbox(key="merge_method").select(method).run()
    at.button(key="merge_go").click().run()
    assert not at.exception and not at.error
    assert at.dataframe[0].value["model"].iloc[0] == "merged"


def test_fedavg_and_slerp_on_the_federated_zoo():
    at = page("digits-federated")
    at.selectbox(key="merge_method").select("fedavg").run()
    at.button(key="merge_go").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table.columns) == ["model", "digits", "average"] and len(table) == 2 + 1 + 10
    assert table["average"].iloc[0] > table["average"].iloc[3:].max()  # FedAvg beats every non-IID client
    at.selectbox(key="merge_method").select("slerp").run()
    assert len(at.multiselect(key="merge_rows_True").value) == 2
    at.button(key="merge_go").click().run()
    assert not at.exception and not at.error
    at.button(key="merge_sweep_go").click().run()
    assert chart(at, "merge_sweep_curve")["data"][-1]["name"] == "average"


@pytest.mark.parametrize("zoo", ["digits-resnet", "tiny-transformer"])
def test_every_method_on_the_module_zoos(zoo):
    at = page(zoo)
    assert not at.exception
    for method in M.METHODS:
        at.selectbox(key="merge_method").select(method).run()
        if method == "fisher":
            at.select_slider(key="merge_fisher_n").set_value(32).run()
        at.button(key="merge_go").click().run()
        assert not at.exception and not at.error, (method, [e.value for e in at.error])
        table = at.dataframe[0].value
        assert table["model"].iloc[0] == "merged" and 0 <= table["average"].iloc[0] <= 1, method
        assert not any("previous choice" in c.value for c in at.caption), method
    at.selectbox(key="merge_method").select("aligned").run()
    at.radio(key="merge_correction").set_value("repair").run()
    at.button(key="merge_go").click().run()
    assert not at.exception and not at.error  # REPAIR corrects a merge of any number of module networks too
    assert at.dataframe[0].value["model"].iloc[0] == "merged"
