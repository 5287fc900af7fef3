"""Typed results: frozen dataclasses read by attribute, and by the keys of the dicts they replaced."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import wslviz as wv
from wslviz.represent.predict import PropertyPrediction
from wslviz.understand.summaries import AlignmentReport, alignment_report


def test_a_property_prediction_keeps_its_documented_keys(moons_zoo):
    r = wv.predict_property(moons_zoo, target="test_acc", features="stats", model="linear", n_splits=3)
    assert isinstance(r, PropertyPrediction) and r.kind == "regression"
    assert r["r2"] == r.r2 and r["kendall_tau"] == r.kendall_tau and r["predictions"] is r.predictions
    assert "accuracy" not in r and set(dict(r)) >= {"r2", "kendall_tau", "predictions", "truth", "rows"}
    assert len(r.predictions) == r.n_rows == len(r.rows)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.r2 = 1.0  # type: ignore[misc]
    with pytest.raises(KeyError):
        r["balanced_accuracy"]


def test_an_alignment_report_without_a_task_has_no_barriers(moons_zoo):
    arch, w = moons_zoo.arch, moons_zoo.weights
    with_task = alignment_report(arch, moons_zoo.task, w[0], w[5])
    without = alignment_report(arch, None, w[0], w[5])
    assert isinstance(without, AlignmentReport) and without.barrier_before is None and "barrier_after" not in without
    assert with_task.barrier_after == with_task["barrier_after"] and np.isfinite(with_task.barrier_before)
    assert with_task.distance_after <= with_task.distance_before
    assert with_task.layers == [k for k in with_task.before if k != "total"]
    assert [m.group for m in with_task.matrices] == [m["group"] for m in with_task.matrices]
    torch.testing.assert_close(wv.model_outputs(arch, with_task.aligned, moons_zoo.task.x_test),
                               wv.model_outputs(arch, w[5], moons_zoo.task.x_test), rtol=1e-4, atol=1e-5)
