"""The app on the LoRA sample zoo: the Symmetry page's GL(r) tab, merging adapters on delta_W, the Landscape paths
and projections of invariant features, under Streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, SAMPLE, sample_zoo
from pagetest import arr, chart
from streamlit.testing.v1 import AppTest

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.training import init_weights
from wslviz.generation import merge_lab as L
from wslviz.generation.lora_merge import LABELS, merge_adapters
from wslviz.ui.home import page_files

PAGES = Path(__file__).resolve().parents[1] / "pages"


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=300)
    at.session_state["zoo_path"] = str(SAMPLE / "digits-lora")
    return at.run()


def test_symmetry_page_shows_gl_moving_factors_and_keeping_the_adapter():
    at = page("3_Symmetry.py")
    assert not at.exception
    bars = {t["name"]: arr(t["y"]) for t in chart(at, "sym_gl_effects")["data"]}
    assert (bars["A and B: relative change"][[0, 2, 3]] > 0.1).all()  # any G, scaling and rotation move far
    assert (bars["delta_W = B A: relative change"] < 1e-5).all()
    assert (bars["invariant features: relative change"] < 1e-5).all()
    assert (bars["max output difference"] < 1e-4).all()
    scatter = chart(at, "sym_gl_distances")["data"]
    assert len(arr(scatter[0]["x"])) == 300
    raw, canonical = (float(t["name"].rpartition("Spearman ")[2].rstrip(")")) for t in scatter)
    at.toggle(key="sym_gl_scramble").set_value(True).run()
    scattered = chart(at, "sym_gl_distances")["data"]
    np.testing.assert_allclose(arr(scattered[0]["x"]), arr(scatter[0]["x"]), rtol=1e-5)  # the same updates
    raw2, canonical2 = (float(t["name"].rpartition("Spearman ")[2].rstrip(")")) for t in scattered)
    assert canonical2 == canonical and raw2 != raw  # new coordinates: only the raw distances change
    np.testing.assert_allclose(arr(scattered[1]["y"]), arr(scatter[1]["y"]), rtol=1e-3, atol=1e-4)
    moved = np.abs(arr(scattered[0]["y"]) / arr(scatter[0]["y"]) - 1)
    assert np.median(moved) > 0.1
    assert "activation" not in at.radio(key="sym_method").options  # rank units have no activations
    at.button(key="sym_align").click().run()
    assert not at.exception and not at.error


def test_merge_page_merges_adapters_on_delta_w_with_the_baseline_offered():
    at = page("7_Merge.py")
    assert not at.exception
    assert at.selectbox(key="merge_method").options == list(LABELS.values())
    zoo = sample_zoo("digits-lora")
    rows, _ = L.default_merge_rows(zoo)
    assert sorted(zoo.metadata["task"].iloc[rows]) == ["mirror", "noise", "rotate90"]  # one adapter per task
    at.selectbox(key="merge_method").select("ties").run()
    at.button(key="merge_go").click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert {"rotate90", "mirror", "noise", "average"} <= set(table.columns)
    expected = L.task_accuracies(zoo.arch, L.zoo_tasks(zoo),
                                 merge_adapters(zoo.arch, zoo.weights[rows].float(), "ties").weights[None])
    assert np.isclose(float(table["average"].iloc[0]), float(expected["average"].iloc[0]), atol=1e-4)  # shown to 4
    assert any("truncated SVD" in c.value for c in at.caption)
    at.selectbox(key="merge_method").select("factor_average").run()
    at.button(key="merge_go").click().run()
    assert not at.exception and not at.error
    naive = float(at.dataframe[0].value["average"].iloc[0])
    mean_w = zoo.weights[rows].double().mean(0).float()
    assert np.isclose(naive, float(L.task_accuracies(zoo.arch, L.zoo_tasks(zoo), mean_w)["average"].iloc[0]), atol=1e-4)


def test_landscape_paths_and_invariant_projection_run_on_adapters():
    at = page("4_Landscape.py")
    assert "activation" not in at.multiselect(key="land_path_methods").options
    at.button(key="land_path_go").click().run()
    assert not at.exception and not at.error
    path = chart(at, "land_path_fig")
    ends = [arr(t["y"]) for t in path["data"] if t.get("name", "").startswith("naive")]
    assert ends and np.isfinite(ends[0]).all()
    proj = page("2_Projections.py")
    assert proj.selectbox(key="proj_kind").value == "invariant"  # the default where GL(r) makes raw factors arbitrary
    assert not proj.exception and chart(proj, "proj_chart")["data"]
    assert not torch.isnan(sample_zoo("digits-lora").weights).any()


def _peft_folder(root: Path) -> Path:
    peft = pytest.importorskip("peft")
    base = Architecture(mlp_spec([12, 16, 5]))
    for i, r in enumerate((2, 4)):
        torch.manual_seed(i)
        config = peft.LoraConfig(r=r, lora_alpha=4, target_modules=["0", "2"], init_lora_weights=False)
        peft.get_peft_model(base.build(init_weights(base, [0])[0]), config).save_pretrained(root / f"adapter{i}")
    return root


def _gpt2_folder(root: Path) -> Path:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=8, vocab_size=24,
                                     architectures=["GPT2LMHeadModel"])
    for i in range(3):
        torch.manual_seed(i)
        transformers.GPT2LMHeadModel(config).save_pretrained(root / f"seed{i}")
    return root


@pytest.mark.parametrize("make", [_peft_folder, _gpt2_folder], ids=["peft-adapters", "gpt2-folder"])
def test_every_page_runs_on_adapter_and_hugging_face_folders(tmp_path, make):
    path = make(tmp_path / "zoo")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.sidebar.radio(key="zoo_source").set_value("Folder path").run()
    at.sidebar.text_input(key="zoo_folder").input(str(path)).run()
    assert not at.exception, at.exception
    for name in page_files():
        at.switch_page(f"pages/{name.name}").run()
        assert not at.exception, (name.name, at.exception)


def test_the_home_form_runs_adapters_on_a_base_model_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=8, vocab_size=24,
                                     architectures=["GPT2LMHeadModel"])
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(tmp_path / "base")
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False)
    peft.get_peft_model(model, lora).save_pretrained(tmp_path / "adapters" / "a0")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.sidebar.radio(key="zoo_source").set_value("Folder path").run()
    at.sidebar.text_input(key="zoo_folder").input(str(tmp_path / "adapters")).run()
    assert "no base model: no forward" in "\n".join(m.value for m in at.markdown)
    at.text_input(key="home_base").input(str(tmp_path / "base"))
    at.button(key="home_state_go").click().run()
    assert not at.exception and not at.error
    shown = "\n".join(m.value for m in at.markdown)
    assert "LoRA" in shown and "no base model" not in shown
