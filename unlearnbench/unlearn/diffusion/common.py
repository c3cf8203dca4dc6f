"""The shared unlearning loop of the generation methods (reference: ``saliency_unlearn``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from unlearnbench.core.config import check
from unlearnbench.core.data import TensorSet
from unlearnbench.core.diffusion import ConditionalDDPM, batches, diffusion_loss, flip
from unlearnbench.core.progress import task as progress
from unlearnbench.unlearn.base import Mask

# forget_loss(model, x01, c, generator) -> scalar
ForgetLoss = Callable[[ConditionalDDPM, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def check_loop(cfg) -> None:
    """The keys every generation method's config shares."""
    check(cfg.steps >= 1, "steps must be at least 1.")
    check(cfg.batch_size >= 1, "batch_size must be at least 1.")
    check(cfg.lr > 0, "lr must be positive.")
    check(cfg.grad_clip > 0, "grad_clip must be positive.")
    check(0 <= cfg.cond_drop_prob < 1, "cond_drop_prob must lie in [0, 1).")


def unlearn_loop(
    model: ConditionalDDPM,
    *,
    retain: TensorSet | None,
    forget: TensorSet | None,
    forget_loss: ForgetLoss | None,
    config,
    alpha: float,
    mask: Mask | None = None,
    hflip: bool = False,
    extra_loss: Callable[[ConditionalDDPM], torch.Tensor] | None = None,
    description: str = "unlearn",
) -> ConditionalDDPM:
    """``config.steps`` Adam steps of ``forget_loss(forget batch) + alpha * retain diffusion loss``
    (+ ``extra_loss(model)``), gradient-norm clip, then ``grad *= mask``. With Adam and no weight
    decay a weight whose gradient is always masked never moves, so the mask is exact."""
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    params = dict(model.named_parameters())
    masks = {n: mask[n].to(p.device, p.dtype) for n, p in params.items() if mask is not None and n in mask}
    r_it = batches(retain, config.batch_size, gen) if retain is not None and alpha > 0 else None
    f_it = batches(forget, config.batch_size, gen) if forget is not None and forget_loss is not None else None
    model.train()
    with progress(description, total=config.steps, unit="steps") as bar:
        for step in range(config.steps):
            loss = torch.zeros((), device=next(model.parameters()).device)
            if r_it is not None:
                x, y = next(r_it)
                x = flip(x, gen) if hflip else x
                loss = loss + alpha * diffusion_loss(model, x, y, gen, cond_drop_prob=config.cond_drop_prob)
            if f_it is not None:
                x, y = next(f_it)
                x = flip(x, gen) if hflip else x
                loss = loss + forget_loss(model, x, y, gen)
            if extra_loss is not None:
                loss = loss + extra_loss(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            for n, m in masks.items():
                if params[n].grad is not None:
                    params[n].grad.mul_(m)
            opt.step()
            bar.advance(1)
            if (step + 1) % max(1, config.steps // 10) == 0:  # a line per 10 % when progress goes to a log
                bar.report(f"loss {float(loss.detach()):.4f}")
    model.eval()
    return model


def drop_conditions(model: ConditionalDDPM, c: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Replace each condition by the null class with probability ``p`` (the model's training-mode
    forward in the reference drops conditions even inside the unlearning losses)."""
    if p <= 0:
        return c
    drop = torch.rand(c.shape[0], generator=generator).to(c.device) < p
    return torch.where(drop, torch.full_like(c, model.null_class), c)
