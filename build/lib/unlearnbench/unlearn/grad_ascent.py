"""GA — gradient ascent on the forget set (Thudi et al.; the SalUn/Sparse "GA" baseline).

Paper: https://arxiv.org/abs/2108.11577 (as a baseline in https://arxiv.org/abs/2310.12508).
Minimises −CE on the forget set only (SGD, momentum 0.9, wd 5e-4). The reference default lr
1e-4 for 5 epochs is for class-wise CIFAR-10 only; maintainers grid-search lr in [1e-5, 0.1]
and suggest 5e-4..1e-3 when the forget accuracy does not drop (Unlearn-Saliency #8). GA never
sees the retain set, so it easily overshoots and damages the retained classes; ``stop_forget_acc``
optionally stops as soon as the forget accuracy falls below a threshold (checked per epoch on
the forget set, which GA reads anyway). Defaults (lr 1e-3, at most 20 epochs, stop at 15 %)
suit the digits cnn: there GA costs 5-7 points of retain accuracy by the time class 3 is gone.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.train import accuracy
from unlearnbench.unlearn.base import ConfigType, check, check_training, hooks, register_method
from unlearnbench.unlearn.loops import Phase, make_optimizer, run_epochs


@configclass
class GradAscentConfig(metaclass=ConfigType):
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    amp: bool = True
    stop_forget_acc: float | None = 15.0  # percent; None runs all epochs
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)
        check(self.stop_forget_acc is None or 0 <= self.stop_forget_acc <= 100,
              "stop_forget_acc is a percentage in [0, 100] (or none).")


@register_method(
    "grad_ascent", config=GradAscentConfig, reads=("forget",), paper="https://arxiv.org/abs/2108.11577",
    summary="GA: gradient ascent on the forget set (retain-free)",
)
def grad_ascent(model: nn.Module, data: UnlearnData, config: GradAscentConfig) -> nn.Module:
    h = hooks(data)
    gen = torch.Generator().manual_seed(config.seed)

    def ascent(m: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        return -F.cross_entropy(m(x), y)

    def stop(epoch: int, m: nn.Module) -> bool:
        return config.stop_forget_acc is not None and accuracy(m, data.forget) <= config.stop_forget_acc

    forget = Phase(data.forget, ascent, config.batch_size, name="forget",
                   augment=data.info if config.augment else None)
    opt = make_optimizer(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    run_epochs(model, [forget], epochs=config.epochs, optimizer=opt, generator=gen, mask=h.mask,
               epoch_end=stop, amp=config.amp, description="grad_ascent")
    return model
