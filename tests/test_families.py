"""Architecture families recognised from checkpoints' key names and shapes: the built-ins have the published
layouts, a folder of such checkpoints opens with a forward and derived symmetries, a random group element keeps
the function and a planted permutation is recovered exactly."""

from __future__ import annotations

import pytest
import torch

import wslviz as wv
from wslviz.core.families import recognise
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.published import CifarResNetA, TorchvisionMobileNetV2, TorchvisionResNet, TorchvisionVGG


def test_torchvision_resnet_layouts_are_the_published_ones():
    r18 = TorchvisionResNet(18)  # 1000 classes, as torchvision ships it
    sd = r18.state_dict()
    assert len(sd) == 122 and len(list(r18.parameters())) == 62
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512
    assert list(sd)[:7] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                            "bn1.num_batches_tracked", "layer1.0.conv1.weight"]
    assert tuple(sd["layer2.0.downsample.0.weight"].shape) == (128, 64, 1, 1) and tuple(sd["fc.weight"].shape) == \
        (1000, 512)
    assert sum(p.numel() for p in TorchvisionResNet(34).parameters()) == 21_797_672
    r50 = TorchvisionResNet(50)
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032 and len(r50.state_dict()) == 320
    assert tuple(r50.state_dict()["layer1.0.conv3.weight"].shape) == (256, 64, 1, 1)


def test_torchvision_vgg_layouts_are_the_published_ones():
    for depth, bn, params in ((11, False, 132_863_336), (11, True, 132_868_840), (16, False, 138_357_544),
                              (16, True, 138_365_992), (19, False, 143_667_240)):
        net = TorchvisionVGG(depth, bn)
        assert sum(p.numel() for p in net.parameters()) == params, (depth, bn)
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
        family = recognise(shapes)
        assert family.name == "vgg_torchvision" and family.kwargs == {"depth": depth, "batch_norm": bn,
                                                                      "n_classes": 1000, "in_channels": 3}
    sd = TorchvisionVGG(16).state_dict()
    assert list(sd)[:4] == ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias"]
    assert "features.28.weight" in sd and tuple(sd["classifier.0.weight"].shape) == (4096, 25088)


