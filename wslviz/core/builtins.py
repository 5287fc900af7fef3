"""Built-in ``nn.Module`` architectures, by name, for :class:`wslviz.core.module_arch.ModuleArchitecture`.

Every builder takes keyword arguments only (they are stored in ``zoo.json``) and returns a module whose
state dict keys follow the published layout named below, so checkpoints saved by those projects load by
key (the networks of published checkpoints are in :mod:`wslviz.core.published`, shared blocks in
:mod:`wslviz.core.blocks`). All of them are plain PyTorch (no torchvision), traceable by ``torch.fx`` and runnable under
``torch.func.vmap`` (no data-dependent control flow, no in-place ops on inputs).

========================  =====================================================================================
name                      network
========================  =====================================================================================
``lenet5``                LeCun et al. 1998: conv(5x5, 6) - pool - conv(5x5, 16) - pool - 120 - 84 - classes
``vgg11``                 Simonyan & Zisserman 2015, configuration A, channels times ``width`` (narrow), optional
                          BatchNorm, global average pooling before one linear classifier (as Git Re-Basin's
                          CIFAR VGG runs without the 4096-wide head)
``resnet20``              He et al. 2016, CIFAR ResNet (3 stages of ``(depth - 2) / 6`` basic blocks, 16/32/64
                          channels times ``width`` or set by ``channels``, 1x1 projection shortcuts), the Git
                          Re-Basin ResNet-20 with a width multiplier
``resnet_torchvision``    torchvision's ResNet-18/34/50/101/152 key layout (``depth``), ImageNet or CIFAR stem
``resnet_cifar_a``        the CIFAR ResNet-20/32/44/56/110 checkpoints people share: option-A (parameter-free,
                          zero-padding) shortcuts and a ``linear`` head
``vgg_torchvision``       torchvision's VGG-11/13/16/19 key layout, with or without BatchNorm
``mobilenet_v2_torchvision``  torchvision's MobileNet-V2 key layout (inverted residuals, ReLU6), any width
``recurrent_classifier``  ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN`` over a sequence and a linear head on its last step
``resnet18_modelzoos``    ResNet-18 as the Model Zoos (Schürholt et al. 2022) train it: torchvision's key layout
                          (``conv1``, ``bn1``, ``layer{1-4}.{0,1}.conv1/bn1/conv2/bn2/downsample.{0,1}``, ``fc``)
                          with a 3x3 stride-1 stem and no max-pool
``gpt``                   a pre-LayerNorm GPT-style decoder (Radford et al. 2019): token and position
                          embeddings, ``n_layer`` blocks of causal multi-head self-attention and a GELU MLP,
                          final LayerNorm, linear head (optionally tied to the token embedding); predicts from
                          the last position
``actor_critic``          a Stable-Baselines3 ``ActorCriticPolicy`` MLP (Raffin et al. 2021): key layout
                          ``mlp_extractor.policy_net.{0,2}``, ``mlp_extractor.value_net.{0,2}``, ``action_net``,
                          ``value_net``; outputs the action logits followed by the value
========================  =====================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wslviz.core.blocks import BasicBlock, activation_module
from wslviz.core.published import (
    CifarResNetA,
    Conv1dNet,
    RecurrentClassifier,
    TorchvisionMobileNetV2,
    TorchvisionResNet,
    TorchvisionVGG,
)


# ---------------------------------------------------------------------------------------------- LeNet-5
class LeNet5(nn.Module):
    """LeNet-5 on ``[C, S, S]`` images: two 5x5 convs (6 and 16 channels, padding 2 when ``S < 28``) with
    2x2 max-pooling, then 120 - 84 - ``n_classes`` linear layers."""

    def __init__(self, in_channels: int = 1, image_size: int = 32, n_classes: int = 10, activation: str = "relu"):
        super().__init__()
        pad = 2 if image_size < 28 else 0
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=pad)
        self.conv2 = nn.Conv2d(6, 16, 5, padding=pad)
        size = image_size
        for _ in range(2):
            size = (size + 2 * pad - 4) // 2
        if size < 1:
            raise ValueError(f"LeNet-5 needs larger images than {image_size}x{image_size}")
        self.fc1 = nn.Linear(16 * size * size, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, n_classes)
        self.act = activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.act(self.conv1(x)), 2)
        x = F.max_pool2d(self.act(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


# ---------------------------------------------------------------------------------------------- VGG-11
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG(nn.Module):
    """VGG-11 (configuration A) with every width times ``width``; a max-pool is skipped once the image is
    1x1. ``features`` is an ``nn.Sequential`` (keys ``features.{i}.weight``), ``classifier`` one linear layer
    after global average pooling."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, n_classes: int = 10, width: float = 0.25,
                 batch_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        c, size = in_channels, image_size
        for v in VGG11:
            if v == "M":
                if size >= 2:
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            out = max(1, round(int(v) * width))
            layers.append(nn.Conv2d(c, out, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU())
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------- ResNets
class CifarResNet(nn.Module):
    """CIFAR ResNet of depth ``6n + 2`` (He et al. 2016, Sec. 4.2): a 3x3 stem, three stages of ``n`` basic
    blocks at ``16, 32, 64`` channels times ``width`` (stride 2 into stages 2 and 3), global average pooling,
    a linear classifier. ``depth=20, width=1`` is ResNet-20. ``channels`` (three ints) sets the stages' widths
    directly instead (``width`` is then ignored)."""

    def __init__(self, depth: int = 20, width: float = 1.0, in_channels: int = 3, n_classes: int = 10,
                 norm: bool = True, channels: Sequence[int] | None = None):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (8, 14, 20, ...), got {depth}")
        n = (depth - 2) // 6
        widths = [max(1, round(c * width)) for c in (16, 32, 64)] if channels is None else [int(c) for c in channels]
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"a CIFAR ResNet has three stages of >= 1 channels, got channels={channels}")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(widths[0]) if norm else nn.Identity()
        c = widths[0]
        stages = []
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1, norm))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


