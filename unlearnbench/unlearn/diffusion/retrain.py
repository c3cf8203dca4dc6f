"""Retrain for conditional DDPMs: fresh weights trained on the retain set only (the gold standard),
with the same training loop as the original (``core.diffusion.fit_diffusion``: Adam, clip, EMA,
condition dropout). The reference's ``train.py --mode retrain``.

Paper: Fan et al., SalUn, ICLR 2024, https://arxiv.org/abs/2310.12508 (its generation experiments).
"""

from __future__ import annotations

from unlearnbench.core.config import configclass, to_dict
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.diffusion import ConditionalDDPM, DiffusionTrainConfig, fit_diffusion
from unlearnbench.unlearn.base import ConfigType, register_method
from unlearnbench.unlearn.diffusion.common import check_loop

_T = DiffusionTrainConfig  # the Retrain trains as the original does unless told otherwise


@configclass
class DiffusionRetrainConfig(metaclass=ConfigType):
    steps: int = _T.steps
    batch_size: int = _T.batch_size
    lr: float = _T.lr
    grad_clip: float = _T.grad_clip
    ema: bool = _T.ema
    ema_rate: float = _T.ema_rate
    cond_drop_prob: float = _T.cond_drop_prob
    warmup: int = _T.warmup
    seed: int = _T.seed

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
    train_cfg = DiffusionTrainConfig(**to_dict(config), device=str(device))
    return fit_diffusion(fresh.to(device), data.retain, data.info, train_cfg, description="ddpm_retrain").model
