"""Large zoos stay safe in the app: with a 50,000-checkpoint zoo every page opens (AppTest) without the
server's memory running away, and a figure drawn from a subsample says so (the per-model training curves;
Projections subsamples with a visible toggle)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.evaluation import evaluate
from wslviz.core.tasks import make_task
from wslviz.core.zoo import Zoo
from wslviz.formats import save_zoo
from wslviz.plots import zoo as zplots
from wslviz.ui.home import page_files

N = 50_000
MEMORY_BUDGET = 3 * 2**30
"""Growth of this process's RSS allowed while every page opens on the 50,000-row zoo (measured: ~0.9 GB)."""


def big_meta(n: int = N) -> pd.DataFrame:
    rows = np.arange(n)
    rng = np.random.default_rng(0)
    return pd.DataFrame({"model_id": rows // 10, "epoch": rows % 10, "lr": np.where((rows // 10) % 2, 0.1, 0.01),
                         "test_acc": rng.random(n)})


def test_curves_of_many_models_are_subsampled_and_say_so():
    meta = big_meta()
    fig = zplots.accuracy_curves(meta, "lr", "test_acc", highlight=[12_345])
    drawn = {int(m) for t in fig.data if t.customdata is not None for m, _ in t.customdata if m is not None}
    assert len(drawn) == zplots.MAX_CURVES + 1 and 1234 in drawn  # the highlighted model is always drawn
    assert "1,001 of 5,000 models drawn" in fig.layout.title.text
    small = zplots.accuracy_curves(meta.iloc[:500], "lr", "test_acc")
    assert "models drawn" not in small.layout.title.text
    everything = zplots.accuracy_curves(meta, "lr", "test_acc", max_models=None)
    assert sum(t.x.count(None) for t in everything.data) == N // 10  # one gap after each model's line


@pytest.fixture(scope="module")
def large_zoo(tmp_path_factory) -> str:
    """50,000 checkpoints of a small moons MLP (5,000 models x 10 epochs), random weights, accuracies
    evaluated (the approach of tests/test_formats_large.py, with a task so that every page computes)."""
    arch, task = Architecture(mlp_spec([2, 16, 2])), make_task("moons")
    weights = torch.randn(N, arch.n_params, generator=torch.Generator().manual_seed(0)) * 0.5
    meta = big_meta().drop(columns="test_acc")
    meta["weight_decay"] = np.where((meta["model_id"] % 3) == 0, 0.0, 1e-4)
    result = evaluate(arch, task, weights)
    meta["test_loss"], meta["test_acc"] = result["loss"].numpy(), result["accuracy"].numpy()
    return str(save_zoo(Zoo(name="large", metadata=meta, weights=weights, arch=arch, task=task),
                        tmp_path_factory.mktemp("large") / "large"))


@pytest.mark.slow
def test_every_page_opens_on_a_fifty_thousand_checkpoint_zoo(large_zoo, monkeypatch, tmp_path):
    monkeypatch.setenv("WSLVIZ_CACHE", str(tmp_path / "user-cache"))
    proc = psutil.Process()
    start = peak = proc.memory_info().rss
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params["zoo"] = large_zoo
    at.run()
    assert not at.exception and [m.value for m in at.metric if m.label == "checkpoints"] == ["50,000"]
    for page in page_files():
        at.switch_page(f"pages/{page.name}").run()
        assert not at.exception, (page.name, at.exception)
        peak = max(peak, proc.memory_info().rss)
    assert peak - start < MEMORY_BUDGET, f"the pages took {(peak - start) / 2**30:.1f} GB"
