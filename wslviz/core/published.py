"""Networks in the key layouts of published checkpoints, so that files saved by those projects load by name:
torchvision's ResNets, VGGs and MobileNet-V2, the CIFAR ResNets with option-A shortcuts most CIFAR-10 checkpoints
use, and recurrent classifiers as tutorials write them. Registered as built-ins in :mod:`wslviz.core.builtins`
and recognised from a state dict by :mod:`wslviz.core.families`; plain PyTorch (no torchvision), traceable by
``torch.fx``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wslviz.core.blocks import BasicBlock


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block (v1.5: the stride sits in the 3x3 conv): 1x1 reduce, 3x3, 1x1 expand to
    ``4 * planes``, each followed by BatchNorm, plus the identity or a ``downsample`` projection."""

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = 4 * planes
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.downsample(x))


RESNET_LAYERS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
                 101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}
"""torchvision's ResNets: block kind and blocks per stage, by depth."""


class TorchvisionResNet(nn.Module):
    """ResNet-18/34/50/101/152 (He et al. 2016) in torchvision's key layout: ``conv1``, ``bn1``, ``layer1``-``layer4``
    of basic or bottleneck blocks (64/128/256/512 planes times ``width``; the first block of layers 2-4 strided,
    with a ``downsample`` projection), average pooling, ``fc``. ``stem="imagenet"``: a 7x7 stride-2 ``conv1`` and a
    3x3 stride-2 max-pool (torchvision's); ``"cifar"``: a 3x3 stride-1 ``conv1`` and no pool (CIFAR ports)."""

    def __init__(self, depth: int = 18, n_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
                 width: float = 1.0):
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise ValueError(f"torchvision ResNets have depth {', '.join(map(str, RESNET_LAYERS))}, got {depth}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        kind, blocks = RESNET_LAYERS[depth]
        planes = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        self.conv1 = (nn.Conv2d(in_channels, planes[0], 7, 2, 3, bias=False) if stem == "imagenet" else
                      nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False))
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        c = planes[0]
        for i, (p, n) in enumerate(zip(planes, blocks, strict=True)):
            layer = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layer.append(Bottleneck(c, p, stride) if kind == "bottleneck" else BasicBlock(c, p, stride))
                c = 4 * p if kind == "bottleneck" else p
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class BlockA(nn.Module):
    """A CIFAR basic block with He et al.'s parameter-free "option A" shortcut: when the shape changes, the input
    is subsampled by 2 and zero-padded with ``cout // 4`` channels on each side (the layout of the widely used
    ResNet-20/32/44/56/110 checkpoints: ``conv1``, ``bn1``, ``conv2``, ``bn2``, no shortcut tensors)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2 if stride != 1 or cin != cout else -1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.pad < 0 else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + shortcut)


class CifarResNetA(nn.Module):
    """CIFAR ResNet-20/32/44/56/110 (He et al. 2016, Sec. 4.2) with option-A shortcuts and a ``linear`` head, as the
    popular CIFAR-10 checkpoints are saved: ``conv1``, ``bn1``, ``layer1``-``layer3`` of ``(depth - 2) / 6``
    :class:`BlockA` at 16/32/64 channels, average pooling, ``linear``."""

    def __init__(self, depth: int = 20, n_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.conv1, self.bn1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        c = 16
        for i, w in enumerate((16, 32, 64)):
            layer = []
            for j in range(n):
                layer.append(BlockA(c, w, 2 if i > 0 and j == 0 else 1))
                c = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.linear = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean(dim=(2, 3)))


VGG_CONFIGS = {11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
               13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
               16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
               19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512,
                    "M")}
"""torchvision's VGG configurations (Simonyan & Zisserman 2015, A/B/D/E): channels of the 3x3 convs, M a max-pool."""


