"""Model registry and architectures. Every model normalises its own inputs (first layer).

All models are ``ImageClassifier``s: ``normalize → body → head`` where ``body`` returns the
penultimate features. Methods that work on features (SCAR, boundary shrink, Bad Teacher) use
``model.features(x)`` and ``model.head``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.errors import ConfigError
from unlearnbench.core.registry import Registry


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with buffers, so checkpoints carry the statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ImageClassifier(nn.Module):
    def __init__(self, normalize: Normalize, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.normalize = normalize
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# A builder returns (body, feature_dim) for (in_channels, image_size).
Builder = Callable[[int, int], tuple[nn.Module, int]]
MODELS: Registry[Builder] = Registry("models")


def create_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> ImageClassifier:
    """Build a registered model. ``mean``/``std`` default to 0.5 per channel."""
    builder = MODELS.get(name)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}.")
    mean = tuple(mean) if mean is not None else (0.5,) * in_channels
    std = tuple(std) if std is not None else (0.5,) * in_channels
    if len(mean) != in_channels or len(std) != in_channels:
        raise ConfigError(f"mean/std need {in_channels} values (one per channel).")
    body, dim = builder(in_channels, image_size)
    return ImageClassifier(Normalize(mean, std), body, dim, num_classes)


def _init(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


def conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@MODELS.register("cnn", summary="small 3-conv CNN with BN for 8x8 to 32x32 images (~100k params)")
def _cnn(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    layers = [*conv_bn(in_channels, 32), *conv_bn(32, 64), nn.MaxPool2d(2), *conv_bn(64, 128)]
    if image_size >= 16:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return _init(nn.Sequential(*layers)), 128


@MODELS.register("mlp", summary="two-hidden-layer MLP (256 units) for small images")
def _mlp(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    d = in_channels * image_size * image_size
    body = nn.Sequential(nn.Flatten(), nn.Linear(d, 256), nn.ReLU(inplace=True), nn.Linear(256, 256), nn.ReLU(inplace=True))
    return body, 256


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        return self.conv2(F.relu(self.bn2(out))) + sc


def _resnet(block: type[nn.Module], in_channels: int, preact: bool) -> tuple[nn.Module, int]:
    # CIFAR variant: 3x3 stride-1 stem and no max-pool (the reference ResNet-18 for unlearning).
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)]
    if not preact:
        layers += [nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
    cin = 64
    for i, cout in enumerate((64, 128, 256, 512)):
        for j in range(2):
            layers.append(block(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    if preact:
        layers += [nn.BatchNorm2d(512), nn.ReLU(inplace=True)]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return _init(nn.Sequential(*layers)), 512


@MODELS.register("resnet18", summary="ResNet-18, CIFAR variant (3x3 stride-1 conv1, no max-pool)")
def _resnet18(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return _resnet(BasicBlock, in_channels, preact=False)


@MODELS.register("preact_resnet18", summary="Pre-activation ResNet-18 (the adversarial-training standard)")
def _preact_resnet18(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return _resnet(PreActBlock, in_channels, preact=True)


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@MODELS.register("vgg16_bn", summary="VGG-16 with batch norm (max-pools skipped once the map is 1x1)")
def _vgg16_bn(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    cin, size = in_channels, image_size
    for v in VGG16:
        if v == "M":
            if size >= 2:  # small inputs (8x8 digits) run out of resolution before the 5th pool
                layers.append(nn.MaxPool2d(2))
                size //= 2
        else:
            layers += conv_bn(cin, int(v))
            cin = int(v)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return _init(nn.Sequential(*layers)), 512


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        sc = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        return self.conv2(F.relu(self.bn2(o))) + sc


def wide_resnet(in_channels: int, depth: int, widen: int) -> tuple[nn.Module, int]:
    n = (depth - 4) // 6
    widths = (16, 16 * widen, 32 * widen, 64 * widen)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
    cin = widths[0]
    for i, cout in enumerate(widths[1:]):
        for j in range(n):
            layers.append(WideBlock(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return _init(nn.Sequential(*layers)), cin


@MODELS.register("wrn28_10", summary="Wide-ResNet-28-10 (36M params)")
def _wrn28_10(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return wide_resnet(in_channels, 28, 10)
