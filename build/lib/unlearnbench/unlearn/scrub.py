"""SCRUB — max-steps away from the teacher on the forget set, min-steps towards it on retain.

Paper: Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023,
https://arxiv.org/abs/2302.09880 (code: meghdadk/SCRUB, ``train_distill``). The teacher is the
frozen original, the student starts as a copy. Epoch e = 1..E: lr = lr₀·rate^#{m ∈ decay epochs:
e > m}; while e ≤ ``msteps`` a *max-step* pass over the forget set minimises −DistillKL(s, t);
then a *min-step* pass over the retain set minimises γ·CE(s, y) + α·DistillKL(s, t), with
DistillKL = T²·KL(softmax(t/T) ‖ softmax(s/T)). The reference "large-scale" (CIFAR-10) setting:
SGD momentum 0.9, lr 5e-4, wd 5e-4, γ 0.99, α 0.001, T 4, msteps 2, 3 epochs, decay at
(3, 5, 9), forget batch 512, retain batch 256 (see the ``scrub-cifar10-class`` preset). The
defaults (lr 0.01, 5 epochs with 3 max-steps, batches of 64) suit small data such as digits.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.unlearn.base import ConfigType, check, check_training, hooks, register_method
from unlearnbench.unlearn.loops import Phase, make_optimizer, run_epochs
from unlearnbench.unlearn.losses import distill_kl


@configclass
class ScrubConfig(metaclass=ConfigType):
    epochs: int = 5
    msteps: int = 3
    lr: float = 0.01
    lr_decay_epochs: tuple[int, ...] = (3, 5, 9)
    lr_decay_rate: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.99  # weight of CE on retain
    alpha: float = 0.001  # weight of the KL on retain
    temperature: float = 4.0
    forget_batch_size: int = 64
    batch_size: int = 64  # retain batches
    augment: bool = True
    amp: bool = True
    adv_eps: float | None = None
    adv_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)
        check(0 <= self.msteps <= self.epochs, "msteps (epochs with a max-step) must be between 0 and epochs.")
        check(self.forget_batch_size >= 1, "forget_batch_size must be at least 1.")
        check(self.temperature > 0, "temperature must be positive.")
        check(0 < self.lr_decay_rate <= 1, "lr_decay_rate must be in (0, 1].")


def max_step_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The max-step loss on forget rows: −DistillKL(s, t), so descending it moves *away* from the teacher."""
    return -distill_kl(student_logits, teacher_logits, temperature)


def min_step_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *,
                  gamma: float, alpha: float, temperature: float) -> torch.Tensor:
    """The min-step loss on retain rows: γ·CE(s, y) + α·DistillKL(s, t) (towards the teacher)."""
    return gamma * F.cross_entropy(student_logits, y) + alpha * distill_kl(student_logits, teacher_logits, temperature)


def lr_factor(epoch: int, decay_epochs: tuple[int, ...], rate: float) -> float:
    """The reference ``adjust_learning_rate``: rate^#{m ∈ decay_epochs : epoch > m} for 1-based ``epoch``."""
    return rate ** sum(epoch > m for m in decay_epochs)


@register_method(
    "scrub", config=ScrubConfig, reads=("forget", "retain"), paper="https://arxiv.org/abs/2302.09880",
    summary="SCRUB: alternate max-steps (forget) and min-steps (retain) against the original as teacher",
)
def scrub(model: nn.Module, data: UnlearnData, config: ScrubConfig) -> nn.Module:
    h = hooks(data)
    gen = torch.Generator().manual_seed(config.seed)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    augment = data.info if config.augment else None
    T = config.temperature

    def max_step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(x)
        return max_step_loss(m(x), t, T)

    def min_step(m: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        with torch.no_grad():
            t = teacher(x)
        return min_step_loss(m(x), t, y, gamma=config.gamma, alpha=config.alpha, temperature=T)

    forget = Phase(data.forget, max_step, config.forget_batch_size, name="max", augment=augment)
    retain = Phase(data.retain, min_step, config.batch_size, name="min", augment=augment,
                   transform=h.retain_transform)
    opt = make_optimizer(model, config.optimizer, lr=config.lr, momentum=config.momentum,
                         weight_decay=config.weight_decay)
    base_lr = config.lr

    def decay(epoch_done: int, m: nn.Module) -> None:
        factor = lr_factor(epoch_done + 1, config.lr_decay_epochs, config.lr_decay_rate)  # the epoch about to start
        for g in opt.param_groups:
            g["lr"] = base_lr * factor

    run_epochs(model, [forget, retain], epochs=config.epochs, optimizer=opt, generator=gen, mask=h.mask,
               phase_epochs=lambda ph, epoch: ph is not forget or epoch < config.msteps,
               epoch_end=decay, amp=config.amp, description="scrub")
    return model
