"""SCAR self-forget — class removal with no access to the forget set at all.

Paper: Bonato et al., https://arxiv.org/abs/2404.12922, "SCAR self-forget" (code:
jbonato1/SCAR, ``SCAR_self``). OOD images that the original model assigns to the forgotten
class act as proxy forget samples (pulled towards their nearest wrong class Gaussian, recomputed
each batch with the current model); the other OOD images are distilled from the selectively
masked original, as in ``scar`` (no temperature, as released). Class-wise specs only.

Differences from the release: it monitors the real forget set to stop; here the forget set is
off limits, so training stops once fewer than ``stop_proxy_acc`` % of the proxy images are still
predicted as a forgotten class (after ``min_epochs`` passes over the OOD set), or after
``epochs`` passes. A batch without proxy images still takes the distillation step (the release
skips it). Class statistics come from ``stats_source`` as in ``scar`` (``retain`` as released,
single shrinkage as in its self-forget branch is not replicated: the same double shrinkage is used).

``freeze_bn`` (default on) keeps BatchNorm running statistics fixed: with no real image in any
batch they would otherwise drift to the OOD statistics (on digits that alone costs ~6 points of
retain accuracy). Defaults suit the digits cnn (lr 1.5e-3, λ₁ 5, λ₂ 15, two passes over 4,096
synthetic images in batches of 128); there only ~0.5 % of the synthetic images are proxies of a
class, so the forget pull is made stronger than the released λ₁ 1.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import Loader, UnlearnData
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.models import penultimate_features
from unlearnbench.core.train import autocast
from unlearnbench.unlearn.base import OOD_KEY, ConfigType, check, hooks, register_method
from unlearnbench.unlearn.classstats import mahalanobis, nearest_wrong_class, tukey
from unlearnbench.unlearn.loops import Stepper, UnlearningDiverged, make_optimizer
from unlearnbench.unlearn.losses import kl_from_logits
from unlearnbench.unlearn.scar import (
    class_statistics,
    freeze_batchnorm,
    kept_classes,
    predictions,
    selective_teacher,
    validate_scar,
)


@configclass
class ScarSelfConfig(metaclass=ConfigType):
    epochs: int = 2  # passes over the OOD set, at most
    lr: float = 1.5e-3
    weight_decay: float = 0.0
    batch_size: int = 128  # OOD batch
    lambda_1: float = 5.0
    lambda_2: float = 15.0
    temperature: float = 1.0
    delta: float = 0.5
    gamma1: float = 3.0
    gamma2: float = 3.0
    stats_source: Literal["retain", "val", "ood"] = "retain"
    ood: str = "synthetic"
    ood_size: int = 4096
    stop_proxy_acc: float | None = None  # percent of proxy images still predicted as forgotten; None: no stop
    min_epochs: int = 1
    augment: bool = True
    freeze_bn: bool = True
    amp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        validate_scar(self)
        check(self.stop_proxy_acc is None or 0 <= self.stop_proxy_acc <= 100, "stop_proxy_acc is a percentage.")

    def reads(self) -> tuple[str, ...]:
        return ("ood",) + (() if self.stats_source == "ood" else (self.stats_source,))


@register_method(
    "scar_self", config=ScarSelfConfig, reads=("retain", "ood"), paper="https://arxiv.org/abs/2404.12922",
    summary="SCAR self-forget: class removal from OOD proxies alone, never reading the forget set",
)
def scar_self(model: nn.Module, data: UnlearnData, config: ScarSelfConfig) -> nn.Module:
    if not data.spec.classwise or not data.forget_classes:
        raise ConfigError("scar_self forgets whole classes; use a class-wise forget spec such as class:3.")
    h = hooks(data)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(config.seed)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    gauss = class_statistics(config, data, teacher, kept_classes(data))
    forgotten = torch.tensor(data.forget_classes, device=device)
    ood_set = data.extras[OOD_KEY]
    proxies = ood_set.select(torch.isin(predictions(teacher, ood_set), forgotten))
    loader = Loader(ood_set, config.batch_size, shuffle=True, augment=data.info if config.augment else None,
                    generator=gen)
    stepper = Stepper(model, make_optimizer(model, "adam", lr=config.lr, weight_decay=config.weight_decay),
                      mask=h.mask)
    for epoch in range(config.epochs):
        for xs, _ in loader:
            model.train()
            if config.freeze_bn:
                freeze_batchnorm(model)
            with torch.no_grad():
                t_all = teacher(xs).float()
            is_proxy = torch.isin(t_all.argmax(1), forgotten)
            with autocast(device, config.amp):
                loss = torch.zeros((), device=device)
                if bool(is_proxy.any()):
                    z = tukey(penultimate_features(model, xs[is_proxy]), config.delta)
                    d = mahalanobis(z, gauss)
                    q = nearest_wrong_class(d.detach(), gauss, t_all[is_proxy].argmax(1))
                    loss = loss + config.lambda_1 * d.gather(1, q[:, None]).mean()
                keep, t = selective_teacher(t_all, tuple(data.forget_classes))
                if len(t):
                    loss = loss + config.lambda_2 * kl_from_logits(model(xs[keep]), t)
            if not torch.isfinite(loss):
                raise UnlearningDiverged("SCAR's loss became non-finite; lower lr or use delta=1.")
            if loss.requires_grad:
                stepper.step(loss)
        if config.stop_proxy_acc is not None and len(proxies) and epoch + 1 >= config.min_epochs:
            still = torch.isin(predictions(model, proxies), forgotten).float().mean().item() * 100
            if still < config.stop_proxy_acc:
                break
    model.eval()
    return model
