"""The architecture protocol: one interface for every kind of network.

A new kind is one class and one registry line: the toy kind below is written here, registered, and then runs
through evaluation, symmetries, weight and activation matching, interpolation and the native zoo format without
any library code knowing it exists. ``wv.from_module`` turns a network the user holds into an architecture (no
factory file), and a stated factory spec runs when the caller allows code."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import wslviz as wv
from wslviz.core.kind import ArchitectureBase
from wslviz.core.layout import ArchitectureError, ParamInfo
from wslviz.core.permutation import AxisRef, PermGroup, PermutationSpec
from wslviz.core.protocol import KINDS, from_spec, register_kind
from wslviz.core.tasks import make_task
from wslviz.core.zoo import Zoo


class ToyMLP(ArchitectureBase):
    """One hidden ReLU layer, ``{"kind": "toy-mlp", "widths": [d_in, hidden, d_out]}``, tensors ``w1``, ``b1``,
    ``w2`` (no output bias); its forward is written with einsum, not by any wslviz evaluator."""

    kind = "toy-mlp"

    def __init__(self, spec: Mapping[str, Any], allow_code: bool = False, base: Any = None):
        d, h, o = (int(v) for v in spec["widths"])
        self.spec, self.input_shape, self.assumed = {"kind": self.kind, "widths": [d, h, o]}, (d,), {}
        shapes = {"w1": (h, d), "b1": (h,), "w2": (o, h)}
        layout, offset = [], 0
        for i, (name, shape) in enumerate(shapes.items()):
            layout.append(ParamInfo(name, shape, offset, 0 if i < 2 else 1, "bias" if name == "b1" else "weight"))
            offset += layout[-1].numel
        self.layout, self.n_params = tuple(layout), offset
        self.layers = [{"type": "linear", "name": "hidden"}, {"type": "linear", "name": "out"}]

    def describe(self) -> str:
        return f"toy MLP {self.spec['widths']}"

    def flatten(self, state_dict: Mapping[str, torch.Tensor], by_order: bool = False) -> torch.Tensor:
        return self.pack(state_dict, "the toy MLP")

    @property
    def perm_spec(self) -> PermutationSpec:
        h = self.spec["widths"][1]
        refs = (AxisRef("w1", 0, power=1), AxisRef("b1", 0, power=1), AxisRef("w2", 1, power=-1, incoming=False))
        return PermutationSpec((PermGroup("hidden", 0, h, refs, ("permutation", "scale"), "relu", "hidden"),),
                               self.n_params)

    def forward(self, weights, x, capture=None, train=False, device=None):
        t = self.unflatten(weights)
        pre = torch.einsum("bhd,...nd->bnh", t["w1"], x) + t["b1"][:, None]
        hidden = torch.relu(pre)
        out = torch.einsum("boh,bnh->bno", t["w2"], hidden)
        return out, ({"hidden": pre} if capture and "hidden" in capture else {})

    def build(self, weights=None) -> nn.Module:
        d, h, o = self.spec["widths"]
        net = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, o, bias=False))
        if weights is not None:
            t = self.unflatten(weights)
            with torch.no_grad():
                net[0].weight.copy_(t["w1"]), net[0].bias.copy_(t["b1"]), net[2].weight.copy_(t["w2"])
        return net.eval()

    def evaluate_per_model(self, task, weights, split="test", device=None):
        x, y = task.split(split)
        outs = torch.stack([self.build(w)(x) for w in weights])
        return {"loss": task.loss(outs, y), "accuracy": task.correct(outs, y) / len(y)}


@pytest.fixture(scope="module")
def toy():
    register_kind("toy-mlp", ToyMLP)
    yield from_spec({"kind": "toy-mlp", "widths": [2, 12, 2]})
    del KINDS["toy-mlp"]


def test_a_registered_kind_evaluates_aligns_and_round_trips(toy, tmp_path):
    task = make_task("moons")
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(6, toy.n_params, generator=gen)
    # evaluation through the public entry points runs the kind's own forward, in chunks
    got = wv.evaluate(toy, task, w, chunk_size=4)
    ref = toy.evaluate_per_model(task, w)
    torch.testing.assert_close(got["loss"], ref["loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["accuracy"], ref["accuracy"])
    # a random group element keeps the function and moves the weights
    for seed in range(5):
        g = wv.random_symmetry(toy, seed=seed)
        moved = wv.apply_symmetry(toy, w[0], g)
        assert not torch.allclose(moved, w[0])
        x = task.x_test
        torch.testing.assert_close(wv.model_outputs(toy, moved, x), wv.model_outputs(toy, w[0], x),
                                   rtol=1e-4, atol=1e-5)
        # weight matching recovers the planted element exactly; activation matching too (on the captured units)
        back = wv.weight_matching(toy, w[0], moved)
        torch.testing.assert_close(back, w[0], rtol=1e-5, atol=1e-6)
        planted = wv.apply_symmetry(toy, w[0], wv.random_symmetry(toy, seed=seed, kinds=("permutation",)))
        assert torch.equal(wv.weight_matching(toy, w[0], planted, kinds=("permutation",)), w[0])
        data = SimpleNamespace(x_train=torch.randn(256, 2, generator=gen))
        assert torch.equal(wv.activation_matching(toy, data, w[0], planted, kinds=("permutation",)), w[0])
    # landscapes and merging take it as they take any kind
    curve = wv.interpolate(toy, task, w[0], w[1], steps=5)
    assert curve["loss"].iloc[0] == pytest.approx(float(got["loss"][0]), rel=1e-5)
    assert curve["loss"].iloc[-1] == pytest.approx(float(got["loss"][1]), rel=1e-5)
    torch.testing.assert_close(wv.reset_batchnorm(toy, w[0], task), w[0])  # no BatchNorm: unchanged
    assert toy.capabilities == {"has_forward": True, "knows_symmetries": True, "has_batchnorm": False,
                                "plain_stack": False}
    # the native format stores its spec and reads the kind back through the registry
    zoo = Zoo("toy", pd.DataFrame({"model_id": np.arange(6)}), w, toy, task)
    again = wv.load_zoo(wv.save_zoo(zoo, tmp_path / "toy"), cache=False)
    assert isinstance(again.arch, ToyMLP) and torch.equal(again.weights, w)


def test_an_unknown_kind_or_a_foreign_class_is_refused():
    with pytest.raises(ArchitectureError, match="unknown architecture kind 'nope'"):
        from_spec({"kind": "nope"})
    with pytest.raises(ArchitectureError, match="does not implement the architecture protocol"):
        register_kind("bad", dict)  # type: ignore[arg-type]


class Block(nn.Module):
    def __init__(self, c: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c // stride, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.down = None if stride == 1 else nn.Sequential(nn.Conv2d(c // stride, c, 1, stride, bias=False),
                                                           nn.BatchNorm2d(c))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class SmallResNet(nn.Module):
    """A BatchNorm ResNet as a user writes it in a notebook: stem, two stages, global pool, head."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.layer1, self.layer2 = Block(8, 1), Block(16, 2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean((2, 3)))


