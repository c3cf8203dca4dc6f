"""Saliency masks (SalUn): which weights matter most for the forget set.

As in ``generate_mask.py`` of OPTML-Group/Unlearn-Saliency: the gradient of the cross-entropy on
the forget set (true labels), taken on the *original* model in ``eval()`` mode (BatchNorm uses
its running statistics), summed over mini-batches of mean losses, in absolute value; then a
*global* ranking over every parameter tensor (convolutions, BatchNorm γ/β, the head) keeps the
top ``ratio`` fraction. The count is exactly ``int(N * ratio)`` of the N parameters; ties are
broken by a stable sort (lower flat index first) so the mask is the same on every device.
That is the code since December 2023 (``bc74947``, ``b874ee9``) and today (``a6e89fd``).

The **2023 release** (``9576623``, October 2023, the code of the published tables) generated the
mask differently (:func:`saliency_mask_2023`, SalUn's ``mask_generation: "2023"``):

* the model is in ``train()`` mode (BatchNorm normalises with batch statistics and updates its
  running statistics);
* an SGD optimizer (lr ``--unlearn_lr``, default 0.01; momentum 0.9, weight decay 5e-4) *steps*
  on the loss −CE after every batch, so each batch's gradient is taken at weights already moved
  by gradient ascent on the earlier batches;
* it sums the per-batch **absolute** gradients, Σ_b |∇_b| (today: |Σ_b ∇_b|);
* it ranks ascending (``argsort`` of the scores, ``rank < int(N·r)``), so ``hard_{r}.pt`` marks
  the r fraction with the *smallest* scores (today's code negates the scores first: the largest).

None of it touches the model the method then unlearns: ``generate_mask.py`` was a separate run.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.data import DatasetInfo, Loader, TensorSet
from unlearnbench.unlearn.base import Mask


def forget_gradients(
    model: nn.Module,
    forget: TensorSet,
    *,
    batch_size: int = 256,
    augment: DatasetInfo | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Σ over forget batches of ∇ CE (batch mean), per parameter, in eval mode; ``model`` is restored
    (gradients, and every module's own mode: a frozen BatchNorm inside a training model stays frozen)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    saved = {n: (None if p.grad is None else p.grad.clone()) for n, p in params}
    sums = {n: torch.zeros_like(p) for n, p in params}
    try:
        loader = Loader(forget, batch_size, shuffle=True, augment=augment, generator=generator)
        for x, y in loader:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            for n, p in params:
                if p.grad is not None:
                    sums[n] += p.grad
    finally:
        for n, p in params:  # leave the caller's gradients exactly as they were
            p.grad = saved[n]
        for m, flag in modes:
            m.training = flag
    return sums


def top_fraction_mask(scores: dict[str, torch.Tensor], ratio: float) -> Mask:
    """Global top-``ratio`` of all entries by score: exactly ``int(N * ratio)`` entries are True."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    names = list(scores)
    flat = torch.cat([scores[n].detach().flatten().float() for n in names])
    k = int(flat.numel() * ratio)
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k:
        order = torch.argsort(flat, descending=True, stable=True)
        keep[order[:k]] = True
    out: Mask = {}
    start = 0
    for n in names:
        size = scores[n].numel()
        out[n] = keep[start : start + size].view_as(scores[n])
        start += size
    return out


def saliency_mask(
    model: nn.Module,
    forget: TensorSet,
    ratio: float,
    *,
    batch_size: int = 256,
    augment: DatasetInfo | None = None,
    generator: torch.Generator | None = None,
) -> Mask:
    """SalUn's mask: True for the ``ratio`` fraction of weights with the largest |Σ∇ forget CE|."""
    grads = forget_gradients(model, forget, batch_size=batch_size, augment=augment, generator=generator)
    return top_fraction_mask({n: g.abs() for n, g in grads.items()}, ratio)


def forget_gradients_2023(
    model: nn.Module,
    forget: TensorSet,
    *,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 256,
    augment: DatasetInfo | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Σ_b |∇_b(−CE)| as Unlearn-Saliency ``9576623`` ``generate_mask.py``: a copy of ``model`` in
    train mode, an SGD step after every batch. ``model`` itself is not changed."""
    work = copy.deepcopy(model)
    work.train()
    params = [(n, p) for n, p in work.named_parameters() if p.requires_grad]
    opt = torch.optim.SGD([p for _, p in params], lr=lr, momentum=momentum, weight_decay=weight_decay)
    sums = {n: torch.zeros_like(p) for n, p in params}
    for x, y in Loader(forget, batch_size, shuffle=True, augment=augment, generator=generator):
        opt.zero_grad(set_to_none=True)
        (-F.cross_entropy(work(x), y)).backward()
        with torch.no_grad():
            for n, p in params:
                if p.grad is not None:
                    sums[n] += p.grad.abs()
        opt.step()
    return sums


def bottom_fraction_mask(scores: dict[str, torch.Tensor], ratio: float) -> Mask:
    """The 2023 ranking: exactly ``int(N * ratio)`` entries with the *smallest* scores are True
    (``ranks = argsort(argsort(scores)); mask = ranks < int(N * ratio)``; ties by flat index)."""
    return top_fraction_mask({n: -s.detach().float() for n, s in scores.items()}, ratio)


def saliency_mask_2023(
    model: nn.Module,
    forget: TensorSet,
    ratio: float,
    *,
    lr: float = 0.01,
    batch_size: int = 256,
    augment: DatasetInfo | None = None,
    generator: torch.Generator | None = None,
) -> Mask:
    """SalUn's mask as the October 2023 release computed it (module doc): train mode, SGD steps on
    −CE while accumulating Σ|∇|, and the ``ratio`` fraction with the smallest scores kept."""
    grads = forget_gradients_2023(model, forget, lr=lr, batch_size=batch_size, augment=augment, generator=generator)
    return bottom_fraction_mask(grads, ratio)


def mask_fraction(mask: Mask) -> float:
    total = sum(m.numel() for m in mask.values())
    return sum(int(m.sum()) for m in mask.values()) / max(1, total)
