"""Architecture families recognised from a state dict's key names and shapes.

A folder of checkpoints that other people trained carries no code, only tensors. Where their names and shapes
are those of a published family, the family's built-in (:mod:`wslviz.core.builtins`) with the right arguments is
the network, so the zoo gets a forward and its symmetries instead of a weights-only layout:

==========================  =================================================================================
family                      recognised by
==========================  =================================================================================
torchvision ResNet          ``conv1``, ``bn1``, ``layer1``-``layer4`` (``layerI.J.conv1``; ``conv3`` in bottleneck
                            blocks), ``fc``: depth from the blocks per stage, stem from ``conv1``'s kernel (7: ImageNet
                            with max-pool, 3: CIFAR), classes from ``fc``
CIFAR ResNet, option A      ``conv1`` (16 channels), ``layer1``-``layer3`` without shortcut tensors, ``linear``:
                            ResNet-20/32/44/56/110 from the blocks per stage
torchvision VGG             ``features.I`` convs (with BatchNorm or not) at the indices torchvision's configurations
                            put them, ``classifier.0/3/6``: VGG-11/13/16/19
torchvision MobileNet-V2     ``features.0.0``, ``features.1.conv.0.0`` (depthwise), ..., ``features.18.0``,
                            ``classifier.1``: the width from ``features.0.0``, checked against the whole layout
GRU / LSTM / RNN classifier one recurrent module (``NAME.weight_ih_l0``, ``weight_hh_l0``: the gate count from their
                            shapes, layers and directions from the names) and one linear head on its outputs
Stable-Baselines3 policy    ``mlp_extractor.policy_net`` / ``value_net`` MLPs of equal widths, ``action_net``,
                            ``value_net`` (discrete actions; SB3's default tanh assumed)
1-D convolutional net       a chain of ``Conv1d`` weights ``[out, in, k]`` (odd ``k``), each optionally followed by a
                            ``BatchNorm1d``, then linear layers: a global average pool when the first linear layer
                            takes the last conv's channels, a flatten (its length) when a multiple of them
==========================  =================================================================================

What a state dict cannot tell (the input size) is assumed and said so (``assumed``). A recognition is only used
when the built-in's state dict has exactly the checkpoint's names and shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wslviz.core.published import RESNET_LAYERS, VGG_CONFIGS, TorchvisionMobileNetV2

Shapes = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class Family:
    """A recognised family: the built-in's ``name`` and ``kwargs``, the ``input_shape`` it is run on, and what was
    ``assumed``."""

    name: str
    kwargs: dict[str, Any]
    input_shape: tuple[int, ...]
    assumed: dict[str, str] = field(default_factory=dict)
    label: str = ""


def _blocks(shapes: Shapes, stage: int) -> int:
    found = {int(m.group(1)) for k in shapes if (m := re.match(rf"layer{stage}\.(\d+)\.conv1\.weight$", k))}
    return max(found) + 1 if found else 0


def _torchvision_resnet(shapes: Shapes) -> Family | None:
    if not {"conv1.weight", "bn1.weight", "fc.weight", "layer4.0.conv1.weight"} <= set(shapes):
        return None
    blocks = tuple(_blocks(shapes, s) for s in (1, 2, 3, 4))
    kind = "bottleneck" if "layer1.0.conv3.weight" in shapes else "basic"
    depth = next((d for d, (k, b) in RESNET_LAYERS.items() if k == kind and b == blocks), None)
    if depth is None:
        return None
    out, cin, kernel = shapes["conv1.weight"][0], shapes["conv1.weight"][1], shapes["conv1.weight"][2]
    stem = "imagenet" if kernel == 7 else "cifar"
    size = 224 if stem == "imagenet" else 32
    kwargs = {"depth": depth, "n_classes": int(shapes["fc.weight"][0]), "in_channels": int(cin), "stem": stem}
    if out != 64:
        kwargs["width"] = out / 64
    return Family("resnet_torchvision", kwargs, (int(cin), size, size),
                  {"input size": f"{size}x{size} ({'ImageNet' if stem == 'imagenet' else 'CIFAR'} stem)"},
                  f"torchvision ResNet-{depth}")


def _cifar_resnet_a(shapes: Shapes) -> Family | None:
    if not {"conv1.weight", "bn1.weight", "linear.weight", "layer3.0.conv1.weight"} <= set(shapes):
        return None
    if "layer4.0.conv1.weight" in shapes or any("shortcut" in k or "downsample" in k for k in shapes):
        return None
    n = _blocks(shapes, 1)
    if not n or (_blocks(shapes, 2), _blocks(shapes, 3)) != (n, n) or shapes["conv1.weight"][0] != 16:
        return None
    cin = int(shapes["conv1.weight"][1])
    return Family("resnet_cifar_a", {"depth": 6 * n + 2, "n_classes": int(shapes["linear.weight"][0]),
                                     "in_channels": cin}, (cin, 32, 32), {"input size": "32x32 (CIFAR)"},
                  f"CIFAR ResNet-{6 * n + 2} (option-A shortcuts)")


def _vgg_indices(config: tuple, batch_norm: bool) -> list[int]:
    """The ``features`` indices of the convs of a torchvision VGG configuration."""
    out, i = [], 0
    for v in config:
        if v == "M":
            i += 1
        else:
            out.append(i)
            i += 3 if batch_norm else 2
    return out


def _torchvision_vgg(shapes: Shapes) -> Family | None:
    if not {"classifier.0.weight", "classifier.3.weight", "classifier.6.weight"} <= set(shapes):
        return None
    convs = sorted(int(m.group(1)) for k, v in shapes.items()
                   if (m := re.match(r"features\.(\d+)\.weight$", k)) and len(v) == 4)
    if not convs:
        return None
    batch_norm = f"features.{convs[0] + 1}.running_mean" in shapes
    for depth, config in VGG_CONFIGS.items():
        if convs == _vgg_indices(config, batch_norm):
            cin, first = int(shapes[f"features.{convs[0]}.weight"][1]), int(shapes[f"features.{convs[0]}.weight"][0])
            kwargs = {"depth": depth, "batch_norm": batch_norm, "n_classes": int(shapes["classifier.6.weight"][0]),
                      "in_channels": cin}
            if first != 64:
                kwargs["width"] = first / 64
            return Family("vgg_torchvision", kwargs, (cin, 224, 224), {"input size": "224x224 (ImageNet)"},
                          f"torchvision VGG-{depth}" + ("-BN" if batch_norm else ""))
    return None


def _recurrent_classifier(shapes: Shapes) -> Family | None:
    found = {m.group(1) for k in shapes if (m := re.match(r"(\w+)\.weight_ih_l0$", k))}
    if len(found) != 1:
        return None
    rnn = found.pop()
    ih, hh = shapes[f"{rnn}.weight_ih_l0"], shapes[f"{rnn}.weight_hh_l0"]
    hidden = int(hh[1])
    cell = {1: "rnn", 3: "gru", 4: "lstm"}.get(int(hh[0]) // hidden)
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := re.match(rf"{rnn}\.weight_ih_l(\d+)", k)))
    bidirectional = f"{rnn}.weight_ih_l0_reverse" in shapes
    heads = {k.rsplit(".", 1)[0] for k in shapes if not k.startswith(f"{rnn}.")}
    if cell is None or len(heads) != 1:
        return None
    head = heads.pop()
    weight = shapes.get(f"{head}.weight")
    if weight is None or len(weight) != 2 or weight[1] != hidden * (2 if bidirectional else 1):
        return None
    kwargs = {"cell": cell, "input_size": int(ih[1]), "hidden_size": hidden, "num_layers": layers,
              "bidirectional": bidirectional, "n_classes": int(weight[0]), "rnn_name": rnn, "head_name": head}
    return Family("recurrent_classifier", kwargs, (16, int(ih[1])),
                  {"input size": "16 time steps (a state dict does not record the sequence length)",
                   "head": "applied to the last time step's output"}, f"{cell.upper()} classifier")


def _sb3_actor_critic(shapes: Shapes) -> Family | None:
    if not {"action_net.weight", "value_net.weight", "mlp_extractor.policy_net.0.weight"} <= set(shapes):
        return None

    def widths(net: str) -> list[tuple[int, int]]:
        found = sorted((int(m.group(1)), tuple(v)) for k, v in shapes.items()
                       if (m := re.match(rf"mlp_extractor\.{net}\.(\d+)\.weight$", k)))
        return [(i, shape) for i, shape in found]

    pi, vf = widths("policy_net"), widths("value_net")
    if [s for _, s in pi] != [s for _, s in vf] or [i for i, _ in pi] != list(range(0, 2 * len(pi), 2)):
        return None  # separate policy and value widths, or layers other than linear + activation pairs
    n_inputs, arch = int(pi[0][1][1]), [int(s[0]) for _, s in pi]
    if tuple(shapes["action_net.weight"])[1:] != (arch[-1],) or tuple(shapes["value_net.weight"]) != (1, arch[-1]):
        return None
    kwargs = {"n_inputs": n_inputs, "n_actions": int(shapes["action_net.weight"][0]), "net_arch": arch,
              "activation": "tanh"}
    return Family("actor_critic", kwargs, (n_inputs,), {"activation": "tanh (SB3's default; a state dict does not "
                                                                      "record activations)"},
                  "Stable-Baselines3 actor-critic policy")


def _torchvision_mobilenet_v2(shapes: Shapes) -> Family | None:
    if not {"features.0.0.weight", "features.1.conv.0.0.weight", "features.18.0.weight",
            "classifier.1.weight"} <= set(shapes):
        return None
    cin, width = int(shapes["features.0.0.weight"][1]), shapes["features.0.0.weight"][0] / 32
    kwargs = {"n_classes": int(shapes["classifier.1.weight"][0]), "in_channels": cin}
    if width != 1:
        kwargs["width"] = width
    expected = {k: tuple(v.shape) for k, v in TorchvisionMobileNetV2(**kwargs).state_dict().items()
                if not k.endswith("num_batches_tracked")}
    if expected != {k: tuple(v) for k, v in shapes.items()}:
        return None  # another width rounding, or another network that shares the first names
    return Family("mobilenet_v2_torchvision", kwargs, (cin, 224, 224), {"input size": "224x224 (ImageNet)"},
                  "torchvision MobileNet-V2")


def _conv1d_net(shapes: Shapes) -> Family | None:
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        owner, _, leaf = key.rpartition(".")
        modules.setdefault(owner, {})[leaf] = tuple(shape)
    layers, width = [], None
    for name, tensors in modules.items():
        w = tensors.get("weight")
        if w is None or set(tensors) - {"weight", "bias", "running_mean", "running_var"}:
            return None
        if len(w) == 3 and (not layers or layers[-1]["type"] != "linear") and (width in (None, w[1])) \
                and w[2] % 2 == 1:
            layers.append({"name": name, "type": "conv1d", "in": w[1], "out": w[0], "kernel": w[2],
                           "bias": "bias" in tensors})
        elif len(w) == 1 and "running_mean" in tensors and layers and layers[-1]["type"] == "conv1d" \
                and w[0] == width:
            layers.append({"name": name, "type": "batchnorm1d", "out": w[0]})
        elif len(w) == 2 and layers and (layers[-1]["type"] == "linear" and w[1] == width
                                         or layers[-1]["type"] != "linear" and w[1] % width == 0):
            layers.append({"name": name, "type": "linear", "in": w[1], "out": w[0], "bias": "bias" in tensors})
        else:
            return None
        width = w[0]
    first_linear = next((i for i, layer in enumerate(layers) if layer["type"] == "linear"), None)
    if first_linear is None or not any(layer["type"] == "conv1d" for layer in layers):
        return None
    channels = layers[first_linear - 1]["out"]
    length = layers[first_linear]["in"] // channels
    pool = "avg" if length == 1 else "flatten"
    length = length if pool == "flatten" else 128
    return Family("conv1d_net", {"layers": layers, "pool": pool}, (layers[0]["in"], length),
                  {"input size": f"{length} time steps" + (" (the flatten's width over the last conv's channels)"
                                                           if pool == "flatten" else ""),
                   "layers": "ReLU after each convolution (and its BatchNorm) and between linear layers; padding "
                             "kernel // 2, stride and dilation 1" + ("; a global average pool over time before the "
                                                                     "first linear layer" if pool == "avg" else "")},
                  "1-D convolutional classifier")


RECOGNISERS = (_torchvision_resnet, _cifar_resnet_a, _torchvision_vgg, _torchvision_mobilenet_v2, _recurrent_classifier,
               _sb3_actor_critic, _conv1d_net)
"""Tried in order; the first that recognises a state dict names its family."""


def recognise(shapes: Shapes, input_shape: Sequence[int] | None = None) -> Family | None:
    """The family of a state dict given as ``{name: shape}`` (wrapper prefixes already stripped), or None; a stated
    ``input_shape`` replaces the assumed one."""
    for rule in RECOGNISERS:
        family = rule(shapes)
        if family is not None:
            if input_shape is not None:
                return Family(family.name, family.kwargs, tuple(int(s) for s in input_shape), {}, family.label)
            return family
    return None
