"""FT — fine-tune on the retain set only (Warnecke et al.; the SalUn/Sparse "FT" baseline).

Paper: https://arxiv.org/abs/2108.11577 (as a baseline in https://arxiv.org/abs/2304.04934).
Cross-entropy on the retain set with SGD (momentum 0.9, weight decay 5e-4, constant lr), relying
on catastrophic forgetting. The reference uses lr 0.01 for 10 epochs (README), with the lr
searched in [1e-4, 1e-1]; those are the defaults, with batches of 64. Known to be weak for class-wise forgetting: the Sparse paper reports a
forget accuracy of 77 % after FT on CIFAR-10 (dense ResNet-18).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.unlearn.base import ConfigType, check_training, hooks, register_method
from unlearnbench.unlearn.loops import Phase, ce_loss, make_optimizer, run_epochs


@configclass
class FinetuneConfig(metaclass=ConfigType):
    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True  # the reference keeps the training augmentation on the retain set
    amp: bool = True  # bf16 autocast on CUDA only
    adv_eps: float | None = None  # --adv-retain budget (None: 8/255 for RGB, 0.1 for grey)
    adv_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)


@register_method(
    "finetune", config=FinetuneConfig, reads=("retain",), paper="https://arxiv.org/abs/2108.11577",
    summary="FT: fine-tune on the retain set (catastrophic forgetting)",
    weak="class-wise: the forgotten class often survives fine-tuning",
)
def finetune(model: nn.Module, data: UnlearnData, config: FinetuneConfig) -> nn.Module:
    h = hooks(data)
    gen = torch.Generator().manual_seed(config.seed)
    retain = Phase(data.retain, ce_loss(), config.batch_size, name="retain",
                   augment=data.info if config.augment else None, transform=h.retain_transform)
    opt = make_optimizer(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    run_epochs(model, [retain], epochs=config.epochs, optimizer=opt, generator=gen, mask=h.mask,
               amp=config.amp, description="finetune")
    return model
