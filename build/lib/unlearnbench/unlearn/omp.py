"""Prune — one-shot magnitude pruning (OMP) of the original, then fine-tuning on the retain set.

Paper: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023,
https://arxiv.org/abs/2304.04934 (code: OPTML-Group/Unlearn-Sparse, ``pruner/``): pruning first
narrows the gap to retraining for approximate methods. This method prunes the convolution
weights globally to ``sparsity`` (default 0.95, the paper's setting; see ``prune.py``) and then,
with the mask fixed:

* ``rewind: false`` — fine-tunes the surviving weights on the retain set for ``epochs``
  (0 = prune only, which reads no data);
* ``rewind: true`` — resets the surviving weights to a fresh (seeded) initialisation and trains
  them on the retain set for ``epochs`` (the lottery-ticket variant; costs about as much as
  retraining). Unlearn-Sparse's sparse original rewinds to the dense run's epoch-8 weights
  instead, which a single checkpoint does not hold: a study's ``prune_mode: rewind`` keeps that
  snapshot while training and builds it (``prune.sparse_start`` / ``prune.train_masked``).

Any *other* method can run on a pruned model with ``run(..., prune=S)`` / ``--prune S``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.unlearn.base import (
    ConfigType,
    check,
    check_training,
    combine_masks,
    hooks,
    register_method,
    reinitialize,
)
from unlearnbench.unlearn.loops import Phase, ce_loss, make_optimizer, run_epochs
from unlearnbench.unlearn.prune import apply_masks, omp


@configclass
class PruneConfig(metaclass=ConfigType):
    sparsity: float = 0.95
    rewind: bool = False
    epochs: int = 10
    lr: float = 0.02
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True
    amp: bool = True
    adv_eps: float | None = None
    adv_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check(0 <= self.sparsity < 1, "sparsity is the pruned fraction of convolution weights, in [0, 1).")
        check_training(self, min_epochs=0)

    def reads(self) -> tuple[str, ...]:
        return ("retain",) if self.epochs > 0 else ()


@register_method(
    "prune", config=PruneConfig, reads=("retain",), paper="https://arxiv.org/abs/2304.04934",
    summary="OMP: prune conv weights to a sparsity (0.95), then fine-tune (or rewind) on retain, mask fixed",
)
def prune(model: nn.Module, data: UnlearnData, config: PruneConfig) -> nn.Module:
    h = hooks(data)
    masks = omp(model, config.sparsity)
    if config.rewind:
        model = reinitialize(model, config.seed)
        apply_masks(model, masks)
    if config.epochs == 0:
        return model
    gen = torch.Generator().manual_seed(config.seed)
    phase = Phase(data.retain, ce_loss(), config.batch_size, name="retain",
                  augment=data.info if config.augment else None, transform=h.retain_transform)
    opt = make_optimizer(model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    run_epochs(model, [phase], epochs=config.epochs, optimizer=opt, generator=gen,
               mask=combine_masks(h.mask, masks), amp=config.amp, description="prune")
    return model
