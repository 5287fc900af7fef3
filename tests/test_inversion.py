"""DeepInversion and distillation from inverted inputs (wslviz.understand.inversion)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import wslviz as wv
from wslviz.core import NoForwardError, infer_layout
from wslviz.understand.inversion import distil, frame_marks, invert


def planted() -> tuple[wv.core.ArchitectureBase, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A BatchNorm on the inputs themselves, then a linear classifier: the inputs' training statistics are the
    running mean and variance, planted here."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3))
    mean, std = torch.tensor([2.0, -1.0, 0.5, 0.0]), torch.tensor([0.5, 2.0, 1.0, 0.25])
    net[0].running_mean.copy_(mean)
    net[0].running_var.copy_(std.square())
    arch = wv.from_module(net.eval(), input_shape=[4])
    return arch, arch.flatten(net.state_dict()), mean, std


def test_a_planted_batchnorm_gives_back_the_statistics_of_its_data():
    arch, weights, mean, std = planted()
    inv = invert(arch, weights, n=300, steps=400, lr=0.05, tv_weight=0.0, l2_weight=0.0, random_state=1)
    assert inv.images.shape == (300, 4) and inv.labels.shape == (300,) and inv.confidence.shape == (300,)
    assert torch.equal(inv.labels, torch.arange(300) % 3)
    assert torch.allclose(inv.images.mean(0), mean, atol=0.05)
    assert torch.allclose(inv.images.std(0, unbiased=False), std, rtol=0.05)
    assert inv.bn_loss < 0.05
    assert inv.confidence.mean() > 0.5  # and the classifier sees the classes asked for


def test_inversion_and_distillation_are_seeded():
    arch, weights, *_ = planted()
    a, b = (invert(arch, weights, n=12, steps=5, random_state=3) for _ in range(2))
    c = invert(arch, weights, n=12, steps=5, random_state=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    s1, s2 = (distil(arch, weights, a.images, epochs=2, batch_size=4, random_state=0) for _ in range(2))
    assert s1.shape == weights.shape and torch.equal(s1, s2)


def test_a_student_learns_the_teacher_from_its_inputs_alone():
    arch, weights, mean, std = planted()
    inputs = mean + std * torch.randn(400, 4, generator=torch.Generator().manual_seed(0))
    student = distil(arch, weights, inputs, epochs=60, random_state=0)
    held_out = mean + std * torch.randn(400, 4, generator=torch.Generator().manual_seed(1))
    teacher_says, student_says = (arch.build(w)(held_out).argmax(-1) for w in (weights, student))
    assert (teacher_says == student_says).float().mean() > 0.9


def test_refusals_name_the_problem(random_mlp_zoo):
    arch, weights, *_ = planted()
    with pytest.raises(ValueError, match="no BatchNorm running statistics"):
        invert(random_mlp_zoo.arch, random_mlp_zoo.weights[0])
    with pytest.raises(ValueError, match=f"one weight vector of {arch.n_params} values"):
        invert(arch, weights[None])
    with pytest.raises(ValueError, match="at least 2 inputs"):
        invert(arch, weights, n=1)
    with pytest.raises(ValueError, match="no inputs"):
        distil(arch, weights, torch.zeros(0, 4))
    layout = infer_layout(arch.unflatten(weights))  # the same tensors, weights only: nothing to run
    with pytest.raises(NoForwardError, match="Inverting a network"):
        invert(layout, weights)


def test_nearest_examples_compare_patterns_whatever_their_scale():
    from wslviz.understand.inversion import nearest_examples

    g = torch.Generator().manual_seed(0)
    examples = torch.rand(30, 1, 8, 8, generator=g)
    picked = torch.tensor([4, 17, 0])
    idx, dist = nearest_examples(3.0 * examples[picked] - 0.5, examples)  # another scale and offset: same pattern
    assert idx.tolist() == picked.tolist() and np.allclose(dist, 0, atol=1e-6)
    _, far = nearest_examples(torch.randn(5, 1, 8, 8, generator=g), examples)
    assert (far > 0.8).all()


def test_frames_show_the_inputs_forming():
    arch, weights, *_ = planted()
    plain = invert(arch, weights, n=6, steps=10, random_state=2)
    inv = invert(arch, weights, n=6, steps=10, random_state=2, frames=4)
    assert plain.frames is None and plain.frame_steps == ()
    assert inv.frame_steps == (2, 5, 8, 10) and inv.frames.shape == (4, 6, 4)
    assert torch.equal(inv.frames[-1], inv.images) and torch.equal(inv.images, plain.images)  # watching changes nothing
    assert not torch.equal(inv.frames[0], inv.frames[-1])
    assert frame_marks(3, 10) == [1, 2, 3] and frame_marks(10, 0) == []
