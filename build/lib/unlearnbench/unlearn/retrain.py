"""Retrain — train from scratch on the retain set: the gold-standard reference ("exact" unlearning).

Used as the reference in every unlearning paper (e.g. https://arxiv.org/abs/2310.12508,
https://arxiv.org/abs/2304.04934). The architecture is kept and every weight re-initialised
(seeded), then trained on the retain set with the original's recipe: the same schedule, warm-up,
label smoothing, augmentation and best-validation selection as ``unlearnbench train``
(``jobs.unlearn_checkpoint`` fills the config from the checkpoint's ``train_config``; the
defaults here are the digits recipe). With ``--prune`` the pruning mask is applied to the fresh
initialisation and kept, as Unlearn-Sparse retrains a sparse model.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.train import TrainConfig, improves, lr_lambda, val_metrics
from unlearnbench.unlearn.base import ConfigType, check, check_training, hooks, register_method, reinitialize
from unlearnbench.unlearn.loops import Phase, ce_loss, make_optimizer, run_epochs
from unlearnbench.unlearn.prune import apply_masks


@configclass
class RetrainConfig(metaclass=ConfigType):
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = True
    amp: bool = True
    keep_best: bool = True  # pick the best epoch on the validation set (needs val)
    adv_eps: float | None = None
    adv_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)
        check(0 <= self.warmup < 1, "warmup is a fraction of training in [0, 1).")
        check(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1).")
        check(all(0 < m < 1 for m in self.milestones), "milestones are fractions of training in (0, 1).")

    def reads(self) -> tuple[str, ...]:
        return ("retain", "val") if self.keep_best else ("retain",)

    def schedule_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, schedule=self.schedule,
                           milestones=self.milestones, gamma=self.gamma, warmup=self.warmup, seed=self.seed)


@register_method(
    "retrain", config=RetrainConfig, reads=("retain", "val"), paper="https://arxiv.org/abs/2310.12508",
    summary="Retrain from scratch on the retain set with the original's recipe (the gold reference)",
)
def retrain(model: nn.Module, data: UnlearnData, config: RetrainConfig) -> nn.Module:
    h = hooks(data)
    fresh = reinitialize(model, config.seed)
    if h.mask:
        apply_masks(fresh, h.mask)
    gen = torch.Generator().manual_seed(config.seed)
    phase = Phase(data.retain, ce_loss(config.label_smoothing), config.batch_size, name="retain",
                  augment=data.info if config.augment else None, transform=h.retain_transform)
    steps_per_epoch = -(-len(data.retain) // config.batch_size)
    schedule = lr_lambda(config.schedule_config(), config.epochs * steps_per_epoch)
    opt = make_optimizer(fresh, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                         nesterov=config.nesterov)
    best = {"acc": float("nan"), "loss": float("nan"), "state": None}

    def keep_best(epoch: int, m: nn.Module) -> None:
        # The same rule as ``core.train.fit`` (ties on accuracy go to the lower loss, then the later epoch).
        if config.keep_best:
            acc, loss = val_metrics(m, data.val)
            if improves(acc, loss, best["acc"], best["loss"]):
                best.update(acc=acc, loss=loss, state={k: v.detach().clone() for k, v in m.state_dict().items()})

    run_epochs(fresh, [phase], epochs=config.epochs, optimizer=opt, generator=gen, mask=h.mask,
               schedule=schedule, epoch_end=keep_best, amp=config.amp, description="retrain")
    if best["state"] is not None:
        fresh.load_state_dict(best["state"])
    return fresh
