"""The Projections figures without Streamlit: WebGL markers, search and highlight, neighbours ringed,
size/opacity by a column, density contours, trails up to an epoch, linked histograms and their ranges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wslviz.plots import embedding as eplots
from wslviz.plots import style


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


def _round(v: float) -> bool:
    """A 1, 2 or 5 x 10^k multiple (0 included)."""
    return v == 0 or f"{abs(v):.6e}"[0] in "125" and float(f"{abs(v):.0e}") == pytest.approx(abs(v))


def test_colour_bar_ticks_are_round_and_inside_the_range():
    for values in ([0.573, 0.61, 0.777], [0.5, 0.98], [-0.3, 0.05, 0.3], [3.0, 17.0], [120.0, 4100.0]):
        ticks = style.nice_ticks(min(values), max(values))
        assert len(ticks) >= 2 and all(min(values) <= t <= max(values) for t in ticks)
        step = ticks[1] - ticks[0]  # a round step, and every tick a multiple of it
        assert np.allclose(np.diff(ticks), step) and _round(step)
        assert all(float(np.round(t / step, 6)).is_integer() for t in ticks)
    assert style.nice_ticks(3, 17, integer=True).tolist() == [5, 10, 15]
    assert style.nice_ticks(1, 3, integer=True).tolist() == [1, 2, 3]  # never a step below 1
    bar = style.numeric_colors([0.573, 0.65, 0.777], "acc").colorbar  # was 0.573 ... 0.777
    assert bar["ticktext"] == ["0.6", "0.65", "0.7", "0.75"] and all(0 <= v <= 1 for v in bar["tickvals"])
    # log: decades over a long range, 1-2-5 over a short one, labelled in plain numbers
    assert style.numeric_colors([1e-5, 3e-2], "wd").colorbar["ticktext"] == ["0.00001", "0.0001", "0.001", "0.01"]
    bar = style.numeric_colors([0.003, 0.1], "lr").colorbar
    assert bar["ticktext"] == ["0.005", "0.01", "0.02", "0.05", "0.1"]
    assert all(0 <= v <= 1 + 1e-9 for v in bar["tickvals"])
    assert len(style.numeric_colors([0.03, 0.09], "lr").colorbar["ticktext"]) >= 2  # no decade inside: still ticks


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


def test_zero_sits_a_decade_below_the_smallest_positive_value_on_a_log_scale():
    """Weight decays 0, 0.0001, 0.001, 0.01: log-scaled, 0 one decade below 0.0001 (evenly spread, four clearly
    different colours), with its own tick labelled 0."""
    c = style.numeric_colors(np.array([0.0, 1e-4, 1e-3, 1e-2]), "wd")
    assert c.log
    np.testing.assert_allclose(c.position, [0, 1 / 3, 2 / 3, 1])
    assert len(set(c.colors())) == 4
    assert c.colorbar["ticktext"] == ["0", "0.0001", "0.001", "0.01"]
    assert not style.numeric_colors(np.array([0.0, 0.5, 1.0]), "x").log  # a linear column with a zero stays linear
