"""Random labels for a conditional DDPM: the forget images' noise prediction under their own class
is pulled towards the model's prediction under another class.

Reference: OPTML-Group/Unlearn-Saliency ``DDPM/runners/diffusion.py: saliency_unlearn`` with
``--method rl`` and no ``--mask_path``: for a forget batch noised to ``x_t``,
``MSE(eps(x_t, t, c_f), stopgrad(eps(x_t, t, (c_f + 1) mod K)))``, plus ``alpha`` times the usual
diffusion loss on a retain batch. The "misaligned condition" is the next class, as the
reference's ``(label_to_forget + 1) % 10``.

Paper: Fan et al., SalUn, ICLR 2024, https://arxiv.org/abs/2310.12508 (its generation experiments).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearnbench.core.config import configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.diffusion import ConditionalDDPM, noise_and_times, noisy, to_model_space
from unlearnbench.unlearn.base import ConfigType, register_method
from unlearnbench.unlearn.diffusion.common import check_loop, drop_conditions, unlearn_loop


@configclass
class DiffusionRLConfig(metaclass=ConfigType):
    steps: int = 1000  # the reference's n_iters (cifar10_saliency_unlearn.yml)
    batch_size: int = 128
    lr: float = 1e-4
    grad_clip: float = 1.0
    alpha: float = 1e-3  # weight of the retain loss (README / issue #19: 1e-3 for DDPM)
    cond_drop_prob: float = 0.1  # the model's training-mode condition dropout, as in the reference
    seed: int = 0

    def __post_init__(self) -> None:
        check_loop(self)


def relabel_loss(cond_drop_prob: float):
    def loss(model: ConditionalDDPM, x01: torch.Tensor, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x0 = to_model_space(x01)
        noise, t = noise_and_times(x0, model.timesteps, gen)
        xt = noisy(model, x0, noise, t)
        out = model(xt, t, drop_conditions(model, c, cond_drop_prob, gen))
        pseudo_c = drop_conditions(model, (c + 1) % model.num_classes, cond_drop_prob, gen)
        with torch.no_grad():
            pseudo = model(xt, t, pseudo_c)
        return F.mse_loss(out, pseudo)  # the reference's nn.MSELoss(): mean over every element

    return loss


@register_method(
    "ddpm_random_label", config=DiffusionRLConfig, reads=("forget", "retain"), task="generation",
    paper="https://arxiv.org/abs/2310.12508",
    summary="RL for DDPMs: forget images' noise prediction pulled to the next class's, + alpha x retain loss",
)
def ddpm_random_label(model: ConditionalDDPM, data: UnlearnData, config: DiffusionRLConfig) -> ConditionalDDPM:
    return unlearn_loop(model, retain=data.retain, forget=data.forget, forget_loss=relabel_loss(config.cond_drop_prob),
                        config=config, alpha=config.alpha, hflip=data.info.hflip, description="ddpm_random_label")
