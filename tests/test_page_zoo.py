"""The Zoo page (AppTest with widget interaction) and its figure builders (pure functions)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, random_zoo
from streamlit.testing.v1 import AppTest

from wslviz import ui
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.tasks import make_task
from wslviz.core.weights_only import WeightsOnlyLayout
from wslviz.formats import save_zoo
from wslviz.plots import style
from wslviz.plots import zoo as zplots
from wslviz.scale.cache import load_zoo


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory):
    zoo = random_zoo(Architecture(mlp_spec([2, 16, 16, 2])), make_task("moons"), n_models=6, epochs=(0, 1, 2))
    return str(save_zoo(zoo, tmp_path_factory.mktemp("zoo") / "zoo"))


def run_page(monkeypatch, path: str) -> AppTest:
    monkeypatch.setenv(ui.ENV_ZOO, path)
    at = AppTest.from_file(str(ROOT / "pages" / "1_Zoo.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def table(at: AppTest) -> pd.DataFrame:
    return at.dataframe(key="zoo_table").value


def test_page_renders_table_curves_and_weights(monkeypatch, zoo_path):
    at = run_page(monkeypatch, zoo_path)
    zoo = load_zoo(zoo_path)
    assert len(table(at)) == zoo.n_checkpoints
    assert table(at)["row"].tolist() == list(range(zoo.n_checkpoints))
    keys = {c.key for c in at.get("plotly_chart")}
    assert {"zoo_curves", "zoo_final", "zoo_hist", "zoo_spectra"} <= keys
    best = int(zoo.final_index()[zoo.metadata["test_acc"].to_numpy()[zoo.final_index()].argmax()])
    assert at.multiselect(key="zoo_inspect").value == [best]  # the best final checkpoint


def test_filters_and_sorting(monkeypatch, zoo_path):
    at = run_page(monkeypatch, zoo_path)
    meta = load_zoo(zoo_path).metadata
    at.button_group(key="zoo_filter_lr").set_value([0.1]).run()
    assert (table(at)["lr"] == 0.1).all() and len(table(at)) == (meta["lr"] == 0.1).sum()
    at.toggle(key="zoo_final_only").set_value(True).run()
    shown = table(at)
    assert set(shown["epoch"]) == {meta["epoch"].max()}
    assert len(shown) == meta[(meta["lr"] == 0.1)]["model_id"].nunique()
    at.button_group(key="zoo_filter_lr").set_value([0.01, 0.1]).run()
    at.selectbox(key="zoo_sort").set_value("test_acc").run()
    acc = table(at)["test_acc"].to_numpy()
    assert (np.diff(acc) <= 0).all()
    at.toggle(key="zoo_desc").set_value(False).run()
    assert (np.diff(table(at)["test_acc"].to_numpy()) >= 0).all()


def test_colour_metric_and_inspection_widgets(monkeypatch, zoo_path):
    at = run_page(monkeypatch, zoo_path)
    at.selectbox(key="zoo_color_by").set_value("seed").run()
    at.selectbox(key="zoo_metric").set_value("test_loss").run()
    assert not at.exception
    at.multiselect(key="zoo_inspect").set_value([1, 4, 7]).run()
    assert not at.exception
    assert at.session_state[ui.SELECTION_KEY] == [1, 4, 7]  # the picker drives the linked selection
    assert at.session_state["zoo_inspect"] == [1, 4, 7]


def test_page_on_a_weights_only_zoo(monkeypatch, tmp_path):
    zoo = random_zoo(Architecture(mlp_spec([2, 8, 2])), None, n_models=3, epochs=(0,))
    zoo.metadata = zoo.metadata.drop(columns=["lr"])
    at = run_page(monkeypatch, str(save_zoo(zoo, tmp_path / "weights-only")))
    assert any("no metric columns" in i.value for i in at.info)
    assert {c.key for c in at.get("plotly_chart")} == {"zoo_hist", "zoo_spectra"}


# ------------------------------------------------------------------ figure builders
@pytest.fixture(scope="module")
def meta():
    rows = [{"model_id": m, "epoch": e, "seed": m, "lr": [1e-4, 1e-3, 1e-1][m % 3], "optimizer": ["adam", "sgd"][m % 2],
             "wd": 10.0 ** (-5 + m / 3), "test_acc": 0.1 * e + 0.01 * m, "test_loss": 1.0 / (1 + e)}
            for m in range(12) for e in (0, 1, 2, 3)]
    return pd.DataFrame(rows)


def test_hyperparameter_columns(meta):
    cols = zplots.hyperparameter_columns(meta)
    assert cols == ["seed", "lr", "optimizer", "wd"]
    varying = meta.assign(noise=np.arange(len(meta)))  # varies within a model: not a hyper-parameter
    assert "noise" not in zplots.hyperparameter_columns(varying)


def test_accuracy_curves_one_line_per_model(meta):
    fig = zplots.accuracy_curves(meta, "lr", "test_acc")
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == meta["lr"].nunique()  # one trace per colour, models separated by gaps
    points = sum(sum(v is not None for v in t.x) for t in lines)
    assert points == len(meta)
    gaps = sum(sum(v is None for v in t.x) for t in lines)
    assert gaps == meta["model_id"].nunique()
    # a small grid of values gets one legend entry per value, in order, and no colour bar
    assert [t.name for t in lines] == ["lr = 0.0001", "lr = 0.001", "lr = 0.1"]
    assert not [t for t in fig.data if t.marker is not None and t.marker.showscale]


def test_mean_curves_per_value_with_interquartile_band(meta):
    fig = zplots.mean_curves(meta, "lr", "test_acc")
    means = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in means] == ["lr = 0.0001", "lr = 0.001", "lr = 0.1"]
    for t, lr in zip(means, (1e-4, 1e-3, 1e-1), strict=True):
        part = meta[meta["lr"] == lr].groupby("epoch")["test_acc"]
        np.testing.assert_allclose(t.y, part.mean().to_numpy())
        assert list(t.customdata) == [4, 4, 4, 4]  # models per point
    bands = [t for t in fig.data if t.fill == "toself"]
    part = meta[meta["lr"] == 1e-4].groupby("epoch")["test_acc"]
    np.testing.assert_allclose(bands[0].y, np.concatenate([part.quantile(0.75), part.quantile(0.25)[::-1]]))
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickformat == ",d"  # epochs: integer ticks
    wd = zplots.mean_curves(meta, "wd", "test_acc")  # 12 values: quartiles of the models
    assert len([t for t in wd.data if t.mode == "lines+markers"]) == 4


def test_accuracy_curves_colour_bar_for_many_values(meta):
    fig = zplots.accuracy_curves(meta, "wd", "test_acc")  # 12 values from 1e-5 to ~2e-2
    bar = [t for t in fig.data if t.marker is not None and t.marker.showscale]
    assert len(bar) == 1 and bar[0].marker.colorbar.title.text == "wd (log)"  # spans > 20x
    assert list(bar[0].marker.colorbar.tickvals) == [-5, -4, -3, -2]
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == 12 and not any(t.showlegend for t in lines)
    assert fig.layout.xaxis.title.text.startswith("epoch") and fig.layout.yaxis.title.text.startswith("test accuracy")


def test_accuracy_curves_categorical_and_highlight(meta):
    fig = zplots.accuracy_curves(meta, "optimizer", "test_loss", highlight=[5, 6])  # rows of model 1
    named = {t.name for t in fig.data if t.showlegend is not False}
    assert named == {"optimizer = adam", "optimizer = sgd", "selected"}
    sel = next(t for t in fig.data if t.name == "selected")
    assert [x for x in sel.x if x is not None] == [0, 1, 2, 3]
    assert [y for y in sel.y if y is not None] == meta[meta.model_id == 1]["test_loss"].tolist()
    with pytest.raises(ValueError, match="no column 'nope'"):
        zplots.accuracy_curves(meta, "nope")


def test_final_metric_vs(meta):
    final = meta.groupby("model_id")["epoch"].idxmax().to_numpy()
    fig = zplots.final_metric_vs(meta, final, "optimizer", highlight=[int(final[2])])
    boxes = [t for t in fig.data if t.type == "box"]
    assert [b.name for b in boxes] == ["adam", "sgd"]  # one box per value, coloured as the curves are
    assert sorted(np.concatenate([b.y for b in boxes])) == sorted(meta.loc[final, "test_acc"])
    curves = zplots.accuracy_curves(meta, "optimizer", "test_acc")
    assert [b.marker.color for b in boxes] == [t.line.color for t in curves.data if t.name.startswith("optimizer")]
    assert fig.data[-1].name == "selected" and list(fig.data[-1].y) == [meta.loc[final[2], "test_acc"]]
    by_lr = zplots.final_metric_vs(meta, final, "lr")
    mean = zplots.mean_curves(meta, "lr", "test_acc")
    assert [b.marker.color for b in by_lr.data] == [t.line.color for t in mean.data if t.mode == "lines+markers"]


def test_weight_histograms_count_every_weight():
    arch = Architecture(mlp_spec([3, 5, 2]))
    w = torch.randn(2, arch.n_params)
    fig = zplots.weight_histograms(arch, w, ["a", "b"])
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 2 * len(arch.layout)
    for i, p in enumerate(arch.layout):
        assert sum(bars[2 * i].y) == p.numel and sum(bars[2 * i + 1].y) == p.numel
    with pytest.raises(ValueError, match="labels"):
        zplots.weight_histograms(arch, w, ["a"])
    sb3 = WeightsOnlyLayout.from_shapes({"mlp_extractor.policy_net.0.weight": (64, 4), "action_net.weight": (2, 64)})
    titles = [a.text for a in zplots.weight_histograms(sb3, torch.randn(1, sb3.n_params), ["a"]).layout.annotations]
    assert titles == ["…actor.policy_net.0.weight [64, 4]", "action_net.weight [2, 64]"]  # each fits its third


def test_singular_values_recover_a_planted_spectrum():
    arch = Architecture(mlp_spec([4, 3, 2]))
    s = torch.tensor([5.0, 2.0, 0.5])
    u, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    v, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(1)))
    w0 = u @ torch.diag(s) @ v[:3]
    sd = arch.unflatten(torch.zeros(arch.n_params))
    flat = torch.cat([w0.reshape(-1) if n == "0.weight" else t.reshape(-1) for n, t in sd.items()])
    spectra = zplots.singular_values(arch, flat[None])
    assert set(spectra) == {"0.weight", "2.weight"}
    np.testing.assert_allclose(spectra["0.weight"][0], s.numpy(), rtol=1e-5)
    fig = zplots.singular_value_spectra(arch, flat[None], ["planted"])
    assert fig.layout.yaxis.type == "log" and len(fig.data) == 2


def test_conv_spectra_reshape_kernels(cnn_arch):
    w = torch.randn(3, cnn_arch.n_params)
    spectra = zplots.singular_values(cnn_arch, w)
    for p in cnn_arch.layout:
        if p.role == "weight":
            mats = w[:, p.slice].reshape(3, p.shape[0], -1)
            np.testing.assert_allclose(spectra[p.name], torch.stack([torch.linalg.svdvals(m) for m in mats]),
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["moons-mlp", "spirals-tanh", "digits-cnn"])
def test_page_on_each_bundled_zoo(monkeypatch, name):
    path = ROOT / "sample_zoo" / name
    if not (path / "zoo.json").is_file():
        pytest.fail(f"sample zoo {name} is missing (run `wslviz make-zoo`)")
    at = run_page(monkeypatch, str(path))
    zoo = load_zoo(path)
    assert len(table(at)) == zoo.n_checkpoints
    assert {c.key for c in at.get("plotly_chart")} == {"zoo_curves", "zoo_final", "zoo_parcoords", "zoo_hist",
                                                       "zoo_spectra"}
    constant = zplots.constant_columns(zoo.metadata)
    assert not set(constant) & set(table(at).columns)  # constant columns hidden from the table and the sort picker
    assert not set(constant) & set(at.selectbox(key="zoo_sort").options)
    if constant:
        assert any(f"{len(constant)} constant column(s) hidden: {constant[0]} = " in c.value for c in at.caption)
    at.toggle(key="zoo_final_only").set_value(True).run()
    assert len(table(at)) == zoo.n_models


def test_parallel_coordinates_codes_categories_and_colours_by_accuracy(meta):
    final = meta[meta["epoch"] == 3]
    fig = zplots.parallel_coordinates(final, ["optimizer", "lr", "seed"], "test_acc")
    par = fig.data[0]
    dims = {d.label: d for d in par.dimensions}
    assert list(dims) == ["optimizer", "lr (log)", "seed", "test accuracy"]  # lr spans 1e-4..1e-1: log axis
    opt = dims["optimizer"]
    assert list(opt.ticktext) == ["adam", "sgd"] and list(opt.tickvals) == [0, 1]
    assert list(opt.values) == [{"adam": 0, "sgd": 1}[v] for v in final["optimizer"]]
    np.testing.assert_allclose(dims["lr (log)"].values, np.log10(final["lr"]))
    assert list(dims["lr (log)"].ticktext) == ["0.0001", "0.001", "0.1"]  # a tick at each of the few values
    wd = zplots.parallel_coordinates(final, ["wd"]).data[0].dimensions[0]  # 12 values: ticks at the decades
    assert list(wd.ticktext) == ["1e-05", "0.0001", "0.001", "0.01"]
    np.testing.assert_allclose(wd.range, [-5, -5 + 11 / 3])  # the values themselves are log10(wd)
    grid = final.assign(decay=np.resize([0.0, 1e-4, 1e-3], len(final)))  # a zero and decades: crowded when linear
    decay = zplots.parallel_coordinates(grid, ["decay"]).data[0].dimensions[0]
    assert decay.label == "decay (ordered)" and list(decay.ticktext) == ["0", "0.0001", "0.001"]
    assert list(decay.values) == [{0.0: 0, 1e-4: 1, 1e-3: 2}[v] for v in grid["decay"]]
    np.testing.assert_allclose(par.line.color, final["test_acc"])
    np.testing.assert_allclose(dims["test accuracy"].values, final["test_acc"])
    with pytest.raises(ValueError, match="no column 'nope'"):
        zplots.parallel_coordinates(final, ["nope"])


def test_constant_columns_and_short_labels(meta):
    assert zplots.constant_columns(meta.assign(task="moons", momentum=0.9)) == ["task", "momentum"]
    assert zplots.short_label(1 / 3) == "0.3333" and zplots.short_label(7) == "7"
    assert zplots.short_label("a rather long category name") == "a rather long c…"


def test_log_axes_and_continuous_final_points(meta):
    final = meta.groupby("model_id")["epoch"].idxmax().to_numpy()
    for fig in (zplots.mean_curves(meta, "lr", "test_loss", log_y=True),
                zplots.accuracy_curves(meta, "lr", "test_loss", log_y=True),
                zplots.final_metric_vs(meta, final, "lr", "test_loss", log_y=True)):
        assert fig.layout.yaxis.type == "log"
    assert zplots.mean_curves(meta, "lr", "test_loss").layout.yaxis.type is None
    by_wd = zplots.final_metric_vs(meta, final, "wd")  # 12 values: points coloured on the continuous scale
    expected = style.numeric_colors(meta.loc[final, "wd"].to_numpy(float), "wd").colors()
    assert list(by_wd.data[0].marker.color) == expected and len(set(expected)) == 12


def test_page_log_toggle_and_parcoords_axes(monkeypatch, zoo_path):
    at = run_page(monkeypatch, zoo_path)
    at.selectbox(key="zoo_metric").set_value("test_loss").run()
    at.toggle(key="zoo_log").set_value(True).run()
    assert not at.exception
    specs = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert specs["zoo_curves"]["layout"]["yaxis"]["type"] == "log" == specs["zoo_final"]["layout"]["yaxis"]["type"]
    assert at.multiselect(key="zoo_parcoords_axes").value == ["lr"]  # seeds are not a setting worth an axis
    at.multiselect(key="zoo_parcoords_axes").set_value([]).run()
    assert any("at least one hyper-parameter" in i.value for i in at.info)
