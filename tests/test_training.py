"""The batched trainer: per-model gradients and optimiser steps equal single-model PyTorch, determinism."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.evaluation import evaluate
from wslviz.core.tasks import make_task
from wslviz.core.training import (
    ADAMW_BETAS,
    BatchedOptimizer,
    Recipe,
    batched_gradient,
    init_weights,
    train,
    train_zoo,
)

CNN_WITH_DROPOUT = {
    "input_shape": [1, 8, 8],
    "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 3, "kernel_size": 3},
        {"type": "relu"},
        {"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2},
        {"type": "tanh"},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.0},
        {"type": "linear", "in_features": 16, "out_features": 10},
    ],
}

TINY = Recipe(
    name="tiny-moons",
    description="test recipe",
    arch={"input_shape": [2], "layers": [
        {"type": "linear", "in_features": 2, "out_features": 8}, {"type": "relu"},
        {"type": "dropout", "p": 0.0},
        {"type": "linear", "in_features": 8, "out_features": 2}]},
    task={"name": "moons", "n_samples": 200, "seed": 1},
    n_models=6,
    grid={"lr": (0.01, 0.1), "batch_size": (16, 32), "optimizer": ("sgd", "adam"), "dropout": (0.0, 0.3),
          "train_fraction": (0.5, 1.0)},
    epochs=3,
    checkpoints=(0, 1, 3),
)


def module_gradient(arch: Architecture, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One model's gradient of its mean cross-entropy, through a plain nn.Module."""
    model = arch.build(w)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return arch.flatten({name: p.grad for name, p in model.named_parameters()})


@pytest.mark.parametrize("spec", [mlp_spec([2, 16, 16, 2], "relu"), CNN_WITH_DROPOUT], ids=["mlp", "cnn"])
def test_batched_gradient_rows_equal_each_models_own_gradient(spec):
    arch = Architecture(spec)
    task = make_task("digits" if len(arch.input_shape) == 3 else "moons")
    b, n = 5, 24
    g = torch.Generator().manual_seed(0)
    w = torch.randn(b, arch.n_params, generator=g) * 0.5
    idx = torch.randint(0, len(task.x_train), (b, n), generator=g)  # a different batch per model
    losses, grad = batched_gradient(arch, task, w, task.x_train[idx], task.y_train[idx])
    for i in range(b):
        expected = module_gradient(arch, w[i], task.x_train[idx[i]], task.y_train[idx[i]])
        torch.testing.assert_close(grad[i], expected, rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            own = F.cross_entropy(arch.build(w[i])(task.x_train[idx[i]]), task.y_train[idx[i]])
        torch.testing.assert_close(losses[i], own, rtol=1e-5, atol=1e-6)


def test_batched_optimizer_follows_torch_optim_per_model():
    arch = Architecture(mlp_spec([2, 6, 3], "tanh"))
    task = make_task("spirals")
    hp = pd.DataFrame({"optimizer": ["sgd", "adam", "sgd", "adam", "adamw"], "lr": [0.1, 0.01, 0.05, 0.003, 0.01],
                       "weight_decay": [0.0, 1e-2, 1e-3, 0.0, 0.5], "momentum": [0.9, 0.9, 0.5, 0.9, 0.9]})
    w0 = init_weights(arch, [1, 2, 3, 4, 5])
    # model 2 sits out step 1 (its subset is used up), so its weights and state must not move then
    active = [torch.tensor([True, True, True, True, True]), torch.tensor([True, True, False, True, True]),
              torch.tensor([True, True, True, True, True])]
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, len(task.x_train), (5, 16), generator=g) for _ in active]

    w = w0.clone()
    opt = BatchedOptimizer(hp, arch.n_params)
    for idx, act in zip(batches, active, strict=True):
        grad = batched_gradient(arch, task, w, task.x_train[idx], task.y_train[idx])[1]
        opt.step(w, grad, act)

    for i, row in hp.iterrows():
        model = arch.build(w0[i]).train()
        if row["optimizer"] == "sgd":
            ref = torch.optim.SGD(model.parameters(), lr=row["lr"], momentum=row["momentum"],
                                  weight_decay=row["weight_decay"])
        elif row["optimizer"] == "adam":
            ref = torch.optim.Adam(model.parameters(), lr=row["lr"], weight_decay=row["weight_decay"])
        else:
            ref = torch.optim.AdamW(model.parameters(), lr=row["lr"], weight_decay=row["weight_decay"],
                                    betas=ADAMW_BETAS)
        for idx, act in zip(batches, active, strict=True):
            if not act[i]:
                continue
            ref.zero_grad()
            F.cross_entropy(model(task.x_train[idx[i]]), task.y_train[idx[i]]).backward()
            ref.step()
        expected = arch.flatten(model.state_dict())
        torch.testing.assert_close(w[i], expected, rtol=1e-5, atol=1e-6)
    assert not torch.equal(w, w0)


