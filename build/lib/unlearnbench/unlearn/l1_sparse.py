"""ℓ1-sparse — sparsity-aware unlearning: fine-tune on the retain set with a decaying ℓ1 penalty.

Paper: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023,
https://arxiv.org/abs/2304.04934 (code: OPTML-Group/Unlearn-Sparse, ``FT_l1``).
Loss per step: CE on the retain set + α_e·‖θ‖₁, where ‖θ‖₁ is the unnormalised sum of |w| over
*all* parameters (as in the reference) and α_e follows :func:`l1_coefficient`, a linear decay per
epoch α·(1 − e/(E − no_l1_epochs)) that is constant within an epoch, starts at α and never
reaches 0 (with ``no_l1_epochs`` = 0, epoch 10 of 10 uses 0.1α); the last ``no_l1_epochs``
epochs use no penalty. Weight decay stays on, as in the reference. The paper's CIFAR-10 α was
not found (paper text, the Unlearn-Sparse README — whose ``--alpha 0.2`` is the argparse
default shared with FF/IU — its notes and issues); third-party scripts use 1e-4 on CIFAR-10
(‖θ‖₁ ≈ 1e5 for ResNet-18), the presets' value; sweep {1e-5, 3e-5, 1e-4, 3e-4, 1e-3} for a
paper comparison. Scale α with the model: the penalty's gradient is α·sign(θ) per weight. Defaults (lr 0.05, α 1e-3) forget a
digits class with the small cnn; the README's CIFAR-10 recipe is the ``l1sparse-cifar10-*`` presets.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.unlearn.base import ConfigType, check, check_training, hooks, register_method
from unlearnbench.unlearn.loops import Phase, ce_loss, make_optimizer, run_epochs


def l1_coefficient(alpha: float, epoch: int, epochs: int, no_l1_epochs: int = 0) -> float:
    """α for 0-based ``epoch``: α·(1 − epoch/(epochs − no_l1_epochs)), 0 in the last ``no_l1_epochs``.

    Unlearn-Sparse ``FT_iter``: ``current_alpha = alpha * (1 - epoch / (unlearn_epochs - no_l1_epochs))``
    while ``epoch < unlearn_epochs - no_l1_epochs``, else 0; with no decaying epochs at all the
    coefficient stays at α.
    """
    decay_epochs = epochs - no_l1_epochs
    if decay_epochs <= 0:
        return alpha
    if epoch < decay_epochs:
        return alpha * (1 - epoch / decay_epochs)
    return 0.0


def l1_norm(model: nn.Module) -> torch.Tensor:
    """‖θ‖₁ over every trainable parameter (conv, BN, biases, head)."""
    return torch.stack([p.abs().sum() for p in model.parameters() if p.requires_grad]).sum()


@configclass
class L1SparseConfig(metaclass=ConfigType):
    epochs: int = 10
    lr: float = 0.05
    alpha: float = 1e-3
    no_l1_epochs: int = 0
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
        return l1_coefficient(config.alpha, epoch, config.epochs, config.no_l1_epochs) * l1_norm(m)

    retain = Phase(data.retain, ce_loss(), config.batch_size, name="retain",
                   augment=data.info if config.augment else None, transform=h.retain_transform)
    opt = make_optimizer(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    run_epochs(model, [retain], epochs=config.epochs, optimizer=opt, generator=gen, mask=h.mask,
               extra_terms=[penalty], amp=config.amp, description="l1_sparse")
    return model
