"""Architecture spec <-> nn.Module, flat layout round-trips, and state-dict inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wslviz.core.arch import ACTIVATIONS, Architecture, ArchitectureError, infer_architecture, mlp_spec

CNN_ALL = {
    "input_shape": [1, 8, 8],
    "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "batchnorm", "num_features": 4},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 2, "stride": 2},
        {"type": "tanh"},
        {"type": "avgpool2d", "kernel_size": 2},
        {"type": "dropout", "p": 0.2},
        {"type": "flatten"},
        {"type": "batchnorm", "num_features": 6},
        {"type": "layernorm", "normalized_shape": 6},
        {"type": "linear", "in_features": 6, "out_features": 10},
    ],
}
CNN_GAP = {
    "input_shape": [3, 8, 8],
    "layers": [
        {"type": "conv2d", "in_channels": 3, "out_channels": 5, "kernel_size": 3},
        {"type": "gelu"},
        {"type": "global_avg_pool"},
        {"type": "linear", "in_features": 5, "out_features": 4},
    ],
}


def _act_kwargs(name: str) -> dict:
    return {"leaky_relu": {"negative_slope": 0.05}, "sin": {"w0": 3.0}}.get(name, {})


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_module_matches_spec(activation):
    arch = Architecture(mlp_spec([3, 7, 5, 2], activation, **_act_kwargs(activation)))
    model = arch.build()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 7), (7, 5), (5, 2)]
    assert arch.n_params == sum(p.numel() for p in model.parameters())
    assert arch.output_dim == 2 and arch.weight_layers == [0, 2, 4]
    assert arch.activations == [activation]
    # the module computes the activation the spec names
    w = torch.randn(arch.n_params)
    model = arch.build(w)
    x = torch.randn(4, 3)
    params = arch.unflatten(w)
    h = x @ params["0.weight"].T + params["0.bias"]
    expected = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": nn.functional.gelu,
                "leaky_relu": lambda t: nn.functional.leaky_relu(t, 0.05), "sin": lambda t: torch.sin(3.0 * t)}
    assert torch.allclose(model[1](model[0](x)), expected[activation](h), atol=1e-6)


def test_cnn_module_matches_spec():
    arch = Architecture(CNN_ALL)
    model = arch.build()
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "Tanh", "AvgPool2d", "Dropout",
                     "Flatten", "BatchNorm1d", "LayerNorm", "Linear"]
    assert arch.shapes[3] == (4, 4, 4) and arch.shapes[4] == (6, 2, 2) and arch.shapes[8] == (6,)
    # every parameter and BatchNorm running statistic is in the flat vector; num_batches_tracked is not
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert arch.n_params == sum(v.numel() for v in sd.values())
    assert [p.name for p in arch.layout] == list(sd)
    assert not model.training
    out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)
    gap = Architecture(CNN_GAP)
    assert gap.build()(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert gap.describe().startswith("CNN 3x8x8 -> 5-4")


@pytest.mark.parametrize("spec", [mlp_spec([2, 16, 16, 2]), CNN_ALL, CNN_GAP])
def test_flatten_unflatten_round_trip_bit_exact(spec):
    arch = Architecture(spec)
    w = torch.randn(arch.n_params)
    sd = arch.unflatten(w)
    assert torch.equal(arch.flatten(sd), w)
    batch = torch.randn(3, arch.n_params)
    sdb = arch.unflatten(batch)
    for p in arch.layout:
        assert sdb[p.name].shape == (3, *p.shape)
        assert torch.equal(sdb[p.name][1], batch[1, p.slice].view(p.shape))
    # build(w) loads exactly w, and its state dict flattens back to w
    model = arch.build(w)
    assert torch.equal(arch.flatten(model.state_dict()), w)


def test_spec_json_round_trip_and_equality():
    arch = Architecture(CNN_ALL)
    again = Architecture(__import__("json").loads(arch.to_json()))
    assert again == arch and hash(again) == hash(arch) and again.fingerprint == arch.fingerprint
    assert Architecture(mlp_spec([2, 3, 2])) != Architecture(mlp_spec([2, 4, 2]))


def test_flatten_errors_name_the_key():
    arch = Architecture(mlp_spec([2, 3, 2]))
    sd = arch.build().state_dict()
    with pytest.raises(ArchitectureError, match="missing key '2.bias'"):
        arch.flatten({k: v for k, v in sd.items() if k != "2.bias"})
    with pytest.raises(ArchitectureError, match="0.weight: shape"):
        arch.flatten({**sd, "0.weight": torch.zeros(3, 5)})
    with pytest.raises(ArchitectureError, match="unexpected keys"):
        arch.flatten({**sd, "9.weight": torch.zeros(1)})
    with pytest.raises(ArchitectureError, match="expected 17 parameters"):
        arch.unflatten(torch.zeros(16))


@pytest.mark.parametrize("spec, match", [
    ({"layers": []}, "input_shape"),
    ({"input_shape": [2], "layers": [{"type": "softmax"}]}, "unknown type"),
    ({"input_shape": [2], "layers": [{"type": "linear", "in_features": 3, "out_features": 2}]}, "expects 3"),
    ({"input_shape": [1, 2, 2], "layers": [{"type": "conv2d", "in_channels": 1, "out_channels": 2,
                                            "kernel_size": 3}]}, "too small"),
    ({"input_shape": [1, 8, 8], "layers": [{"type": "conv2d", "in_channels": 1, "out_channels": 2,
                                            "kernel_size": [3, 2]}]}, "square"),
])
def test_bad_specs_are_refused(spec, match):
    with pytest.raises(ArchitectureError, match=match):
        Architecture(spec)


def test_infer_mlp_from_sequential():
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    arch = infer_architecture(net.state_dict(), activation="tanh")
    assert arch == Architecture(mlp_spec([4, 8, 8, 3], "tanh"))
    w = arch.flatten(net.state_dict())
    x = torch.randn(5, 4)
    assert torch.allclose(arch.build(w)(x), net(x), atol=1e-6)


def test_infer_with_prefix_keys():
    net = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Dropout(0.1), nn.Linear(5, 2))
    sd = {f"module_list.{k}": v for k, v in net.state_dict().items()}
    arch = infer_architecture(sd)
    assert arch == Architecture(mlp_spec([2, 5, 2]))
    w = arch.flatten(sd, by_order=True)
    assert torch.equal(w, torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    x = torch.randn(3, 2)
    assert torch.allclose(arch.build(w)(x), net.eval()(x), atol=1e-6)


def test_infer_cnn_with_input_shape():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(6 * 4 * 4, 10)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    arch = infer_architecture(net.state_dict(), input_shape=[1, 8, 8])
    kinds = [layer["type"] for layer in arch.layers]
    assert kinds == ["conv2d", "batchnorm", "relu", "conv2d", "relu", "flatten", "linear"]
    assert "input_shape" not in arch.assumed and arch.assumed["flatten"].startswith("flatten of 6 channels x 4x4")
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(arch.build(arch.flatten(net.state_dict()))(x), net(x), atol=1e-5)
    # without input_shape the first common image size whose flatten fits is assumed (28 and 32 cannot give 4x4)
    guessed = infer_architecture(net.state_dict())
    assert guessed == arch and guessed.assumed["input_shape"].startswith("[1, 8, 8]")
    # a linear layer as wide as the channels means global average pooling
    gap = {"0.weight": torch.zeros(5, 3, 3, 3), "0.bias": torch.zeros(5), "2.weight": torch.zeros(4, 5)}
    assert [la["type"] for la in infer_architecture(gap, input_shape=[3, 8, 8]).layers][-2] == "global_avg_pool"


@pytest.mark.parametrize("sd, match", [
    ({"0.weight": torch.zeros(3, 2), "2.weight": torch.zeros(2, 4)}, "2 takes 4 inputs, which does not fit after 0"),
    ({"0.weight": torch.zeros(4, 1, 3, 3), "2.weight": torch.zeros(10, 7)}, "2 separate stacks"),
    ({"0.bias": torch.zeros(3)}, "a bias without a weight"),
    ({}, "empty"),
    ({"0.weight": torch.zeros(2, 2, 2)}, "rank 3"),
    ({"log_std": torch.zeros(2), "fc.weight": torch.zeros(2, 2)}, "log_std: its name does not end in weight"),
])
def test_infer_refuses_unsupported_input(sd, match):
    with pytest.raises(ArchitectureError, match=match):
        infer_architecture(sd)


def test_infer_cnn_mismatched_linear_is_explained():
    sd = {"0.weight": torch.zeros(4, 1, 3, 3), "2.weight": torch.zeros(10, 100)}
    with pytest.raises(ArchitectureError, match=r"2 takes 100 features, which the image size \[1, 8, 8\] cannot give"):
        infer_architecture(sd, input_shape=[1, 8, 8])
