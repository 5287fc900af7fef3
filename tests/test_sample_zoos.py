"""The committed sample zoos: what the recipes promise, and metadata that ``wv.evaluate`` reproduces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import sample_zoo
from rounding import assert_accuracy_close, network_terms

import wslviz as wv
from wslviz.core.evaluation import model_outputs
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


@pytest.mark.kernels
@pytest.mark.parametrize("split", ["train", "test"])
def test_metadata_is_reproduced_by_evaluate(zoo, split):
    # a random sample of checkpoints (every epoch is represented) keeps this fast on the larger zoos
    rows = np.sort(np.random.default_rng(0).choice(zoo.n_checkpoints, size=min(150, zoo.n_checkpoints),
                                                   replace=False))
    meta = zoo.metadata.iloc[rows]
    assert set(meta["epoch"]) == set(zoo.metadata["epoch"])
    w = zoo.weights[torch.tensor(rows)]
    r = wv.evaluate(zoo.arch, zoo.task, w, split=split)
    # the metadata was computed when the zoo was made, in other batches and maybe on another CPU: predictions whose
    # two largest logits tie to rounding may have gone the other way
    x = zoo.task.split(split)[0]
    assert_accuracy_close(r["accuracy"], meta[f"{split}_acc"].to_numpy(), model_outputs(zoo.arch, w, x),
                          network_terms(zoo.arch, len(x)))
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


def test_digits_finetunes_base_and_finetunes():
    zoo = sample_zoo("digits-finetunes")
    recipe = RECIPES["digits-finetunes"]
    meta = zoo.metadata
    assert zoo.arch == wv.Architecture(recipe.arch) and zoo.task.spec["variant"] == list(recipe.task["variant"])
    final = meta.iloc[zoo.final_index()]
    base, fts = final[final["role"] == "base"], final[final["role"] == "finetune"]
    assert len(base) == 1 and len(fts) >= 24
    assert (fts.groupby("task")["seed"].nunique() >= 3).all()
    assert set(fts["task"]) == set(recipe.task["variant"])
    # every fine-tune starts from the base and is better than it on its own task
    for _, row in fts.iterrows():
        assert row[f"acc_{row['task']}"] > base[f"acc_{row['task']}"].iloc[0]
    r = wv.evaluate(zoo.arch, zoo.task, zoo.weights)
    np.testing.assert_allclose(meta["test_acc"], r["accuracy"].numpy(), atol=1e-5)
    for v in recipe.task["variant"]:
        task = wv.make_task({**recipe.task, "variant": v})
        np.testing.assert_allclose(meta[f"acc_{v}"], wv.evaluate(zoo.arch, task, zoo.weights)["accuracy"].numpy(),
                                   atol=1e-5)


def test_digits_federated_clients_are_non_iid_and_fedavg_learns_all_classes():
    from wslviz.generation.merging import fedavg

    zoo = sample_zoo("digits-federated")
    recipe = RECIPES["digits-federated"]
    meta = zoo.metadata
    assert zoo.n_models == recipe.n_clients and sorted(meta["round"].unique()) == list(range(recipe.rounds + 1))
    start = zoo.weights[torch.as_tensor(np.flatnonzero(meta["round"] == 0))]
    assert (start == start[0]).all()  # one common start
    last = np.flatnonzero(meta["round"] == recipe.rounds)
    w = zoo.weights[torch.as_tensor(last)]
    pred = wv.model_outputs(zoo.arch, w, zoo.task.x_test).argmax(-1)
    for i, classes in enumerate(meta["classes"].iloc[last]):
        own = torch.tensor([int(c) for c in classes.split()])
        assert float(torch.isin(pred[i], own).double().mean()) > 0.9  # a client predicts its own classes
    assert meta["test_acc"].iloc[last].max() < 0.4
    glob = fedavg(zoo.arch, w, meta["n_examples"].iloc[last].to_numpy())
    assert float(wv.evaluate(zoo.arch, zoo.task, glob)["accuracy"]) > 0.7


def test_digits_inr_matches_its_recipe_and_is_split_by_image():
    from wslviz.core.inr import psnr, resampled_digits, siren_init

    zoo = sample_zoo("digits-inr")
    recipe = RECIPES["digits-inr"]
    meta = zoo.metadata
    images, labels = resampled_digits(recipe.image_size)
    k = recipe.fits_per_image
    assert zoo.arch == wv.Architecture(recipe.arch) and zoo.task is None
    assert zoo.n_checkpoints == k * len(images) >= 1000 and zoo.n_models == len(images)
    assert zoo.n_params < recipe.image_size ** 2  # fewer parameters than pixels
    assert (meta["image_index"] == meta["model_id"]).all() and (meta["label"] == labels[meta["image_index"]]).all()
    assert meta["seed"].nunique() == zoo.n_checkpoints and (meta.groupby("model_id")["fit"].nunique() == k).all()
    assert (meta.groupby("image_index")["split"].nunique() == 1).all()  # every image on one side only
    fractions = meta.drop_duplicates("image_index")["split"].value_counts(normalize=True)
    np.testing.assert_allclose([fractions[s] for s in ("train", "val", "test")], recipe.split, atol=1e-3)
    assert (zoo.path / "weights.safetensors").stat().st_size < 6e6
    rows = np.sort(np.random.default_rng(0).choice(zoo.n_checkpoints, size=200, replace=False))
    sub = torch.as_tensor(rows)
    np.testing.assert_allclose(psnr(zoo.arch, zoo.weights[sub], images[torch.as_tensor(meta["image_index"].to_numpy()[
        rows])]), meta["psnr"].to_numpy()[rows], rtol=0, atol=1e-3)
    assert meta["psnr"].median() > 24
    # fitting moved every INR away from its own start, and the starts differ between fits of one image
    start = siren_init(zoo.arch, meta["seed"].to_numpy()[rows])
    assert ((zoo.weights[sub] - start).norm(dim=1) > 0.1).all()
    assert not torch.allclose(start[0], siren_init(zoo.arch, [int(meta["seed"].iloc[rows[0]]) + 1])[0])
