"""RL — random labelling: a forget pass with random labels, then a retain pass, every epoch.

Paper: Golatkar et al. / Hayase et al. as used in SalUn, https://arxiv.org/abs/2310.12508
(code: OPTML-Group/Unlearn-Saliency ``unlearn/RL.py``). Current reference code for CIFAR-10 and
SVHN is *sequential* within each epoch: one pass over the forget set, each batch with fresh
labels drawn uniformly over all classes (they may equal the true label), then one full pass
over the retain set with the true labels, both with CE and the same SGD optimizer (momentum 0.9,
wd 5e-4, constant lr). The maintainers confirm the order and that the retain pass is needed
(issues #14, #21). The 2023 release mixed both sets in one loader; ``mixed: true`` selects that
(one label per forget sample drawn before each epoch, forget and retain rows shuffled together).
``labels``: ``uniform`` (the reference: any of the C classes, so ≈ 1/C of the forget rows keep
their true label) or ``wrong`` (uniform over the C − 1 other classes, never the true one — the
"random incorrect labels" of Amnesiac unlearning, Graves et al., AAAI 2021). Defaults (lr 0.05, batch 64) suit small data such as digits; the README's CIFAR-10 recipe
(lr 0.013, batch 256, 10 epochs) is in the ``salun-cifar10-*`` presets.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import TensorSet, UnlearnData
from unlearnbench.unlearn.base import ConfigType, Mask, check_training, combine_masks, hooks, register_method
from unlearnbench.unlearn.loops import Phase, ce_loss, draw_random_labels, make_optimizer, random_labels, run_epochs


@configclass
class RandomLabelConfig(metaclass=ConfigType):
    epochs: int = 10
    lr: float = 0.05
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    mixed: bool = False  # True: the 2023 release's single shuffled loader of relabelled forget + retain
    labels: Literal["uniform", "wrong"] = "uniform"  # wrong: never the true label
    augment: bool = True
    amp: bool = True
    adv_eps: float | None = None
    adv_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)


def relabel_and_train(model: nn.Module, data: UnlearnData, config, mask: Mask | None, description: str) -> nn.Module:
    """The RL loop shared with SalUn (which adds a saliency mask).

    ``config.mask_mode`` (SalUn only) decides how ``mask`` is enforced: ``exact`` freezes the
    masked-out weights bit-identically, ``gradient`` only zeroes their gradients (paper-era code).
    The pruning mask of ``--prune`` is always exact.
    """
    h = hooks(data)
    gen = torch.Generator().manual_seed(config.seed)
    augment = data.info if config.augment else None
    opt = make_optimizer(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if getattr(config, "mask_mode", "exact") == "gradient":
        exact, grad_only = h.mask, mask
    else:
        exact, grad_only = combine_masks(h.mask, mask), None
    exclude_true = getattr(config, "labels", "uniform") == "wrong"
    if config.mixed:
        return _mixed(model, data, config, exact, grad_only, exclude_true, gen, opt, description)
    forget = Phase(data.forget, ce_loss(), config.batch_size, name="forget", augment=augment,
                   relabel=random_labels(data.num_classes, exclude_true))
    retain = Phase(data.retain, ce_loss(), config.batch_size, name="retain", augment=augment,
                   transform=h.retain_transform)
    run_epochs(model, [forget, retain], epochs=config.epochs, optimizer=opt, generator=gen, mask=exact,
               grad_mask=grad_only, amp=config.amp, description=description)
    return model


def _mixed(model, data, config, mask, grad_mask, exclude_true, gen, opt, description) -> nn.Module:
    # One label per forget sample per epoch, drawn before the epoch, as in the 2023 release.
    # The retain transform needs to know which rows are retain rows, so it is not offered here.
    if hooks(data).retain_transform is not None:
        from unlearnbench.core.errors import ConfigError

        raise ConfigError("--adv-retain does not combine with mixed: true; use the sequential loop.")
    for epoch in range(config.epochs):
        labels = draw_random_labels(data.forget.y, data.num_classes, gen, exclude_true)
        both = TensorSet(
            torch.cat([data.forget.x, data.retain.x]), torch.cat([labels, data.retain.y]),
            torch.cat([data.forget.idx, data.retain.idx]), None, "forget+retain",
        )
        phase = Phase(both, ce_loss(), config.batch_size, name="mixed",
                      augment=data.info if config.augment else None)
        run_epochs(model, [phase], epochs=1, optimizer=opt, generator=gen, mask=mask, grad_mask=grad_mask,
                   amp=config.amp,
                   description=f"{description} {epoch + 1}/{config.epochs}")
    return model


@register_method(
    "random_label", config=RandomLabelConfig, reads=("forget", "retain"), paper="https://arxiv.org/abs/2310.12508",
    summary="RL: forget pass with random labels, then a retain pass, per epoch",
)
def random_label(model: nn.Module, data: UnlearnData, config: RandomLabelConfig) -> nn.Module:
    return relabel_and_train(model, data, config, None, "random_label")