class ResNet18(nn.Module):
    """ResNet-18 in torchvision's key layout with the Model Zoos' CIFAR stem: ``conv1`` 3x3 stride 1 without
    bias, ``bn1``, no max-pool, ``layer1``-``layer4`` of two basic blocks each (64/128/256/512 channels; the
    first block of layers 2-4 strided with a ``downsample`` projection), average pooling, ``fc``."""

    def __init__(self, in_channels: int = 3, n_classes: int = 10, width: float = 1.0):
        super().__init__()
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        c = widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c, w, stride), BasicBlock(w, w, 1)))
            c = w
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------- GPT
class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate query, key, value and output projections
    (``q``, ``k``, ``v``, ``proj``): ``softmax(q_h k_h^T / sqrt(d_h) + causal mask) v_h`` per head, heads
    concatenated, then ``proj``."""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} is not a multiple of n_head {n_head}")
        self.n_head, self.d_head = n_head, d_model // n_head
        self.q, self.k, self.v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q = self.q(x).view(n, t, self.n_head, self.d_head).transpose(1, 2)
        k = self.k(x).view(n, t, self.n_head, self.d_head).transpose(1, 2)
        v = self.v(x).view(n, t, self.n_head, self.d_head).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_head))
        causal = x.new_ones(t, t).tril()
        att = att.masked_fill(causal == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj(y)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))`` (GELU MLP, 4x wide
    unless ``d_mlp``)."""

    def __init__(self, d_model: int, n_head: int, d_mlp: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, d_mlp)
        self.out = nn.Linear(d_mlp, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """A GPT-style decoder on token ids ``[N, T]`` (floats holding integers, as a :class:`~wslviz.core.tasks.Task`
    stores them): ``tok_emb`` + ``pos_emb``, ``n_layer`` pre-LN :class:`Block` s, ``ln_f``, ``head`` (tied to
    ``tok_emb.weight`` when ``tie_embeddings``; then the vocabulary must equal the classes). Returns the logits
    at the last position, ``[N, n_classes]``."""

    def __init__(self, vocab_size: int = 24, seq_len: int = 3, n_classes: int = 23, d_model: int = 16,
                 n_head: int = 2, n_layer: int = 1, d_mlp: int | None = None, tie_embeddings: bool = False):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head, d_mlp or 4 * d_model) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes, bias=not tie_embeddings)
        if tie_embeddings:
            if vocab_size != n_classes:
                raise ValueError("tied embeddings need vocab_size == n_classes")
            self.head.weight = self.tok_emb.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = x.long()
        h = self.tok_emb(idx) + self.pos_emb.weight[: idx.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))[:, -1]


