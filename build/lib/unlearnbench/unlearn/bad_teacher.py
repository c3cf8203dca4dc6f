"""Bad Teacher — distil a competent and an incompetent teacher into the student.

Paper: Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks using
an Incompetent Teacher", AAAI 2023, https://arxiv.org/abs/2205.08096 (code:
vikram2000b/bad-teaching-unlearning, ``UnlearnerLoss``). The student (a copy of the original)
sees one shuffled set: every forget sample (flag 1) and a random ``retain_fraction`` (30 %) of the
retain set (flag 0). Its target is the incompetent teacher's softmax (a freshly initialised
network of the same architecture) on flagged rows and the competent teacher's (the original)
elsewhere, both at temperature T; the loss is KL(target ‖ student). The reference reduces with
``mean`` over batch×classes; this uses ``batchmean`` (the textbook KL), which only rescales the
gradient — irrelevant for Adam, the reference optimizer (lr 1e-4, 1 epoch, batch 256 there:
the ``bad-teacher-cifar10-class`` preset). Defaults (Adam 1e-3, 5 epochs, batch 64) suit small
data such as digits.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import TensorSet, UnlearnData
from unlearnbench.unlearn.base import ConfigType, check, check_training, hooks, register_method, reinitialize
from unlearnbench.unlearn.loops import Phase, make_optimizer, run_epochs
from unlearnbench.unlearn.losses import kl_from_probs


@configclass
class BadTeacherConfig(metaclass=ConfigType):
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    retain_fraction: float = 0.3
    temperature: float = 1.0
    augment: bool = True
    amp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)
        check(0 <= self.retain_fraction <= 1, "retain_fraction must be in [0, 1].")
        check(self.temperature > 0, "temperature must be positive.")


def teacher_target(good_logits: torch.Tensor, bad_logits: torch.Tensor, flag: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    """Per row: softmax(bad/T) where ``flag`` is 1 (forget rows), softmax(good/T) where it is 0."""
    p_good = torch.softmax(good_logits.float() / temperature, 1)
    p_bad = torch.softmax(bad_logits.float() / temperature, 1)
    f = flag.float()[:, None]
    return f * p_bad + (1 - f) * p_good


@register_method(
    "bad_teacher", config=BadTeacherConfig, reads=("forget", "retain"), paper="https://arxiv.org/abs/2205.08096",
    summary="Bad Teacher: distil a random teacher on forget rows, the original on retain rows",
)
def bad_teacher(model: nn.Module, data: UnlearnData, config: BadTeacherConfig) -> nn.Module:
    h = hooks(data)
    gen = torch.Generator().manual_seed(config.seed)
    good = copy.deepcopy(model).eval().requires_grad_(False)
    bad = reinitialize(model, config.seed + 1).eval().requires_grad_(False)
    n_keep = int(config.retain_fraction * len(data.retain))
    pick = torch.randperm(len(data.retain), generator=gen)[:n_keep].to(data.retain.y.device)
    retain_part = data.retain.select(pick)
    flags = torch.cat([torch.ones_like(data.forget.y), torch.zeros_like(retain_part.y)])
    mixed = TensorSet(torch.cat([data.forget.x, retain_part.x]), flags,
                      torch.cat([data.forget.idx, retain_part.idx]), None, "forget+retain")
    t = config.temperature

    def loss(m: nn.Module, x: torch.Tensor, flag: torch.Tensor, epoch: int) -> torch.Tensor:
        with torch.no_grad():
            target = teacher_target(good(x), bad(x), flag, t)
        return kl_from_probs(m(x) / t, target)

    phase = Phase(mixed, loss, config.batch_size, name="mixed", augment=data.info if config.augment else None)
    opt = make_optimizer(model, config.optimizer, lr=config.lr, weight_decay=config.weight_decay)
    run_epochs(model, [phase], epochs=config.epochs, optimizer=opt, generator=gen, mask=h.mask,
               amp=config.amp, description="bad_teacher")
    return model
