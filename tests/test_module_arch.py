"""Module architectures: built-ins, factories, the flat layout, the batched evaluator against load_state_dict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wslviz.core import module_eval
from wslviz.core.builtins import BUILTINS
from wslviz.core.evaluation import evaluate, evaluate_per_model, model_outputs
from wslviz.core.layout import ArchitectureError
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.protocol import from_spec
from wslviz.core.tasks import make_task

SMALL = {
    "lenet5": {"image_size": 16},
    "vgg11": {"width": 0.0625, "image_size": 16},
    "resnet20": {"depth": 8, "width": 0.25, "in_channels": 1},
    "resnet18_modelzoos": {"width": 0.0625, "in_channels": 1},
    "resnet_torchvision": {"depth": 18, "width": 0.0625, "in_channels": 1, "stem": "cifar", "n_classes": 10},
    "resnet_cifar_a": {"depth": 8, "in_channels": 1},
    "vgg_torchvision": {"depth": 11, "n_classes": 10, "width": 0.0625},
    "mobilenet_v2_torchvision": {"n_classes": 10, "width": 0.25},
    "recurrent_classifier": {"cell": "lstm", "hidden_size": 6, "num_layers": 2, "bidirectional": True},
    "gpt": {"n_layer": 2},
    "actor_critic": {},
    "conv1d_net": {"layers": [{"name": "features.0", "type": "conv1d", "in": 2, "out": 6, "kernel": 3},
                              {"name": "features.1", "type": "batchnorm1d", "out": 6},
                              {"name": "head", "type": "linear", "in": 6, "out": 3}], "pool": "avg"},
}


def arch_of(name: str) -> ModuleArchitecture:
    shapes = {"resnet20": [1, 8, 8], "resnet18_modelzoos": [1, 8, 8], "resnet_torchvision": [1, 8, 8],
              "resnet_cifar_a": [1, 8, 8], "vgg_torchvision": [3, 32, 32],
              "mobilenet_v2_torchvision": [3, 32, 32]}
    return ModuleArchitecture.builtin(name, input_shape=shapes.get(name), **SMALL[name])


def random_weights(arch, n: int, seed: int = 0) -> torch.Tensor:
    """Weights around the module's own initialisation, running statistics positive and varied."""
    gen = torch.Generator().manual_seed(seed)
    w = arch.initial_weights().repeat(n, 1)
    for p in arch.layout:
        noise = torch.randn(n, p.numel, generator=gen)
        if p.role == "running_var":
            w[:, p.slice] = 0.5 + torch.rand(n, p.numel, generator=gen)
        elif p.role == "running_mean":
            w[:, p.slice] = 0.2 * noise
        else:
            w[:, p.slice] += 0.1 * noise
    return w


