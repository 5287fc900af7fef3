"""What a computation will cost: unit costs measured on a zoo, and the arithmetic of estimates from them."""

from __future__ import annotations

import pytest
import torch
from conftest import random_zoo, sample_zoo

from wslviz.scale.cost import UnitCosts, describe_seconds, estimate, measure_unit_costs


def test_measured_costs_are_positive_and_cover_what_the_zoo_allows(mlp_arch, moons_task):
    zoo = random_zoo(mlp_arch, moons_task, n_models=4)
    costs = measure_unit_costs(zoo.arch, zoo.task, zoo.weights)
    # timings: only their signs are certain (a fit through two noisy times may give a zero slope)
    assert min(costs.per_call, costs.per_example, costs.alone) >= 0 and costs.matching > 0
    assert costs.evaluation_seconds("test") > 0
    assert costs.test_examples == len(moons_task.y_test) and costs.train_examples == len(moons_task.y_train)
    without_task = measure_unit_costs(zoo.arch, None, zoo.weights)
    assert without_task.per_call is None and without_task.evaluation_seconds() is None
    assert measure_unit_costs(zoo.arch, zoo.task, zoo.weights[:1]).matching is None  # nothing to match


def test_estimates_add_up_the_counts():
    costs = UnitCosts(per_call=0.01, per_example=0.001, alone=0.05, test_examples=100, train_examples=300,
                      matching=2.0)
    assert estimate(costs, [(10, "test")]) == pytest.approx(10 * (0.01 + 0.1))
    assert estimate(costs, [(10, "train"), (4, 50)], 3) == pytest.approx(10 * 0.31 + 4 * 0.06 + 3 * 2.0)
    assert estimate(costs, [(2, 50, False)]) == pytest.approx(2 * (0.05 + 0.05))
    assert estimate(costs, [(0, "test")]) == 0.0
    no_matching = UnitCosts(0.01, 0.001, 0.05, 100, 300, None)
    assert estimate(no_matching, [(1, "test")], 1) is None and estimate(no_matching, [(1, "test")]) is not None


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "under a second"), (42.4, "about 42 s"), (600, "about 10 min"),
                                               (7200, "about 2.0 h")])
def test_described_seconds(seconds, text):
    assert describe_seconds(seconds) == text


def test_measuring_does_not_touch_the_weights(mlp_arch, moons_task):
    zoo = random_zoo(mlp_arch, moons_task, n_models=3)
    before = zoo.weights.clone()
    measure_unit_costs(zoo.arch, zoo.task, zoo.weights)
    assert torch.equal(zoo.weights, before)


@pytest.mark.asks_first
def test_a_long_computation_asks_first_and_runs_once_confirmed(monkeypatch):
    from conftest import ROOT
    from pagetest import run_page

    from wslviz.ui import results

    monkeypatch.setattr(results, "ASK_ABOVE", 0.0)  # every computation counts as long
    at = run_page(monkeypatch, str(ROOT / "pages" / "9_Lineage.py"), str(ROOT / "sample_zoo" / "digits-lineage"))
    assert at.button(key="lin_go").disabled
    estimate = [c.value for c in at.caption if c.value.startswith("Estimated")]
    assert len(estimate) == 1 and "435 weight matchings" in estimate[0]  # 30 models: every pair
    box = at.checkbox(key="lin_ok")
    assert box.label.startswith("This takes") and box.label.endswith("run it anyway") and not box.value
    box.check().run()
    assert not at.button(key="lin_go").disabled
    at.button(key="lin_go").click().run()
    assert not at.exception and "lin_chart" in str([c.proto.id for c in at.get("plotly_chart")])


def test_path_work_adds_the_batchnorm_correction_only_where_it_applies(mlp_arch, moons_task):
    from wslviz.scale.cost import path_work

    assert path_work(mlp_arch, moons_task, 50, ("test", "train"), "reset") == [(50, "test"), (50, "train")]
    resnet = sample_zoo("digits-resnet")
    n = min(2048, len(resnet.task.x_train))
    assert path_work(resnet.arch, resnet.task, 50, ("test",), "reset") == [(50, "test"), (50, n)]
    assert path_work(resnet.arch, resnet.task, 50, ("test", "train"), "repair") == [(50, "test"), (50, "train"),
                                                                                    (100, n)]
    assert path_work(resnet.arch, resnet.task, 50, ("test",), "none") == [(50, "test")]
