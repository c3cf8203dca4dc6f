"""ℓ1-sparse — sparsity-aware unlearning: fine-tune on the retain set with a decaying ℓ1 penalty.

Paper: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023,
https://arxiv.org/abs/2304.04934 (code: OPTML-Group/Unlearn-Sparse, ``FT_l1``).
Loss per step: CE on the retain set + α_e·‖θ‖₁, where ‖θ‖₁ is the unnormalised sum of |w| over
*all* parameters (as in the reference) and α_e follows :func:`l1_coefficient`.

``alpha_schedule``:

* ``linear`` (default; Unlearn-Sparse since ``6c1ba03``, May 2023): α·(1 − e/(E − no_l1_epochs)),
  constant within an epoch, starting at α and never reaching 0 (with ``no_l1_epochs`` = 0, epoch
  10 of 10 uses 0.1α); the last ``no_l1_epochs`` epochs use no penalty, so ``no_l1_epochs ==
  epochs`` means no penalty at all (α = 0 throughout, as ``6c1ba03`` in both code paths and the
  ImageNet path today; the CIFAR path since ``76a4299`` keeps α constant in that case instead —
  a special case we do not copy: "no ℓ1 epochs = all epochs" cannot mean "ℓ1 in every epoch");
* ``constant``: α in every epoch — the January 2023 release (``FT_l1``: ``loss += args.alpha *
  l1_regularization(model)``, ``a5dd98c``), whose ``run.py`` is the only first-party source of a
  CIFAR-10 α: ``FT_prune: --alpha 0.0001 --unlearn_epochs 10 --unlearn_lr 0.01``
  (``l1sparse-cifar10-class-2023-01`` preset). ``no_l1_epochs`` still ends the penalty early.

Weight decay stays on, as in the reference. Scale α with the model: the penalty's gradient is
α·sign(θ) per weight (‖θ‖₁ ≈ 1e5 for ResNet-18). Defaults (lr 0.05, α 1e-3) forget a digits class
with the small cnn; the CIFAR-10 recipes are the ``l1sparse-cifar10-*`` presets.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.unlearn.base import ConfigType, check, check_training, hooks, register_method
from unlearnbench.unlearn.loops import Phase, ce_loss, make_optimizer, run_epochs


def l1_coefficient(alpha: float, epoch: int, epochs: int, no_l1_epochs: int = 0,
                   schedule: Literal["linear", "constant"] = "linear") -> float:
    """α for 0-based ``epoch``; 0 in the last ``no_l1_epochs`` epochs (all of them when
    ``no_l1_epochs == epochs``). Before that: α·(1 − epoch/(epochs − no_l1_epochs)) (``linear``,
    Unlearn-Sparse ``FT_iter``'s ``current_alpha``) or α (``constant``, the January 2023 ``FT_l1``).
    """
    active = epochs - no_l1_epochs
    if epoch >= active:
        return 0.0
    return alpha if schedule == "constant" else alpha * (1 - epoch / active)


def l1_norm(model: nn.Module) -> torch.Tensor:
    """‖θ‖₁ over every trainable parameter (conv, BN, biases, head)."""
    return torch.stack([p.abs().sum() for p in model.parameters() if p.requires_grad]).sum()


@configclass
class L1SparseConfig(metaclass=ConfigType):
    epochs: int = 10
    lr: float = 0.05
    alpha: float = 1e-3
    no_l1_epochs: int = 0
    alpha_schedule: Literal["linear", "constant"] = "linear"  # constant: the January 2023 release
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    amp: bool = True
    adv_eps: float | None = None
    adv_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)
        check(self.alpha >= 0, "alpha must be non-negative.")
        check(0 <= self.no_l1_epochs <= self.epochs, "no_l1_epochs must be between 0 and epochs.")


@register_method(
    "l1_sparse", config=L1SparseConfig, reads=("retain",), paper="https://arxiv.org/abs/2304.04934",
    summary="ℓ1-sparse: fine-tune on retain + α‖θ‖₁ with α decaying linearly per epoch",
)
def l1_sparse(model: nn.Module, data: UnlearnData, config: L1SparseConfig) -> nn.Module:
    h = hooks(data)
    gen = torch.Generator().manual_seed(config.seed)

    def penalty(m: nn.Module, epoch: int) -> torch.Tensor:
        return l1_coefficient(config.alpha, epoch, config.epochs, config.no_l1_epochs, config.alpha_schedule) * l1_norm(m)

    retain = Phase(data.retain, ce_loss(), config.batch_size, name="retain",
                   augment=data.info if config.augment else None, transform=h.retain_transform)
    opt = make_optimizer(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    run_epochs(model, [retain], epochs=config.epochs, optimizer=opt, generator=gen, mask=h.mask,
               extra_terms=[penalty], amp=config.amp, description="l1_sparse")
    return model