def test_torchvision_mobilenet_v2_layout_is_the_published_one():
    net = TorchvisionMobileNetV2()
    sd = net.state_dict()
    assert sum(p.numel() for p in net.parameters()) == 3_504_872 and len(sd) == 314
    assert tuple(sd["features.1.conv.0.0.weight"].shape) == (32, 1, 3, 3)  # depthwise
    assert tuple(sd["features.2.conv.1.0.weight"].shape) == (96, 1, 3, 3) and tuple(sd["classifier.1.weight"].shape) \
        == (1000, 1280)
    family = recognise({k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")})
    assert family.name == "mobilenet_v2_torchvision" and family.kwargs == {"n_classes": 1000, "in_channels": 3}


def test_cifar_option_a_resnets_have_no_shortcut_tensors():
    for depth, params in ((20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962)):
        net = CifarResNetA(depth)
        assert sum(p.numel() for p in net.parameters()) == params, depth
        assert not any("shortcut" in k or "downsample" in k for k in net.state_dict())
        assert "linear.weight" in net.state_dict()


@pytest.mark.parametrize(("net", "family", "kwargs"), [
    (lambda: TorchvisionResNet(18, n_classes=10), "resnet_torchvision", {"depth": 18, "stem": "imagenet"}),
    (lambda: TorchvisionResNet(50, n_classes=7, stem="cifar", width=0.25), "resnet_torchvision",
     {"depth": 50, "stem": "cifar", "width": 0.25}),
    (lambda: CifarResNetA(32), "resnet_cifar_a", {"depth": 32}),
    (lambda: TorchvisionVGG(13, batch_norm=True, n_classes=5, width=0.0625), "vgg_torchvision",
     {"depth": 13, "batch_norm": True, "width": 0.0625}),
    (lambda: TorchvisionMobileNetV2(n_classes=4, width=0.5), "mobilenet_v2_torchvision", {"width": 0.5}),
], ids=["resnet18", "resnet50-cifar-narrow", "resnet32-option-a", "vgg13-bn-narrow", "mobilenet-v2-half"])
def test_a_folder_of_family_checkpoints_opens_as_that_family(tmp_path, net, family, kwargs):
    """Saved as people save them (wrapped in ``state_dict`` with DataParallel's ``module.`` prefix), the files
    open as the family's built-in with the input size marked assumed; outputs equal the saved network's."""
    torch.manual_seed(0)
    nets = [net().eval() for _ in range(2)]
    for i, n in enumerate(nets):
        torch.save({"epoch": 30, "state_dict": {f"module.{k}": v for k, v in n.state_dict().items()}},
                   tmp_path / f"model{i}.th")
    zoo = wv.load_zoo(tmp_path, cache=False)
    arch = zoo.arch
    assert arch.kind == "module" and arch.spec["builtin"] == family
    assert kwargs.items() <= arch.spec["kwargs"].items()
    assert "recognised" in arch.assumed["architecture"] and "input size" in arch.assumed
    assert arch.has_forward and arch.knows_symmetries
    x = torch.randn(2, *arch.input_shape[:1], 40, 40)
    for i, n in enumerate(nets):
        with torch.no_grad():
            torch.testing.assert_close(wv.model_outputs(arch, zoo.weights[i], x), n(x), rtol=1e-4, atol=1e-5)
    again = wv.load_zoo(wv.save_zoo(zoo, tmp_path / "native"), cache=False)  # the assumption travels with the spec
    assert again.arch.assumed == arch.assumed


@pytest.mark.parametrize(("name", "kwargs"), [
    ("resnet_torchvision", {"depth": 18, "n_classes": 10, "width": 0.25, "stem": "cifar"}),
    ("resnet_torchvision", {"depth": 50, "n_classes": 10, "width": 0.125, "stem": "cifar"}),
    ("resnet_cifar_a", {"depth": 20, "n_classes": 10}),
    ("vgg_torchvision", {"depth": 11, "n_classes": 10, "width": 0.0625, "batch_norm": True}),
    ("mobilenet_v2_torchvision", {"n_classes": 10, "width": 0.25}),
])
def test_family_symmetries_keep_the_function_and_planted_permutations_are_recovered(name, kwargs):
    arch = ModuleArchitecture.builtin(name, input_shape=[3, 32, 32], **kwargs)
    gen = torch.Generator().manual_seed(1)
    ref = arch.initial_weights() + 0.05 * torch.randn(arch.n_params, generator=gen)
    for p in arch.layout:
        if p.role == "running_var":
            ref[p.slice] = ref[p.slice].abs() + 0.5
    x = torch.randn(8, 3, 32, 32, generator=gen)
    base = wv.model_outputs(arch, ref, x)
    for seed in range(3):
        moved = wv.apply_symmetry(arch, ref, wv.random_symmetry(arch, seed=seed))
        assert not torch.allclose(moved, ref)
        assert (wv.model_outputs(arch, moved, x) - base).abs().max() <= 1e-5 * base.abs().max()
        planted = wv.apply_symmetry(arch, ref, wv.random_symmetry(arch, seed=seed, kinds=("permutation",)))
        assert torch.equal(wv.weight_matching(arch, ref, planted, kinds=("permutation",)), ref)


def test_what_is_not_a_family_is_not_recognised():
    assert recognise({"fc1.weight": (4, 2), "fc1.bias": (4,)}) is None
    sd = {k: tuple(v.shape) for k, v in TorchvisionResNet(18).state_dict().items()}
    del sd["layer4.1.conv1.weight"]  # a stage of other depth: no published ResNet
    assert recognise({k: v for k, v in sd.items() if not k.startswith("layer4.1")}) is None


class TutorialGRU(torch.nn.Module):
    """A recurrent classifier as tutorials write it (module names ``gru`` and ``out``)."""

    def __init__(self, cell=torch.nn.GRU, layers=1, bidirectional=False):
        super().__init__()
        self.gru = cell(5, 7, layers, batch_first=True, bidirectional=bidirectional)
        self.out = torch.nn.Linear(7 * (2 if bidirectional else 1), 3)

    def forward(self, x):
        return self.out(self.gru(x)[0][:, -1])


@pytest.mark.parametrize(("cell", "layers", "bidirectional", "gates"), [
    (torch.nn.GRU, 1, False, 3), (torch.nn.LSTM, 2, True, 4), (torch.nn.RNN, 1, False, 1)])
def test_recurrent_classifiers_open_with_their_gate_symmetry(tmp_path, cell, layers, bidirectional, gates):
    """Hidden units permute together across the gate blocks of ``weight_ih``, ``weight_hh`` and both biases and the
    next layer's inputs: a random element keeps the function, a planted one is recovered exactly."""
    torch.manual_seed(0)
    nets = [TutorialGRU(cell, layers, bidirectional).eval() for _ in range(2)]
    for i, net in enumerate(nets):
        torch.save(net.state_dict(), tmp_path / f"rnn{i}.pt")
    zoo = wv.load_zoo(tmp_path, cache=False)
    arch = zoo.arch
    assert arch.spec["builtin"] == "recurrent_classifier" and "16 time steps" in arch.assumed["input size"]
    x = torch.randn(4, 9, 5)  # any sequence length
    with torch.no_grad():
        torch.testing.assert_close(wv.model_outputs(arch, zoo.weights[0], x), nets[0](x), rtol=1e-4, atol=1e-6)
    groups = arch.perm_spec.groups
    assert len(groups) == layers * (2 if bidirectional else 1)
    blocks = [r for r in groups[0].refs if r.name.endswith("weight_ih_l0") and r.axis == 0]
    assert sorted(r.start for r in blocks) == [7 * g for g in range(gates)]  # one ref per gate block
    ref = zoo.weights[0]
    moved = wv.apply_symmetry(arch, ref, wv.random_symmetry(arch, seed=3))
    assert not torch.equal(moved, ref)
    torch.testing.assert_close(wv.model_outputs(arch, moved, x), wv.model_outputs(arch, ref, x), rtol=1e-4, atol=1e-6)
    assert torch.equal(wv.weight_matching(arch, ref, moved), ref)  # recurrent groups only permute: gathers are exact


def test_a_folder_of_sb3_agents_opens_each_environment_as_its_actor_critic(tmp_path):
    """One sub-folder per agent (``ppo-<env>-s<seed>/policy.pth``), environments of different input sizes: one group
    per environment, each an actor-critic (it used to stop at "not one sequential stack")."""
    from wslviz.core.builtins import ActorCritic

    torch.manual_seed(0)
    envs = {"CartPole-v1": (4, 2), "LunarLander-v2": (8, 4), "Acrobot-v1": (6, 3)}
    nets = {}
    for env, (n, a) in envs.items():
        for seed in range(2):
            (tmp_path / f"ppo-{env}-s{seed}").mkdir()
            nets[env, seed] = ActorCritic(n, a).eval()
            torch.save(nets[env, seed].state_dict(), tmp_path / f"ppo-{env}-s{seed}" / "policy.pth")
    zoo = wv.load_zoo(tmp_path, cache=False)
    assert len(zoo.extra["groups"]) == 3 and all("actor_critic" in g["architecture"] for g in zoo.extra["groups"])
    for group in range(3):
        z = wv.load_zoo(tmp_path, group=group, cache=False)
        assert z.arch.spec["builtin"] == "actor_critic" and z.n_checkpoints == 2 and z.arch.knows_symmetries
        env = z.metadata["run"][0].removeprefix("ppo-").rsplit("-s", 1)[0]
        x = torch.randn(5, envs[env][0])
        with torch.no_grad():
            torch.testing.assert_close(wv.model_outputs(z.arch, z.weights[0], x), nets[env, 0](x), rtol=1e-5,
                                       atol=1e-6)


class _Tutorial1d(torch.nn.Module):
    """A 1-D CNN as time-series tutorials write it (its own code, not the built-in)."""

    def __init__(self, pool: str):
        super().__init__()
        nn = torch.nn
        self.pool = pool
        self.features = nn.Sequential(nn.Conv1d(3, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(),
                                      nn.Conv1d(8, 12, 3, padding=1), nn.ReLU())
        self.fc1 = nn.Linear(12 if pool == "avg" else 12 * 20, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        h = self.features(x)
        h = h.mean(-1) if self.pool == "avg" else h.flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


@pytest.mark.parametrize("pool", ["avg", "flatten"])
def test_one_dimensional_conv_nets_open_with_their_symmetries(tmp_path, pool):
    torch.manual_seed(0)
    nets = [_Tutorial1d(pool).eval() for _ in range(3)]
    for i, net in enumerate(nets):
        with torch.no_grad():
            net.features[1].running_mean.uniform_(-0.5, 0.5)
            net.features[1].running_var.uniform_(0.5, 2.0)
        torch.save(net.state_dict(), tmp_path / f"run{i}.pt")
    zoo = wv.load_zoo(tmp_path)
    arch = zoo.arch
    assert arch.spec["builtin"] == "conv1d_net" and arch.knows_symmetries
    assert "1-D convolutional" in arch.assumed["architecture"]
    assert arch.input_shape == ((3, 20) if pool == "flatten" else (3, 128))
    x = torch.randn(6, *arch.input_shape)
    with torch.no_grad():
        for i, net in enumerate(nets):
            assert torch.allclose(arch.forward(zoo.weights[i:i + 1], x)[0][0], net(x), atol=1e-5)
    w = zoo.weights[:1]
    planted = wv.apply_symmetry(arch, w.double(), wv.random_symmetry(arch, seed=3)).float()
    out = arch.forward(w, x)[0]
    assert (planted - w).norm() > 0.3 * w.norm()
    assert float((arch.forward(planted, x)[0] - out).abs().max()) <= 1e-5 * float(out.abs().max())
    assert torch.allclose(wv.weight_matching(arch, w[0], planted[0]), w[0], atol=1e-5)
