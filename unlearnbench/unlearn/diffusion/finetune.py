"""Fine-tuning for conditional DDPMs: keep training on the retain set only (the forgotten class
is never shown again, so its condition is left to drift). Not in the DDPM reference code; the
SalUn paper's FT baseline on the generation side.

Paper: Fan et al., SalUn, ICLR 2024, https://arxiv.org/abs/2310.12508 (its generation experiments).
"""

from __future__ import annotations

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.diffusion import ConditionalDDPM
from unlearnbench.unlearn.base import ConfigType, register_method
from unlearnbench.unlearn.diffusion.common import check_loop, unlearn_loop


@configclass
class DiffusionFTConfig(metaclass=ConfigType):
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-4
    grad_clip: float = 1.0
    cond_drop_prob: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_loop(self)


@register_method(
    "ddpm_finetune", config=DiffusionFTConfig, reads=("retain",), task="generation",
    paper="https://arxiv.org/abs/2310.12508",
    summary="FT for DDPMs: continue the diffusion loss on the retain set only",
)
def ddpm_finetune(model: ConditionalDDPM, data: UnlearnData, config: DiffusionFTConfig) -> ConditionalDDPM:
    return unlearn_loop(model, retain=data.retain, forget=None, forget_loss=None, config=config, alpha=1.0,
                        hflip=data.info.hflip, description="ddpm_finetune")