def test_from_module_recovers_a_planted_permutation_exactly_on_a_batchnorm_resnet():
    arch = wv.from_module(SmallResNet(), input_shape=[1, 8, 8])
    assert arch.kind == "module" and arch.has_batchnorm and arch.knows_symmetries
    assert {p.name for p in arch.layout} == {k for k in SmallResNet().state_dict() if "num_batches" not in k}
    gen = torch.Generator().manual_seed(3)
    ref = arch.initial_weights() + 0.1 * torch.randn(arch.n_params, generator=gen)
    for p in arch.layout:  # positive running variances
        if p.role == "running_var":
            ref[p.slice] = ref[p.slice].abs() + 0.5
    x = torch.randn(32, 1, 8, 8, generator=gen)
    recovered = 0
    for seed in range(10):
        g = wv.random_symmetry(arch, seed=seed, kinds=("permutation",))
        planted = wv.apply_symmetry(arch, ref, g)
        assert not torch.equal(planted, ref)
        torch.testing.assert_close(wv.model_outputs(arch, planted, x), wv.model_outputs(arch, ref, x),
                                   rtol=1e-4, atol=1e-5)
        recovered += int(torch.equal(wv.weight_matching(arch, ref, planted, kinds=("permutation",)), ref))
    assert recovered == 10
    # the stem and both blocks' outputs share one residual stream per stage: stage 1 (8) and stage 2 (16)
    sizes = sorted(g.size for g in arch.perm_spec.groups)
    assert sizes.count(8) >= 2 and sizes.count(16) >= 2


def test_a_zoo_of_a_module_instance_reopens_with_the_instance(tmp_path):
    net = SmallResNet()
    arch = wv.from_module(net, input_shape=[1, 8, 8])
    zoo = Zoo("mine", pd.DataFrame({"model_id": [0, 1]}), torch.stack([arch.initial_weights()] * 2), arch)
    path = wv.save_zoo(zoo, tmp_path / "mine")
    with pytest.raises(wv.ZooFormatError, match="pass the instance again"):
        wv.load_zoo(path, cache=False)
    again = wv.load_zoo(path, cache=False, arch=wv.from_module(SmallResNet(), input_shape=[1, 8, 8]))
    assert again.arch.n_params == arch.n_params and torch.equal(again.weights, zoo.weights)


def test_a_stated_factory_runs_only_when_code_is_allowed(tmp_path):
    (tmp_path / "nets.py").write_text("import torch.nn as nn\n\ndef make(width=4):\n"
                                      "    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 2))\n")
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for seed in range(3):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
        torch.save(net.state_dict(), folder / f"m{seed}.pt")
    spec = {"kind": "module", "factory": f"{tmp_path / 'nets.py'}:make", "kwargs": {"width": 4},
            "input_shape": [2]}
    with pytest.raises(wv.ZooFormatError, match="runs only when you allow"):
        wv.load_zoo(folder, arch=spec, cache=False)
    zoo = wv.load_zoo(folder, arch=spec, allow_code=True, cache=False)
    assert zoo.arch.kind == "module" and zoo.n_checkpoints == 3 and zoo.arch.knows_symmetries
    # a saved zoo keeps the factory spec; reopening it runs the factory only when allowed again
    path = wv.save_zoo(zoo, tmp_path / "native")
    with pytest.raises(wv.ZooFormatError, match="runs only when you allow"):
        wv.load_zoo(path, cache=False)
    assert torch.equal(wv.load_zoo(path, allow_code=True, cache=False).weights, zoo.weights)
