"""ESD (Erased Stable Diffusion, Gandikota et al., ICCV 2023) adapted to a class-conditional DDPM.

Paper: https://arxiv.org/abs/2303.07345.

The model's prediction under the forgotten class is trained towards the frozen original's
*negatively guided* prediction ``eps*(x_t, null) - eta * (eps*(x_t, c_f) - eps*(x_t, null))``, so
sampling that class steers away from it. ESD is a Stable Diffusion method (Unlearn-Saliency has
it only under ``SD/``); on a class-conditional DDPM the condition is the class embedding, and
``x_t`` comes from noised forget images rather than from the model's own partial generations
(the images are at hand here; listed in docs/generation.md). ESD reads no retain data.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from unlearnbench.core.config import check, configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.diffusion import ConditionalDDPM, noise_and_times, noisy, to_model_space
from unlearnbench.unlearn.base import ConfigType, register_method
from unlearnbench.unlearn.diffusion.common import check_loop, unlearn_loop


@configclass
class DiffusionESDConfig(metaclass=ConfigType):
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-5  # ESD's lr for the full model
    grad_clip: float = 1.0
    negative_guidance: float = 1.0  # ESD's eta
    cond_drop_prob: float = 0.0  # unused by ESD (no retain loss); kept for the shared checks
    seed: int = 0

    def __post_init__(self) -> None:
        check_loop(self)
        check(self.negative_guidance >= 0, "negative_guidance must be 0 or more.")


@register_method(
    "ddpm_esd", config=DiffusionESDConfig, reads=("forget",), task="generation",
    paper="https://arxiv.org/abs/2303.07345",
    summary="ESD for DDPMs: forget-class prediction trained to the frozen model's negatively guided one",
)
def ddpm_esd(model: ConditionalDDPM, data: UnlearnData, config: DiffusionESDConfig) -> ConditionalDDPM:
    frozen = copy.deepcopy(model).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    eta = config.negative_guidance

    def forget_loss(m: ConditionalDDPM, x01: torch.Tensor, c: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x0 = to_model_space(x01)
        noise, t = noise_and_times(x0, m.timesteps, gen)
        xt = noisy(m, x0, noise, t)
        with torch.no_grad():
            null = torch.full_like(c, m.null_class)
            e_c, e_0 = frozen(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([c, null])).chunk(2)
            target = e_0 - eta * (e_c - e_0)
        return F.mse_loss(m(xt, t, c), target)

    return unlearn_loop(model, retain=None, forget=data.forget, forget_loss=forget_loss, config=config, alpha=0.0,
                        hflip=data.info.hflip, description="ddpm_esd")
