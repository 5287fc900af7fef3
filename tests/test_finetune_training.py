"""Digit task variants, the fine-tuning and federated recipes, and training from given weights and subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL_CNN

from wslviz.core.arch import Architecture
from wslviz.core.tasks import DIGITS_VARIANTS, TaskError, make_task, validation_split
from wslviz.core.training import (
    FederatedRecipe,
    FinetuneRecipe,
    average_clients,
    federated_rounds,
    init_weights,
    non_iid_split,
    train,
    train_zoo,
)

ARCH = Architecture(SMALL_CNN)


def test_digit_variants_transform_the_same_split():
    plain = make_task("digits")
    views = {v: make_task({"name": "digits", "variant": v}) for v in DIGITS_VARIANTS}
    for t in views.values():
        assert torch.equal(t.y_test, plain.y_test) and t.x_test.shape == plain.x_test.shape
        assert 0 <= float(t.x_train.min()) and float(t.x_train.max()) <= 1
    assert torch.equal(views["original"].x_test, plain.x_test)
    assert torch.equal(views["rotate90"].x_test, torch.rot90(plain.x_test, 1, (2, 3)))
    assert torch.equal(views["mirror"].x_test, plain.x_test.flip(-1))
    assert torch.equal(views["invert"].x_test, 1 - plain.x_test)
    assert torch.equal(views["noise"].x_test, make_task({"name": "digits", "variant": "noise"}).x_test)
    both = make_task({"name": "digits", "variant": ["original", "mirror"]})
    assert torch.equal(both.x_test, torch.cat([plain.x_test, views["mirror"].x_test]))
    with pytest.raises(TaskError, match="unknown digits variant"):
        make_task({"name": "digits", "variant": "upside"})
    with pytest.raises(TaskError, match="digits only"):
        make_task({"name": "moons", "variant": "mirror"})


def test_validation_split_is_the_tail_of_the_training_split():
    task = make_task({"name": "digits", "variant": ["original", "invert"]})
    val = validation_split(task, 0.25)
    n = len(task.x_train) // 2
    cut = n - round(n * 0.25)
    halves = task.x_train.view(2, n, 1, 8, 8)
    assert torch.equal(val.x_train, halves[:, :cut].reshape(-1, 1, 8, 8))
    assert torch.equal(val.x_test, halves[:, cut:].reshape(-1, 1, 8, 8))
    assert not set(map(tuple, val.x_test.flatten(1).tolist())) & set(map(tuple, task.x_test.flatten(1).tolist()))


def test_training_from_given_weights_on_given_subsets():
    task = make_task("digits")
    start = init_weights(ARCH, [5])
    subsets = [torch.arange(0, 64), torch.arange(64, 96)]
    w, meta = train(ARCH, task, [{"seed": 1}, {"seed": 2}], 2, [0, 2], initial=start.expand(2, -1),
                    subsets=subsets)
    assert torch.equal(w[0], start[0]) and torch.equal(w[2], start[0])  # epoch 0 is the given start
    again, _ = train(ARCH, task, [{"seed": 1}, {"seed": 2}], 2, [0, 2], initial=start.expand(2, -1),
                     subsets=subsets)
    assert torch.equal(w, again)
    # a model only sees its subset: training the second alone on it gives the same weights
    alone, _ = train(ARCH, task, [{"seed": 2}], 2, [2], initial=start, subsets=subsets[1:])
    torch.testing.assert_close(alone[0], w[3], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="fewer than batch size"):
        train(ARCH, task, [{"seed": 1}], 1, [1], subsets=[torch.arange(10)])


def test_non_iid_split_deals_each_example_once():
    y = make_task("digits").y_train
    parts = non_iid_split(y, n_clients=10, classes_per_client=3, seed=0)
    allidx = torch.cat(parts)
    assert len(allidx) == len(y) and len(torch.unique(allidx)) == len(y)
    for c, idx in enumerate(parts):
        assert set(y[idx].tolist()) == {(3 * c + j) % 10 for j in range(3)}


def test_federated_rounds_average_the_clients_each_round():
    task = make_task("digits")
    subsets = non_iid_split(task.y_train, 4, 3)
    start = init_weights(ARCH, [0])[0]
    clients, glob = federated_rounds(ARCH, task, start, subsets, {"lr": 0.05}, rounds=2, local_epochs=1)
    assert clients.shape == (2, 4, ARCH.n_params) and glob.shape == (3, ARCH.n_params)
    assert torch.equal(glob[0], start)
    sizes = [len(s) for s in subsets]
    for r in range(2):
        assert torch.equal(glob[r + 1], average_clients(clients[r], sizes))
    n = torch.tensor(sizes, dtype=torch.float64)
    torch.testing.assert_close(average_clients(clients[0], sizes).double(), (n / n.sum()) @ clients[0].double(),
                               atol=1e-6, rtol=0)


def test_tiny_finetune_and_federated_recipes_are_deterministic():
    ft = FinetuneRecipe(name="tiny-ft", description="", arch=SMALL_CNN,
                        task={"name": "digits", "variant": ["original", "mirror"]}, base={"lr": 0.05},
                        base_epochs=1, base_checkpoints=(0, 1), grid={"lr": (0.01, 0.02)}, seeds=2, epochs=1,
                        checkpoints=(1,))
    zoo = train_zoo(ft, seed=0)
    meta = zoo.metadata
    assert zoo.n_models == 1 + 2 * 2 * 2 and list(meta["role"].iloc[:2]) == ["base", "base"]
    assert sorted(meta["task"].unique()) == ["all", "mirror", "original"]
    assert {"acc_original", "acc_mirror"} <= set(meta.columns)
    np.testing.assert_allclose(meta["test_acc"], (meta["acc_original"] + meta["acc_mirror"]) / 2, atol=1e-6)
    assert torch.equal(zoo.weights, train_zoo(ft, seed=0).weights)
    fed = FederatedRecipe(name="tiny-fed", description="", arch=SMALL_CNN, task={"name": "digits"}, n_clients=3,
                          classes_per_client=2, rounds=2, local_epochs=1, hparams={"lr": 0.05})
    zoo = train_zoo(fed, seed=1)
    assert zoo.n_checkpoints == 3 * 3 and list(zoo.metadata["round"].iloc[:3]) == [0, 1, 2]
    assert list(zoo.metadata["classes"].unique()) == ["0 1", "2 3", "4 5"]
    assert torch.equal(zoo.weights, train_zoo(fed, seed=1).weights)
