"""SalUn — saliency unlearning: a gradient-saliency weight mask, then random labelling.

Paper: Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency",
ICLR 2024, https://arxiv.org/abs/2310.12508 (code: OPTML-Group/Unlearn-Saliency,
``generate_mask.py`` + ``main_random.py --unlearn RL --mask_path with_0.5.pt``).

1. Mask (``masks.saliency_mask``): |Σ_batches ∇ CE(forget)| on the original model in eval mode,
   global top-``mask_ratio`` (default 0.5) over all parameters, exactly ``int(N·ratio)`` kept.
2. RL (``random_label.relabel_and_train``): forget pass with random labels, then retain pass,
   updating only the salient weights.

``mask_mode`` — how the mask holds the other weights:

* ``exact`` (default): masked-out weights stay *bit-identical*; besides masking gradients, every
  step restores them and clears their momentum (``loops.Stepper``), so weight decay and momentum
  cannot move them. This is SalUn's equation and the current reference code (Unlearn-Saliency
  issue #32, PR #33, 2026).
* ``gradient``: only their gradients are zeroed, so SGD's weight decay and momentum still move
  them (non-salient weights shrink by ~10 % over the README recipe). This is the paper-era code
  that produced the published tables, so the Table 1 preset uses it.

``mask_generation`` — how the mask is computed (``masks``):

* ``current`` (default): |Σ_b ∇ CE| in eval mode, no optimizer step, top ``mask_ratio``
  (``generate_mask.py`` since ``bc74947``/``b874ee9``, December 2023, and today);
* ``2023``: the October 2023 release ``9576623`` that produced the published tables: train mode,
  an SGD step (lr ``mask_lr``, the script's ``--unlearn_lr`` default 0.01) after every batch,
  Σ_b |∇_b|, and the ``mask_ratio`` fraction with the *smallest* scores kept (its ascending rank).

``mixed: true`` shuffles relabelled forget rows and retain rows into one loader, as the
2023 release did for CIFAR-10 (the code of Table 1); ``mixed: false`` is today's sequential
forget-then-retain pass. RTE includes the mask generation, which is part of the method (the
papers do not say whether theirs did). Defaults (lr 0.05, batch 64) suit small data such as
digits; the paper's recipe is the ``salun-cifar10-random10`` preset.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.unlearn.base import ConfigType, check, check_training, register_method
from unlearnbench.unlearn.masks import saliency_mask, saliency_mask_2023
from unlearnbench.unlearn.random_label import relabel_and_train


@configclass
class SalUnConfig(metaclass=ConfigType):
    epochs: int = 10
    lr: float = 0.05
    batch_size: int = 64
    mask_ratio: float = 0.5
    mask_batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    mixed: bool = False
    mask_generation: Literal["current", "2023"] = "current"  # 2023: the release behind the published tables (train mode, SGD steps, smallest scores)
    mask_lr: float = 0.01  # mask_generation 2023 only: lr of the SGD steps taken while the mask is computed
    mask_mode: Literal["exact", "gradient"] = "exact"  # exact: masked-out weights never move; gradient: paper-era, only gradients masked (weight decay, momentum still move them)
    augment: bool = True
    amp: bool = True
    adv_eps: float | None = None
    adv_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_training(self)
        check(0 < self.mask_ratio <= 1, "mask_ratio is the fraction of weights updated, in (0, 1].")
        check(self.mask_batch_size >= 1, "mask_batch_size must be at least 1.")
        check(self.mask_lr >= 0, "mask_lr must be non-negative.")


@register_method(
    "salun", config=SalUnConfig, reads=("forget", "retain"), paper="https://arxiv.org/abs/2310.12508",
    summary="SalUn: top-r gradient-saliency mask, then random labelling on the salient weights only",
)
def salun(model: nn.Module, data: UnlearnData, config: SalUnConfig) -> nn.Module:
    gen = torch.Generator().manual_seed(config.seed + 1)  # independent of the RL stream
    augment = data.info if config.augment else None
    if config.mask_generation == "2023":
        mask = saliency_mask_2023(model, data.forget, config.mask_ratio, lr=config.mask_lr,
                                  batch_size=config.mask_batch_size, augment=augment, generator=gen)
    else:
        mask = saliency_mask(model, data.forget, config.mask_ratio, batch_size=config.mask_batch_size,
                             augment=augment, generator=gen)
    return relabel_and_train(model, data, config, mask, "salun")
