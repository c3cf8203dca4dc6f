"""Boundary Shrink — relabel each forget sample with the class its FGSM neighbour falls into.

Paper: Chen et al., "Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the
Decision Space", CVPR 2023, https://arxiv.org/abs/2302.10843 (as coded in
OPTML-Group/Unlearn-Saliency ``unlearn/boundary_sh.py``). For each forget batch, FGSM on a
frozen copy of the original (eval mode) with CE on the true label and a fixed step ``bound``
(0.1 in [0,1] pixel space, rounded to the 1/255 grid): x_adv = clip(x + bound·sign ∇ₓ), and the
nearest "wrong" label y_adv = argmax original(x_adv) (not forced to differ from y, as in the
reference); then one SGD step on CE(model(x), y_adv). Forget set only. The reference lr is tiny
(1e-6..5e-6 with 10 epochs on CIFAR-10, third-party scripts; the maintainers search from 1e-8):
the ``boundary-shrink-cifar10-random10`` preset (bound 0.1, lr 1e-6). Defaults (bound 0.15,
lr 2e-3, 10 epochs of batch 64, SGD momentum 0.9, wd 5e-4) suit 8×8 digits, where 0.1 rarely
crosses a boundary.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.unlearn.base import ConfigType, check, check_training, hooks, register_method
from unlearnbench.unlearn.loops import Phase, make_optimizer, run_epochs


@configclass
class BoundaryShrinkConfig(metaclass=ConfigType):
    epochs: int = 10
    lr: float = 0.002
    batch_size: int = 64
    bound: float = 0.15
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    amp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)
        check(0 < self.bound <= 1, "bound is the FGSM step in [0, 1] pixel units, in (0, 1].")


def fgsm_neighbour_labels(frozen: nn.Module, x: torch.Tensor, y: torch.Tensor, bound: float) -> torch.Tensor:
    """argmax of ``frozen`` on the FGSM point x + bound·sign ∇ₓ CE, rounded to the 8-bit grid."""
    with torch.enable_grad():
        xr = x.detach().float().requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(frozen(xr), y), xr)
    x_adv = (x + bound * grad.sign()).clamp(0, 1).mul(255).round().div(255)
    with torch.no_grad():
        return frozen(x_adv).argmax(1)


@register_method(
    "boundary_shrink", config=BoundaryShrinkConfig, reads=("forget",), paper="https://arxiv.org/abs/2302.10843",
    summary="Boundary Shrink: train forget samples towards their FGSM-neighbour class (retain-free)",
    weak="FGSM-neighbour labels are unreliable: forgetting varies widely across models",
)
def boundary_shrink(model: nn.Module, data: UnlearnData, config: BoundaryShrinkConfig) -> nn.Module:
    h = hooks(data)
    gen = torch.Generator().manual_seed(config.seed)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)

    def loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        y_adv = fgsm_neighbour_labels(frozen, x, y, config.bound)
        return F.cross_entropy(m(x), y_adv)

    phase = Phase(data.forget, loss, config.batch_size, name="forget", augment=data.info if config.augment else None)
    opt = make_optimizer(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    run_epochs(model, [phase], epochs=config.epochs, optimizer=opt, generator=gen, mask=h.mask,
               amp=config.amp, description="boundary_shrink")
    return model
