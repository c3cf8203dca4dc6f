"""SalUn for conditional DDPMs: a saliency mask from the forget-class diffusion loss, then random
labels on the salient weights only.

Reference: OPTML-Group/Unlearn-Saliency ``DDPM/runners/diffusion.py``:

1. ``generate_mask``: the original model in ``eval()`` mode; for each forget batch the *guided*
   prediction (``cond_scale`` 2.0) gives ``Σ_pixels (ε − ε̂)²`` (batch mean); its gradient is
   norm-clipped to 1.0 (``grad_clip``) and summed over batches; the mask keeps the top
   ``mask_ratio`` (0.5) of all weights by ``|Σ ∇|`` (a global ranking: ``with_0.5.pt``).
2. ``saliency_unlearn --method rl --alpha 1e-3``: the random-label loop (``random_label.py``)
   with every gradient multiplied by the mask. Adam without weight decay never moves a weight
   whose gradient is always zero, so non-salient weights stay bit-identical.

Paper: Fan et al., SalUn, ICLR 2024, https://arxiv.org/abs/2310.12508 (its generation experiments).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnbench.core.config import check, configclass
from unlearnbench.core.data import TensorSet, UnlearnData
from unlearnbench.core.diffusion import ConditionalDDPM, batches, diffusion_loss
from unlearnbench.unlearn.base import ConfigType, Mask, register_method
from unlearnbench.unlearn.diffusion.common import check_loop, unlearn_loop
from unlearnbench.unlearn.diffusion.random_label import relabel_loss
from unlearnbench.unlearn.masks import top_fraction_mask


@configclass
class DiffusionSalUnConfig(metaclass=ConfigType):
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-4
    grad_clip: float = 1.0
    alpha: float = 1e-3  # weight of the retain loss (README / issue #19)
    cond_drop_prob: float = 0.1
    mask_ratio: float = 0.5
    mask_guidance: float = 2.0  # guidance of the prediction whose loss gives the saliency (the reference's cond_scale)
    mask_batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        check_loop(self)
        check(0 < self.mask_ratio <= 1, "mask_ratio is the fraction of weights updated, in (0, 1].")
        check(self.mask_batch_size >= 1, "mask_batch_size must be at least 1.")
        check(self.mask_guidance >= 0, "mask_guidance must be 0 or more.")


def diffusion_saliency(model: ConditionalDDPM, forget: TensorSet, *, batch_size: int, guidance: float,
                       grad_clip: float, seed: int) -> dict[str, torch.Tensor]:
    """Σ over one pass of forget batches of the clipped gradient of the guided diffusion loss
    (eval mode); the caller's gradients and ``model.training`` are restored."""
    was = model.training
    model.eval()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    saved = {n: p.grad for n, p in params}
    sums = {n: torch.zeros_like(p) for n, p in params}
    gen = torch.Generator().manual_seed(seed)
    it = batches(forget, batch_size, gen)
    try:
        for _ in range(-(-len(forget) // batch_size)):
            x, y = next(it)
            model.zero_grad(set_to_none=True)
            diffusion_loss(model, x, y, gen, guidance=guidance).backward()
            nn.utils.clip_grad_norm_([p for _, p in params], grad_clip)
            for n, p in params:
                if p.grad is not None:
                    sums[n] += p.grad
    finally:
        for n, p in params:
            p.grad = saved[n]
        model.train(was)
    return sums


def diffusion_saliency_mask(model: ConditionalDDPM, forget: TensorSet, config: DiffusionSalUnConfig) -> Mask:
    grads = diffusion_saliency(model, forget, batch_size=config.mask_batch_size, guidance=config.mask_guidance,
                               grad_clip=config.grad_clip, seed=config.seed + 1)
    return top_fraction_mask({n: g.abs() for n, g in grads.items()}, config.mask_ratio)


@register_method(
    "ddpm_salun", config=DiffusionSalUnConfig, reads=("forget", "retain"), task="generation",
    paper="https://arxiv.org/abs/2310.12508",
    summary="SalUn for DDPMs: top-r saliency mask of the forget-class diffusion loss, then RL on salient weights",
)
def ddpm_salun(model: ConditionalDDPM, data: UnlearnData, config: DiffusionSalUnConfig) -> ConditionalDDPM:
    mask = diffusion_saliency_mask(model, data.forget, config)
    return unlearn_loop(model, retain=data.retain, forget=data.forget, forget_loss=relabel_loss(config.cond_drop_prob),
                        config=config, alpha=config.alpha, mask=mask, hflip=data.info.hflip, description="ddpm_salun")