class TorchvisionVGG(nn.Module):
    """VGG-11/13/16/19 in torchvision's key layout: ``features`` (3x3 convs with padding 1, each followed by an
    optional BatchNorm and a ReLU, 2x2 max-pools at the configuration's M), average pooling to 7x7, ``classifier``
    (``0``: 25,088 -> 4,096, ReLU, dropout, ``3``: 4,096 -> 4,096, ReLU, dropout, ``6``: 4,096 -> classes); ``width``
    scales every channel count and the classifier's 4,096 (narrow variants for tests and small data)."""

    def __init__(self, depth: int = 11, batch_norm: bool = False, n_classes: int = 1000, in_channels: int = 3,
                 width: float = 1.0):
        super().__init__()
        if depth not in VGG_CONFIGS:
            raise ValueError(f"torchvision VGGs have depth {', '.join(map(str, VGG_CONFIGS))}, got {depth}")
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG_CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            v = max(1, round(v * width))
            layers.append(nn.Conv2d(c, v, 3, padding=1))
            layers += [nn.BatchNorm2d(v), nn.ReLU()] if batch_norm else [nn.ReLU()]
            c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        hidden = max(1, round(4096 * width))
        self.classifier = nn.Sequential(nn.Linear(c * 49, hidden), nn.ReLU(), nn.Dropout(), nn.Linear(hidden, hidden),
                                        nn.ReLU(), nn.Dropout(), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class RecurrentClassifier(nn.Module):
    """A recurrent classifier as tutorials write it: ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN`` (``cell``) over a
    batch-first sequence ``[N, T, input_size]``, then a linear head on the last time step's output. The two
    modules' attribute names (``rnn_name``, ``head_name``) follow the checkpoint (``gru``/``lstm``/``rnn``, ``fc``)."""

    def __init__(self, cell: str = "gru", input_size: int = 8, hidden_size: int = 32, num_layers: int = 1,
                 bidirectional: bool = False, n_classes: int = 10, rnn_name: str = "rnn", head_name: str = "fc"):
        super().__init__()
        cells = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}
        if cell not in cells:
            raise ValueError(f"cell must be one of {', '.join(cells)}, got {cell!r}")
        if not (rnn_name.isidentifier() and head_name.isidentifier()) or rnn_name == head_name:
            raise ValueError(f"module names must be two different identifiers, got {rnn_name!r} and {head_name!r}")
        self.names = (rnn_name, head_name)
        setattr(self, rnn_name, cells[cell](input_size, hidden_size, num_layers, batch_first=True,
                                            bidirectional=bidirectional))
        setattr(self, head_name, nn.Linear(hidden_size * (2 if bidirectional else 1), n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = getattr(self, self.names[0])(x)[0]
        return getattr(self, self.names[1])(out[:, -1])


def _divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: ``v`` rounded to a multiple of ``divisor``, never below 90% of ``v``."""
    out = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6()) if act else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNet-V2's block (Sandler et al. 2018) in torchvision's layout: ``conv`` = [1x1 expand + BN + ReLU6]
    (absent when ``expand == 1``), 3x3 depthwise + BN + ReLU6, 1x1 project, BN; the input is added when the
    stride is 1 and the channels match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = round(cin * expand)
        layers: list[nn.Module] = [_conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))
"""MobileNet-V2's stages: (expansion, channels, blocks, first stride)."""


class TorchvisionMobileNetV2(nn.Module):
    """MobileNet-V2 in torchvision's key layout: ``features.0`` (3x3 stride-2 conv + BN + ReLU6), ``features.1``-
    ``features.17`` :class:`InvertedResidual` blocks, ``features.18`` (1x1 conv to 1,280 + BN + ReLU6), average
    pooling, ``classifier.1`` (``classifier.0`` is dropout); channels times ``width`` rounded to multiples of 8."""

    def __init__(self, n_classes: int = 1000, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        c = _divisible(32 * width)
        last = _divisible(1280 * max(1.0, width))
        layers: list[nn.Module] = [_conv_bn(in_channels, c, 3, 2)]
        for t, ch, n, stride in MOBILENET_V2:
            out = _divisible(ch * width)
            for i in range(n):
                layers.append(InvertedResidual(c, out, stride if i == 0 else 1, t))
                c = out
        layers.append(_conv_bn(c, last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class Conv1dNet(nn.Module):
    """A 1-D convolutional classifier as time-series and audio tutorials write it: ``Conv1d`` layers (each optionally
    followed by a ``BatchNorm1d``, then ReLU), a global average pool over time or a flatten, then linear layers with
    ReLU between them. ``layers``: ``[{"name", "type": "conv1d"|"batchnorm1d"|"linear", "in", "out", "kernel",
    "bias"}, ...]`` in order, the module names following the checkpoint (dotted names such as ``features.0`` nest);
    ``pool``: ``"avg"`` or ``"flatten"``. Convolutions pad to keep the length (``kernel // 2``; odd kernels)."""

    def __init__(self, layers: list[dict], pool: str = "avg"):
        super().__init__()
        if pool not in ("avg", "flatten"):
            raise ValueError(f"pool must be 'avg' or 'flatten', got {pool!r}")
        self.pool, self.order = pool, []
        for spec in layers:
            kind, name = spec["type"], str(spec["name"])
            if kind == "conv1d":
                module = nn.Conv1d(spec["in"], spec["out"], spec["kernel"], padding=spec["kernel"] // 2,
                                   bias=spec.get("bias", True))
            elif kind == "batchnorm1d":
                module = nn.BatchNorm1d(spec["out"])
            elif kind == "linear":
                module = nn.Linear(spec["in"], spec["out"], bias=spec.get("bias", True))
            else:
                raise ValueError(f"unknown layer type {kind!r}")
            parent = self
            *path, leaf = name.split(".")
            for part in path:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            parent.add_module(leaf, module)
            self.order.append((kind, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kinds = [k for k, _ in self.order]
        for i, (kind, name) in enumerate(self.order):
            module = self.get_submodule(name)
            if kind == "linear" and (i == 0 or kinds[i - 1] != "linear"):
                x = x.mean(-1) if self.pool == "avg" else x.flatten(1)
            x = module(x)
            last_of_block = i + 1 == len(kinds) or kinds[i + 1] != "batchnorm1d"
            if last_of_block and i + 1 < len(kinds):
                x = F.relu(x)
        return x
