"""Model registry and architectures. Every model normalises its own inputs (first layer).

Registered models are ``ImageClassifier``s: ``normalize → body → head`` where ``body`` returns
the penultimate features. Foreign models (``torchvision:NAME``, ``timm:NAME``, a user's
``module.path:factory``) sit behind a :class:`Normalized` first layer; they, the normalising
layers and the checks every model passes (finite weights, a forward pass on the data's shape) live
in ``core.foreign``, on which this module builds. Methods that work on
penultimate features (SCAR, scar_self) call :func:`penultimate_features`, which uses a model's
``features(x)`` method or else the input of its last ``nn.Linear`` (a forward hook), so any
classifier works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.errors import ConfigError, ModelError
from unlearnbench.core.foreign import Normalize, Normalized, build_foreign, check_foreign_spec, is_foreign
from unlearnbench.core.registry import Registry


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
) -> nn.Module:
    """Build a registered model (``mean``/``std`` default to 0.5 per channel), or a foreign one.

    A foreign spec (``torchvision:NAME``, ``timm:NAME``, ``module.path:factory``) builds the
    model with ``num_classes`` outputs behind a :class:`Normalized` first layer (``mean``/``std``
    default to 0 and 1 there: the model then receives the [0, 1] images unchanged).
    """
    if is_foreign(name):
        return build_foreign(name, num_classes, in_channels, image_size, mean, std)
    entry = MODELS.entry(name)
    create = entry.info.get("create")
    if create is not None:  # a model of another task (generation: core.diffusion) builds itself
        return create(num_classes, in_channels, image_size)
    builder = entry.obj
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


@MODELS.register("cnn", summary="small 3-conv CNN with BN for 8x8 to 32x32 images (~100k params)", task="classification")
def _cnn(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    layers = [*conv_bn(in_channels, 32), *conv_bn(32, 64), nn.MaxPool2d(2), *conv_bn(64, 128)]
    if image_size >= 16:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return _init(nn.Sequential(*layers)), 128


@MODELS.register("mlp", summary="two-hidden-layer MLP (256 units) for small images", task="classification")
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


@MODELS.register("resnet18", summary="ResNet-18, CIFAR variant (3x3 stride-1 conv1, no max-pool)", task="classification")
def _resnet18(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return _resnet(BasicBlock, in_channels, preact=False)


@MODELS.register("preact_resnet18", summary="Pre-activation ResNet-18 (the adversarial-training standard)", task="classification")
def _preact_resnet18(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return _resnet(PreActBlock, in_channels, preact=True)


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@MODELS.register("vgg16_bn", summary="VGG-16 with batch norm (max-pools skipped once the map is 1x1)", task="classification")
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


@MODELS.register("wrn28_10", summary="Wide-ResNet-28-10 (36M params)", task="classification")
def _wrn28_10(in_channels: int, image_size: int) -> tuple[nn.Module, int]:
    return wide_resnet(in_channels, 28, 10)


# ----------------------------------------------------------------------------- foreign models


def check_model_spec(spec: str) -> None:
    """Fail before any work on an unknown model name or a malformed foreign spec (nothing is built)."""
    if is_foreign(spec):
        check_foreign_spec(spec)
    else:
        MODELS.get(spec)


# ----------------------------------------------------------------------------- penultimate features


def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's penultimate features for images ``x`` (differentiable), as ``(N, D)``.

    A ``features`` *method* is used as is (registered models have one). Otherwise forward hooks
    on the ``nn.Linear`` layers capture their inputs during one normal forward pass, and the input
    of the layer whose output *is* the model's output (the classifier head, usually the last
    ``nn.Linear``) is returned. A
    ``features`` *submodule* (torchvision VGG, DenseNet, MobileNet: the convolutional trunk,
    before pooling) is not penultimate and is ignored.
    """
    if isinstance(model, Normalized):
        return penultimate_features(model.model, model.normalize(x))
    if callable(getattr(type(model), "features", None)):
        return model.features(x)
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(
            f"{type(model).__name__} has no features(x) method and no nn.Linear layer, so its penultimate "
            "features cannot be found; add a features(x) method returning them."
        )
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda _m, inp, out: calls.append((inp[0], out))) for _, m in linears]
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    # The head is the nn.Linear whose output *is* the model's output (the last such call).
    for feats, out in reversed(calls):
        if out is logits or (isinstance(logits, torch.Tensor) and out.shape == logits.shape and torch.equal(out, logits)):
            return feats.flatten(1)
    raise ModelError(
        f"No nn.Linear of {type(model).__name__} produces the model's output (is a softmax or another layer "
        "after it?), so its penultimate features cannot be found; add a features(x) method to the model."
    )


# ----------------------------------------------------------------------------- generation models


def _register_generator(name: str, summary: str) -> None:
    """A class-conditional DDPM (``core.diffusion``) in MODELS with task "generation": ``create``
    builds it (``create_model`` calls it instead of wrapping a classifier body)."""

    def create(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        from unlearnbench.core.diffusion import ARCHS, ConditionalDDPM  # diffusers loads only when used

        return ConditionalDDPM(ARCHS[name], num_classes, in_channels, image_size)

    def builder(in_channels: int, image_size: int):  # the classifier-builder signature: never a classifier
        raise ModelError(f"{name} is a generation model (a conditional DDPM), not a classifier.")

    MODELS.add(name, builder, summary=summary, task="generation", create=create)


_register_generator("ddpm_tiny", "class-conditional DDPM, diffusers UNet2DModel 32-64 channels (~0.65M params), CFG null class")
_register_generator("ddpm_cifar10",
                    "class-conditional DDPM as the SalUn/SA reference for CIFAR-10 (ch 128, mult 1-2-2-2, attn 16)")


def model_task(name: str) -> str:
    """The task a registered (or foreign) model serves: classification unless it declares another."""
    if is_foreign(name):
        return "classification"
    return str(MODELS.info(name).get("task", "classification"))