# ---------------------------------------------------------------------------------------------- SB3 policy
class MlpExtractor(nn.Module):
    """SB3's ``MlpExtractor``: separate ``policy_net`` and ``value_net`` MLPs (linear + activation pairs)."""

    def __init__(self, n_inputs: int, net_arch: list[int], activation: str):
        super().__init__()

        def mlp() -> nn.Sequential:
            layers: list[nn.Module] = []
            c = n_inputs
            for w in net_arch:
                layers += [nn.Linear(c, w), activation_module(activation)]
                c = w
            return nn.Sequential(*layers)

        self.policy_net, self.value_net = mlp(), mlp()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy_net(x), self.value_net(x)


class ActorCritic(nn.Module):
    """An SB3 ``ActorCriticPolicy`` for discrete actions (``net_arch=[64, 64]``, tanh by default): returns
    ``[N, n_actions + 1]``, the action logits and the state value."""

    def __init__(self, n_inputs: int = 4, n_actions: int = 2, net_arch: list[int] | None = None,
                 activation: str = "tanh"):
        super().__init__()
        net_arch = list(net_arch or [64, 64])
        self.mlp_extractor = MlpExtractor(n_inputs, net_arch, activation)
        self.action_net = nn.Linear(net_arch[-1], n_actions)
        self.value_net = nn.Linear(net_arch[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pi, vf = self.mlp_extractor(x)
        return torch.cat([self.action_net(pi), self.value_net(vf)], dim=-1)


BUILTINS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "vgg11": VGG,
    "resnet20": CifarResNet,
    "resnet18_modelzoos": ResNet18,
    "resnet_torchvision": TorchvisionResNet,
    "resnet_cifar_a": CifarResNetA,
    "vgg_torchvision": TorchvisionVGG,
    "mobilenet_v2_torchvision": TorchvisionMobileNetV2,
    "recurrent_classifier": RecurrentClassifier,
    "conv1d_net": Conv1dNet,
    "gpt": GPT,
    "actor_critic": ActorCritic,
}
"""Built-in architectures by name; each value is called with the spec's keyword arguments."""

INPUTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "lenet5": lambda kw: {"shape": [kw.get("in_channels", 1), kw.get("image_size", 32), kw.get("image_size", 32)]},
    "vgg11": lambda kw: {"shape": [kw.get("in_channels", 3), kw.get("image_size", 32), kw.get("image_size", 32)]},
    "resnet20": lambda kw: {"shape": [kw.get("in_channels", 3), 32, 32]},
    "resnet18_modelzoos": lambda kw: {"shape": [kw.get("in_channels", 3), 32, 32]},
    "resnet_torchvision": lambda kw: {"shape": [kw.get("in_channels", 3)] + ([224, 224] if kw.get("stem", "imagenet")
                                                                           == "imagenet" else [32, 32])},
    "resnet_cifar_a": lambda kw: {"shape": [kw.get("in_channels", 3), 32, 32]},
    "vgg_torchvision": lambda kw: {"shape": [kw.get("in_channels", 3), 224, 224]},
    "mobilenet_v2_torchvision": lambda kw: {"shape": [kw.get("in_channels", 3), 224, 224]},
    "recurrent_classifier": lambda kw: {"shape": [16, kw.get("input_size", 8)]},
    "conv1d_net": lambda kw: {"shape": [kw["layers"][0]["in"], 128]},
    "gpt": lambda kw: {"shape": [kw.get("seq_len", 3)], "dtype": "int", "high": kw.get("vocab_size", 24)},
    "actor_critic": lambda kw: {"shape": [kw.get("n_inputs", 4)]},
}
"""The default example input of each built-in (shape without the batch axis; integer inputs with their range)."""