def test_every_builtin_is_covered():
    assert set(SMALL) == set(BUILTINS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_layout_is_the_state_dict(name):
    arch = arch_of(name)
    sd = {k: v for k, v in arch.module.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert [p.name for p in arch.layout] == [k for k in sd if k not in arch.aliases]
    assert arch.n_params == sum(v.numel() for k, v in sd.items() if k not in arch.aliases)
    w = random_weights(arch, 1)[0]
    assert torch.equal(arch.flatten(arch.unflatten(w)), w)
    assert torch.equal(arch.flatten({f"module.{k}": v for k, v in arch.unflatten(w).items()}), w)
    assert from_spec(arch.spec) == arch  # the protocol rebuilds it from zoo.json's spec


@pytest.mark.parametrize("name", sorted(SMALL))
def test_batched_outputs_equal_load_state_dict(name):
    arch = arch_of(name)
    w = random_weights(arch, 5)
    x = arch.probe_inputs(9)
    out = model_outputs(arch, w, x, chunk_size=2)
    ref = torch.stack([arch.build(w[i])(x).reshape(9, -1) for i in range(5)])
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_evaluate_equals_per_model_loop_and_falls_back_where_vmap_cannot():
    task = make_task("digits")
    arch = arch_of("resnet20")
    w = random_weights(arch, 4)
    batched, loop = evaluate(arch, task, w), evaluate_per_model(arch, task, w)
    assert torch.allclose(batched["loss"], loop["loss"], atol=1e-5)
    assert torch.equal(batched["accuracy"], loop["accuracy"])
    looped = module_eval.looped_call(arch, arch.unflatten(w), task.x_test)
    assert torch.allclose(looped.reshape(4, len(task.x_test), -1),
                          model_outputs(arch, w, task.x_test), atol=1e-5)


def test_formulation_chosen_once_per_shape_both_give_the_same_outputs():
    """The first eval-mode call of a shape times the batched call against the loop and keeps the faster; later
    calls of that shape answer the same (exactly), and either formulation gives the per-model outputs."""
    arch = arch_of("resnet20")
    w, x = random_weights(arch, 6), arch.probe_inputs(10)
    first = model_outputs(arch, w, x)
    assert len(arch.__dict__["_formulations"]) == 1
    assert torch.equal(model_outputs(arch, w, x), first)
    key, chosen = next(iter(arch.__dict__["_formulations"].items()))
    arch.__dict__["_formulations"][key] = "batched" if chosen == "loop" else "loop"
    other = model_outputs(arch, w, x)
    ref = torch.stack([arch.build(w[i])(x).reshape(10, -1) for i in range(6)])
    for out in (first, other):
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_batched_gradients_are_each_models_own():
    task = make_task("digits")
    arch = arch_of("resnet20")
    w = random_weights(arch, 3).requires_grad_(True)
    x, y = task.x_train[:16], task.y_train[:16]
    out, _ = module_eval.forward(arch, w, x)
    losses = task.loss(out, y)
    (grad,) = torch.autograd.grad(losses.sum(), w)
    for i in range(3):
        wi = w[i].detach().clone().requires_grad_(True)
        oi, _ = module_eval.forward(arch, wi.unsqueeze(0), x)
        (gi,) = torch.autograd.grad(task.loss(oi, y).sum(), wi)
        assert torch.allclose(grad[i], gi, atol=1e-6)


def test_batchnorm_statistics_are_the_batch_statistics():
    arch = arch_of("resnet20")
    w = random_weights(arch, 2)
    x = make_task("digits").x_train[:64]
    reset = module_eval.batchnorm_statistics(arch, w, x)
    model = arch.build(w[1])
    seen = {}
    model.bn1.register_forward_hook(lambda m, inp, out: seen.update(h=inp[0]))
    model(x)
    h = seen["h"]
    sd = arch.unflatten(reset[1])
    assert torch.allclose(sd["bn1.running_mean"], h.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(sd["bn1.running_var"], h.var((0, 2, 3), unbiased=True), atol=1e-4)


def test_resnet_stage_channels_set_directly_or_refused():
    model = BUILTINS["resnet20"](depth=8, channels=[12, 12, 24], in_channels=1)
    assert [model.conv1.out_channels, model.layer1[0].conv2.out_channels, model.layer2[0].conv2.out_channels,
            model.layer3[0].conv2.out_channels] == [12, 12, 12, 24]
    for bad in ([12, 24], [12, 0, 24]):
        with pytest.raises(ValueError, match="three stages"):
            BUILTINS["resnet20"](depth=8, channels=bad)


def test_factory_runs_user_code_only_when_allowed(tmp_path):
    (tmp_path / "models.py").write_text(
        "import torch.nn as nn\n"
        "def make_net(width=4):\n"
        "    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 3))\n")
    target = f"{tmp_path / 'models.py'}:make_net"
    arch = ModuleArchitecture.factory(target, input_shape=[2], width=5)
    assert arch.n_params == 2 * 5 + 5 + 5 * 3 + 3
    assert [g.size for g in arch.perm_spec.groups] == [5]
    with pytest.raises(ArchitectureError, match="user code"):
        ModuleArchitecture(arch.spec)  # e.g. a zoo.json read without permission
    assert ModuleArchitecture(arch.spec, allow_code=True) == arch


def test_device_option_runs_sequential_and_module_archs_through_the_module_evaluator():
    arch = arch_of("gpt")
    w = random_weights(arch, 3)
    x = arch.probe_inputs(5)
    assert torch.allclose(model_outputs(arch, w, x, device="cpu"), model_outputs(arch, w, x), atol=0)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    assert torch.allclose(model_outputs(arch, w, x, device="cuda"), model_outputs(arch, w, x), atol=1e-5)


def test_untraceable_module_has_no_groups_and_says_why(tmp_path):
    (tmp_path / "dyn.py").write_text(
        "import torch, torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.a, self.b = nn.Linear(2, 4), nn.Linear(4, 2)\n"
        "    def forward(self, x):\n"
        "        h = self.a(x)\n"
        "        if h.sum() > 0:\n"
        "            h = h.relu()\n"
        "        return self.b(h)\n")
    arch = ModuleArchitecture.factory(f"{tmp_path / 'dyn.py'}:Net", input_shape=[2])
    spec = arch.perm_spec
    assert spec.groups == ()
    assert all("could not trace" in f.reason for f in spec.fixed)
    assert isinstance(arch.build(), nn.Module)


def test_model_zoos_resnet18_opens_as_a_module_architecture(tmp_path):
    import json

    import wslviz as wv

    arch = ModuleArchitecture.builtin("resnet18_modelzoos", input_shape=[3, 32, 32], width=0.0625)
    weights = random_weights(arch, 2)
    for epoch, w in enumerate(weights):
        folder = tmp_path / "trial_0" / f"checkpoint_{epoch:06d}"
        folder.mkdir(parents=True)
        sd = {k: v.clone() for k, v in arch.unflatten(w).items()}
        sd["bn1.num_batches_tracked"] = torch.tensor(3)
        torch.save(sd, folder / "checkpoints")
    (tmp_path / "trial_0" / "params.json").write_text(json.dumps({"seed": 1, "model::type": "Resnet18"}))
    (tmp_path / "trial_0" / "result.json").write_text('{"training_iteration": 1, "test_acc": 0.5}\n')
    zoo = wv.load_zoo(tmp_path)
    assert zoo.arch.kind == "module" and [p.name for p in zoo.arch.layout] == [p.name for p in arch.layout]
    assert torch.equal(zoo.weights, weights)
    assert len(zoo.arch.perm_spec.groups) == 12
