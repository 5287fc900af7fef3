"""Training examples read back from the margin (KKT) conditions (wslviz.understand.reconstruction)."""

from __future__ import annotations

import math

import pytest
import torch

import wslviz as wv
from wslviz.core import Architecture, Task
from wslviz.understand.reconstruction import homogeneity_problem, reconstruct_training_data, recovery


def bias_free_mlp(widths: list[int]) -> Architecture:
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append({"type": "linear", "in_features": a, "out_features": b, "bias": False})
        if i < len(widths) - 2:
            layers.append({"type": "relu"})
    return Architecture({"input_shape": [widths[0]], "layers": layers})


def planted(n: int = 6, dim: int = 12, seed: int = 0) -> tuple[Architecture, torch.Tensor, Task]:
    """A network at an exact KKT point of its margin problem, whose training examples are known: ``n`` points on
    a regular simplex (pairwise cosine -1/(n-1)), turned into ``dim`` dimensions at random, classes alternating
    (:func:`planted_network`)."""
    simplex = torch.eye(n, dtype=torch.float64) - 1.0 / n
    simplex = simplex / simplex.norm(dim=1, keepdim=True)
    turn, _ = torch.linalg.qr(torch.randn(dim, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))
    return planted_network(simplex @ turn.T)  # [n, dim], still pairwise cosine -1/(n-1)


def planted_network(points: torch.Tensor) -> tuple[Architecture, torch.Tensor, Task]:
    """For unit ``points`` ``[n, dim]`` with negative pairwise cosines and classes alternating: hidden unit j is the
    point x_j itself (it fires on x_j alone, every other point lies on its negative side) and writes +-1/sqrt(2)
    into the two outputs, so that theta = sum_j lambda_j grad [f_{y_j} - f_other](x_j) holds exactly with every
    lambda_j = 1/sqrt(2)."""
    n, dim = points.shape
    labels = torch.arange(n) % 2
    arch = bias_free_mlp([dim, n, 2])
    out = torch.full((2, n), -1 / math.sqrt(2), dtype=torch.float64)
    out[labels, torch.arange(n)] = 1 / math.sqrt(2)
    weights = arch.flatten({"0.weight": points.float(), "2.weight": out.float()})
    task = Task("planted", {}, points.float(), labels, points.float(), labels, n_classes=2)
    return arch, weights, task


def kkt_residual(arch: Architecture, weights: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 lam: torch.Tensor) -> float:
    """|theta - sum_i lam_i grad [f_{y_i} - f_other](x_i)|^2 / |theta|^2 with ReLU's exact derivative."""
    net = arch.build(weights).double()
    out = net(x.double())
    margins = out.gather(1, y[:, None])[:, 0] - out.gather(1, 1 - y[:, None])[:, 0]
    grads = torch.autograd.grad((lam.double() * margins).sum(), list(net.parameters()))
    theta = torch.cat([p.detach().flatten() for p in net.parameters()])
    return float((theta - torch.cat([g.flatten() for g in grads])).square().sum() / theta.square().sum())


def test_the_planted_network_is_an_exact_kkt_point():
    arch, weights, task = planted()
    assert homogeneity_problem(arch, weights) is None
    assert kkt_residual(arch, weights, task.x_train, task.y_train, torch.full((6,), 2 ** -0.5)) < 1e-12
    # and the condition is not loose: scaling the points or giving them the other class breaks it
    assert kkt_residual(arch, weights, task.x_train * 1.1, task.y_train, torch.full((6,), 2 ** -0.5)) > 1e-3
    assert kkt_residual(arch, weights, task.x_train, 1 - task.y_train, torch.full((6,), 2 ** -0.5)) > 1