def test_init_weights_follow_pytorch_bounds_and_depend_only_on_own_seed():
    arch = Architecture(CNN_WITH_DROPOUT)
    w = init_weights(arch, [7, 8, 9], [1.0, 0.5, 2.0])
    for p in arch.layout:
        layer = arch.layers[p.layer]
        fan_in = layer["in_features"] if layer["type"] == "linear" else layer["in_channels"] * layer["kernel_size"] ** 2
        for row, scale in zip(w[:, p.slice], [1.0, 0.5, 2.0], strict=True):
            bound = scale / fan_in ** 0.5
            assert row.abs().max() <= bound
            if p.numel >= 30:  # uniform over the whole interval, not a narrower one
                assert row.abs().max() > 0.7 * bound
    torch.testing.assert_close(init_weights(arch, [8], [0.5])[0], w[1], rtol=0, atol=0)
    assert not torch.equal(w[0], init_weights(arch, [8], [1.0])[0])


def test_model_does_not_depend_on_its_batch_mates():
    arch = Architecture(TINY.arch)
    task = make_task(TINY.task)
    hp = pd.DataFrame({"seed": [5, 6, 7], "lr": [0.05, 0.2, 0.01], "batch_size": 16,
                       "optimizer": ["adam", "sgd", "sgd"], "train_fraction": [1.0, 0.5, 0.25]})
    together, _ = train(arch, task, hp, epochs=2, checkpoints=[2])
    alone, _ = train(arch, task, hp.iloc[[0]], epochs=2, checkpoints=[2])
    torch.testing.assert_close(together[0], alone[0], rtol=1e-5, atol=1e-6)


def test_training_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    first = train_zoo(TINY, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = train_zoo(TINY, seed=3)
    assert torch.equal(first.weights, second.weights)
    pd.testing.assert_frame_equal(first.metadata, second.metadata)
    other = train_zoo(TINY, seed=4)
    assert not torch.equal(first.weights, other.weights)


def test_checkpoints_and_metadata():
    zoo = train_zoo(TINY, seed=0)
    meta = zoo.metadata
    assert len(meta) == TINY.n_models * len(TINY.checkpoints) == zoo.weights.shape[0]
    assert meta.groupby("model_id")["epoch"].apply(list).tolist() == [list(TINY.checkpoints)] * TINY.n_models
    for name, values in TINY.grid.items():
        assert set(meta[name]) == set(values)
    # epoch 0 is the untrained model: its seed and init scale reproduce it
    first = meta[meta["epoch"] == 0]
    expected = init_weights(zoo.arch, first["seed"], first["init_scale"].to_numpy())
    assert torch.equal(zoo.weights[torch.tensor(first.index.to_numpy())], expected)
    for split in ("train", "test"):
        r = evaluate(zoo.arch, zoo.task, zoo.weights, split=split)
        torch.testing.assert_close(torch.tensor(meta[f"{split}_acc"].to_numpy(), dtype=torch.float32), r["accuracy"])
        torch.testing.assert_close(torch.tensor(meta[f"{split}_loss"].to_numpy(), dtype=torch.float32), r["loss"])
    assert (meta["ggap"] == meta["train_acc"] - meta["test_acc"]).all()
    # training lowers the training loss for every model
    loss = meta.pivot(index="model_id", columns="epoch", values="train_loss")
    assert (loss[TINY.checkpoints[-1]] < loss[0]).all()


@pytest.mark.parametrize("bad, message", [
    (pd.DataFrame({"seed": [0], "learning_rate": [0.1]}), "unknown hyper-parameter"),
    (pd.DataFrame({"seed": [0], "optimizer": ["rmsprop"]}), "unknown optimizer"),
    (pd.DataFrame({"seed": [0], "train_fraction": [0.0]}), "train_fraction"),
    (pd.DataFrame({"lr": [0.1]}), "seed"),
])
def test_bad_hyperparameters_are_named(bad, message):
    arch = Architecture(TINY.arch)
    with pytest.raises(ValueError, match=message):
        train(arch, make_task(TINY.task), bad, epochs=1, checkpoints=[0, 1])


def test_bad_checkpoints_and_batchnorm_are_refused():
    task = make_task(TINY.task)
    with pytest.raises(ValueError, match="no dropout layer"):
        train(Architecture(mlp_spec([2, 4, 2])), task, [{"seed": 0, "dropout": 0.5}], epochs=1, checkpoints=[1])
    with pytest.raises(ValueError, match="checkpoint epochs"):
        train(Architecture(TINY.arch), task, [{"seed": 0}], epochs=2, checkpoints=[0, 5])
    bn = Architecture({"input_shape": [2], "layers": [{"type": "linear", "in_features": 2, "out_features": 4},
                                                      {"type": "batchnorm", "num_features": 4},
                                                      {"type": "linear", "in_features": 4, "out_features": 2}]})
    with pytest.raises(ValueError, match="BatchNorm"):
        train(bn, task, [{"seed": 0}], epochs=1, checkpoints=[1])
