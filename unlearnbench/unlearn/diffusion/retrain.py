"""Retrain for conditional DDPMs: fresh weights trained on the retain set only (the gold standard),
with the same training loop as the original (``core.diffusion.fit_diffusion``: Adam, clip, EMA,
condition dropout). The reference's ``train.py --mode retrain``.

Paper: Fan et al., SalUn, ICLR 2024, https://arxiv.org/abs/2310.12508 (its generation experiments).
"""

from __future__ import annotations

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.diffusion import ConditionalDDPM, DiffusionTrainConfig, fit_diffusion
from unlearnbench.unlearn.base import ConfigType, register_method
from unlearnbench.unlearn.diffusion.common import check_loop


@configclass
class DiffusionRetrainConfig(metaclass=ConfigType):
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    grad_clip: float = 1.0
    ema: bool = True
    ema_rate: float = 0.995
    cond_drop_prob: float = 0.1
    warmup: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check_loop(self)


@register_method(
    "ddpm_retrain", config=DiffusionRetrainConfig, reads=("retain",), task="generation",
    paper="https://arxiv.org/abs/2310.12508",
    summary="Retrain for DDPMs: a fresh model trained on the retain set only (the reference)",
)
def ddpm_retrain(model: ConditionalDDPM, data: UnlearnData, config: DiffusionRetrainConfig) -> ConditionalDDPM:
    device = next(model.parameters()).device
    fresh = model.fresh(config.seed)  # same architecture and schedule, new weights; ``model`` is not read
    train_cfg = DiffusionTrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                                     grad_clip=config.grad_clip, ema=config.ema, ema_rate=config.ema_rate,
                                     cond_drop_prob=config.cond_drop_prob, warmup=config.warmup, seed=config.seed,
                                     device=str(device))
    return fit_diffusion(fresh.to(device), data.retain, data.info, train_cfg, description="ddpm_retrain").model