def test_the_planted_training_examples_are_recovered():
    """Three seeded runs of 12 candidates, pooled (one run finds 2-6 of the 6 examples, depending on its start: the
    conditions also hold for an example split between candidates that fire on the same units)."""
    arch, weights, task = planted()
    runs = [reconstruct_training_data(arch, weights, task, steps=300, random_state=seed) for seed in range(3)]
    for rec in runs:
        assert rec.inputs.shape == (12, 12) and rec.labels.shape == (12,) and rec.multipliers.shape == (12, 1)
        assert rec.residual < 1e-4
    found = recovery(torch.cat([r.inputs for r in runs]), task.x_train)
    assert list(found.columns) == ["example", "candidate", "distance", "recovered"]
    assert found["recovered"].sum() >= 5, found
    # a candidate that found an example carries that example's class
    hits = found[found["recovered"]]
    labels = torch.cat([r.labels for r in runs])
    assert (labels[hits["candidate"].tolist()] == task.y_train[hits["example"].tolist()]).all()
    noise = torch.randn(36, 12, generator=torch.Generator().manual_seed(0))
    assert not recovery(noise, task.x_train)["recovered"].any()


def test_reconstruction_is_seeded_and_reports_progress():
    arch, weights, task = planted()
    seen: list[tuple[int, int]] = []
    a = reconstruct_training_data(arch, weights, task, n=8, steps=30, random_state=1,
                                  progress=lambda i, n: seen.append((i, n)))
    b = reconstruct_training_data(arch, weights, task, n=8, steps=30, random_state=1)
    c = reconstruct_training_data(arch, weights, task, n=8, steps=30, random_state=2)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.multipliers, b.multipliers)
    assert not torch.equal(a.inputs, c.inputs)
    assert seen[-1] == (30, 30) and [i for i, _ in seen] == sorted(i for i, _ in seen)


def test_one_output_and_convolutions_are_homogeneous_too():
    arch = bias_free_mlp([5, 7, 1])
    weights = torch.randn(arch.n_params, generator=torch.Generator().manual_seed(0))
    rec = reconstruct_training_data(arch, weights, n=4, steps=2)
    assert rec.inputs.shape == (4, 5) and rec.multipliers.shape == (4, 1) and torch.equal(rec.labels,
                                                                                         torch.tensor([0, 1, 0, 1]))
    conv = Architecture({"input_shape": [1, 6, 6], "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 3, "kernel_size": 3, "bias": False},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "in_features": 12, "out_features": 3, "bias": False}]})
    weights = torch.randn(conv.n_params, generator=torch.Generator().manual_seed(0))
    rec = reconstruct_training_data(conv, weights, n=6, steps=2)
    assert rec.inputs.shape == (6, 1, 6, 6) and rec.multipliers.shape == (6, 2)
    assert torch.isfinite(torch.tensor(rec.residual))


def test_refusals_name_the_problem(random_mlp_zoo, moons_task):
    zoo = random_mlp_zoo
    with pytest.raises(ValueError, match="has a bias"):
        reconstruct_training_data(zoo.arch, zoo.weights[0], moons_task)
    tanh = Architecture({"input_shape": [2], "layers": [
        {"type": "linear", "in_features": 2, "out_features": 4, "bias": False}, {"type": "tanh"},
        {"type": "linear", "in_features": 4, "out_features": 2, "bias": False}]})
    assert "layer 1 is Tanh" in homogeneity_problem(tanh, torch.zeros(tanh.n_params))
    arch, weights, task = planted()
    with pytest.raises(ValueError, match="all weights are zero"):
        reconstruct_training_data(arch, torch.zeros_like(weights), task)
    with pytest.raises(ValueError, match=f"one weight vector of {arch.n_params} values"):
        reconstruct_training_data(arch, weights[None], task)
    regression = Task("r", {}, task.x_train, task.x_train[:, :1], task.x_train, task.x_train[:, :1],
                      kind="regression")
    with pytest.raises(ValueError, match="needs a classifier"):
        reconstruct_training_data(arch, weights, regression)


def test_the_function_is_public():
    assert wv.reconstruct_training_data is reconstruct_training_data


def test_frames_show_the_candidates_forming():
    arch, weights, task = planted()
    rec = reconstruct_training_data(arch, weights, task, n=4, steps=100, random_state=0, frames=3)
    assert rec.frame_steps == (25, 75, 100) and rec.frames.shape == (3, 4, 12)
    assert torch.equal(rec.frames[-1], rec.inputs)
    plain = reconstruct_training_data(arch, weights, task, n=4, steps=100, random_state=0)
    assert plain.frames is None and torch.equal(plain.inputs, rec.inputs)  # watching changes nothing
