"""The Projections figures without Streamlit: WebGL markers, search and highlight, neighbours ringed,
size/opacity by a column, density contours, trails up to an epoch, linked histograms and their ranges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wslviz.plots import embedding as eplots


def meta(n_models: int = 6, epochs: int = 4) -> pd.DataFrame:
    rows = np.arange(n_models * epochs)
    return pd.DataFrame({"model_id": rows // epochs, "epoch": rows % epochs,
                         "lr": np.where((rows // epochs) % 2, 0.1, 0.001), "test_acc": np.linspace(0.5, 1.0, len(rows)),
                         "optimizer": np.where((rows // epochs) % 3 == 0, "adam", "sgd")})


def markers(fig) -> list:
    return [t for t in fig.data
            if getattr(t, "mode", None) == "markers" and t.name not in ("nearest neighbours", "query")]


def drawn_rows(fig) -> list[int]:
    return sorted(int(r) for t in markers(fig) for r in np.asarray(t.customdata)[:, 0])


def test_scatter_is_webgl_without_trails_by_default_and_labels_rows_with_hash():
    m = meta()
    fig = eplots.projection_figure(np.random.default_rng(0).normal(size=(len(m), 2)), m, color_by="test_acc")
    assert {t.type for t in fig.data} == {"scattergl"}
    assert not [t for t in fig.data if getattr(t, "mode", None) == "lines"]  # no hairball unless asked for
    assert markers(fig)[0].hovertemplate.startswith("#%{customdata[0]}")
    assert drawn_rows(fig) == list(range(len(m)))


def test_highlight_dims_the_rest_and_keeps_colours():
    m = meta()
    match = eplots.search_rows(m, "lr = 0.1 and epoch >= 2")
    assert match.tolist() == ((m["lr"] == 0.1) & (m["epoch"] >= 2)).tolist() and match.sum() == 6
    fig = eplots.projection_figure(np.zeros((len(m), 2)), m, color_by="test_acc", highlight=np.flatnonzero(match))
    t = markers(fig)[0]
    opacity = np.asarray(t.marker.opacity)
    assert np.all(opacity[match] == 1.0) and np.all(opacity[~match] == eplots.DIMMED)
    assert set(np.asarray(t.marker.line.color, dtype=object).ravel()) <= {"white"}  # no black rings
    np.testing.assert_array_equal(np.asarray(t.marker.color), eplots.projection_figure(
        np.zeros((len(m), 2)), m, color_by="test_acc").data[0].marker.color)  # colours unchanged


def test_search_syntax():
    m = meta()
    assert eplots.search_rows(m, "").all()
    assert eplots.search_rows(m, "ADAM").tolist() == (m["optimizer"] == "adam").tolist()
    assert np.flatnonzero(eplots.search_rows(m, "#7")).tolist() == [7]
    both = (m.optimizer == "sgd") & (m.lr == 0.001)
    assert eplots.search_rows(m, "optimizer != adam & lr=0.001").tolist() == both.tolist()
    with pytest.raises(ValueError, match="no column"):
        eplots.search_rows(m, "width = 3")
    with pytest.raises(ValueError, match="not a number"):
        eplots.search_rows(m, "lr = fast")
    with pytest.raises(ValueError, match="text"):
        eplots.search_rows(m, "optimizer > adam")


def test_neighbours_ringed_visible_filter_and_3d_dimming():
    m = meta()
    coords = np.random.default_rng(1).normal(size=(len(m), 3))
    fig = eplots.projection_figure(coords, m, color_by="optimizer", selected=[0], neighbours=[5, 9],
                                   visible=np.arange(len(m)) != 9)
    ring = [t for t in fig.data if t.name == "nearest neighbours"]
    assert len(ring) == 1 and np.asarray(ring[0].customdata)[:, 0].tolist() == [5]  # 9 is filtered out
    assert [np.asarray(t.customdata)[:, 0].tolist() for t in fig.data if t.name == "query"] == [[0]]
    assert 9 not in drawn_rows(fig) and len(drawn_rows(fig)) == len(m) - 1
    full = [t for t in markers(fig) if t.marker.opacity == 1.0]
    assert sorted(int(r) for t in full for r in np.asarray(t.customdata)[:, 0]) == [0, 5]


def test_size_and_opacity_by_column_and_density():
    m = meta()
    fig = eplots.projection_figure(np.random.default_rng(2).normal(size=(len(m), 2)), m, size_by="lr",
                                   opacity_by="test_acc", density=True)
    assert fig.data[0].type == "histogram2dcontour"  # under the points
    t = markers(fig)[0]
    size = np.asarray(t.marker.size)
    lo, hi = eplots.SIZES[2]
    assert set(size.round(6)) == {lo, hi}  # two learning rates, at the ends of the size range
    opacity = np.asarray(t.marker.opacity)
    assert opacity.argmin() == 0 and opacity.argmax() == len(m) - 1 and np.all(np.diff(opacity) > 0)


def test_trails_up_to_an_epoch():
    m = meta(3, 4)
    coords = np.column_stack([m["epoch"], m["model_id"]]).astype(float)
    upto = m["epoch"].to_numpy() <= 2
    fig = eplots.projection_figure(coords, m, lines=upto, visible=m["epoch"].to_numpy() == 2)
    trail = [t for t in fig.data if getattr(t, "mode", None) == "lines"][0]
    assert [x for x in trail.x if x is not None] == [0, 1, 2] * 3  # each model's epochs 0..2, in order
    assert drawn_rows(fig) == np.flatnonzero(m["epoch"] == 2).tolist()


def test_integer_colour_bar_has_integer_ticks():
    m = meta(2, 8)
    bar = eplots.projection_figure(np.zeros((len(m), 2)), m, color_by="epoch").data[0].marker.colorbar
    assert all(float(t).is_integer() for t in bar.ticktext)


def test_histogram_ranges_and_selection():
    m = meta()
    kept = eplots.range_mask(m, {"test_acc": (0.75, 1.0)})
    assert kept.tolist() == (m["test_acc"] >= 0.75).tolist()
    fig = eplots.histogram_figure(m, "test_acc", kept, (0.75, 1.0))
    all_, shown = fig.data
    assert sum(all_.y) == len(m) and sum(shown.y) == kept.sum()
    assert fig.layout.dragmode == "select" and len(fig.layout.shapes) == 1
    epochs = eplots.histogram_figure(m, "epoch")
    assert list(epochs.data[0].x) == [0, 1, 2, 3] and epochs.layout.xaxis.dtick == 1  # a bar per epoch
    assert eplots.histogram_figure(m, "lr").layout.xaxis.type == "log"
    event = {"points": [{"customdata": [0.6, 0.7]}, {"customdata": [0.8, 0.9]}], "box": []}
    assert eplots.range_from_selection(event) == (0.6, 0.9)
    assert eplots.range_from_selection({"points": [], "box": [{"x": [0.9, 0.2]}]}) == (0.2, 0.9)
    assert eplots.range_from_selection({"points": [], "box": []}) is None
