"""Gradient ascent for conditional DDPMs: maximise the forget images' diffusion loss (+ alpha x
the retain loss), as the reference's ``saliency_unlearn --method ga`` without a mask.

Paper: Fan et al., SalUn, ICLR 2024, https://arxiv.org/abs/2310.12508 (its generation experiments).
"""

from __future__ import annotations

import torch

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.diffusion import ConditionalDDPM, diffusion_loss
from unlearnbench.unlearn.base import ConfigType, register_method
from unlearnbench.unlearn.diffusion.common import check_loop, unlearn_loop


@configclass
class DiffusionGAConfig(metaclass=ConfigType):
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-4
    grad_clip: float = 1.0
    alpha: float = 1e-3  # weight of the retain loss, as the reference loop
    cond_drop_prob: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_loop(self)


@register_method(
    "ddpm_grad_ascent", config=DiffusionGAConfig, reads=("forget", "retain"), task="generation",
    paper="https://arxiv.org/abs/2310.12508",
    summary="GA for DDPMs: ascend the forget-class diffusion loss, + alpha x retain loss",
)
def ddpm_grad_ascent(model: ConditionalDDPM, data: UnlearnData, config: DiffusionGAConfig) -> ConditionalDDPM:
    def forget_loss(m: ConditionalDDPM, x: torch.Tensor, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return -diffusion_loss(m, x, c, gen, cond_drop_prob=config.cond_drop_prob)

    return unlearn_loop(model, retain=data.retain, forget=data.forget, forget_loss=forget_loss, config=config,
                        alpha=config.alpha, hflip=data.info.hflip, description="ddpm_grad_ascent")
