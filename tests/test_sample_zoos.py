"""The committed sample zoos: what the recipes promise, and metadata that ``wv.evaluate`` reproduces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sample_zoo

import wslviz as wv
from wslviz.core.training import RECIPES, init_weights

NAMES = ["moons-mlp", "spirals-tanh", "digits-cnn"]
MIN_MODELS = {"moons-mlp": 100, "spirals-tanh": 30, "digits-cnn": 200}


@pytest.fixture(scope="module", params=NAMES)
def zoo(request):
    return sample_zoo(request.param)


def test_zoo_matches_its_recipe(zoo):
    recipe = RECIPES[zoo.name]
    meta = zoo.metadata
    assert zoo.arch == wv.Architecture(recipe.arch)
    assert zoo.n_models >= MIN_MODELS[zoo.name]
    assert zoo.n_models == recipe.n_models
    epochs = sorted(meta["epoch"].unique())
    assert epochs == list(recipe.checkpoints) and epochs[0] == 0 and len(epochs) >= 6
    assert (meta.groupby("model_id")["epoch"].count() == len(epochs)).all()
    for name, values in recipe.grid.items():  # every varied hyper-parameter is recorded, with every value used
        assert sorted(meta[name].unique()) == sorted(values)
    assert meta["seed"].nunique() == zoo.n_models


@pytest.mark.parametrize("split", ["train", "test"])
def test_metadata_is_reproduced_by_evaluate(zoo, split):
    # a random sample of checkpoints (every epoch is represented) keeps this fast on the larger zoos
    rows = np.sort(np.random.default_rng(0).choice(zoo.n_checkpoints, size=min(150, zoo.n_checkpoints),
                                                   replace=False))
    meta = zoo.metadata.iloc[rows]
    assert set(meta["epoch"]) == set(zoo.metadata["epoch"])
    r = wv.evaluate(zoo.arch, zoo.task, zoo.weights[torch.tensor(rows)], split=split)
    np.testing.assert_allclose(meta[f"{split}_acc"].to_numpy(), r["accuracy"].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(meta[f"{split}_loss"].to_numpy(), r["loss"].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(zoo.metadata["ggap"], zoo.metadata["train_acc"] - zoo.metadata["test_acc"], atol=1e-12)


def test_epoch_zero_is_the_untrained_model(zoo):
    first = zoo.metadata[zoo.metadata["epoch"] == 0]
    expected = init_weights(zoo.arch, first["seed"], first["init_scale"].to_numpy())
    assert torch.equal(zoo.weights[torch.tensor(first.index.to_numpy())], expected)


def test_training_improved_every_zoo(zoo):
    meta = zoo.metadata
    final = meta.iloc[zoo.final_index()]
    untrained = meta[meta["epoch"] == 0]
    assert final["test_acc"].median() > untrained["test_acc"].median() + 0.3


def test_digits_cnn_accuracy_spreads_widely():
    zoo = sample_zoo("digits-cnn")
    final = zoo.metadata.iloc[zoo.final_index()]["test_acc"]
    assert final.min() < 0.6
    assert final.max() > 0.95
