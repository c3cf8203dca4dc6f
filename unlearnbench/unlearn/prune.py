"""One-shot global magnitude pruning (OMP) of convolution weights, as in Unlearn-Sparse.

``pruner/utils.py`` of OPTML-Group/Unlearn-Sparse prunes globally over all ``nn.Conv2d`` weights
only (L1 unstructured; the head and BatchNorm are never pruned) and reports sparsity over those
weights. Here the number pruned is exactly ``round(sparsity * N)`` of the N convolution weights,
the smallest by magnitude, ties broken by a stable sort (lower flat index first).

The mask is returned as ``{parameter name: bool tensor}`` with True = kept. Pruned weights are
set to zero, and every later step keeps them exactly zero: the unlearning loop treats False
entries as frozen (see ``loops.Stepper``), which is what Unlearn-Sparse gets from
``weight = weight_orig ⊙ weight_mask``.

Rewinding: Unlearn-Sparse's OMP rewinds the surviving weights to an early-training checkpoint
(epoch 8) and retrains with the mask. :func:`omp` accepts such a ``rewind_state``; when the
original's early weights are not available the ``prune`` method can rewind to a fresh
initialisation instead (lottery-ticket style) — see ``unlearn/omp.py``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnbench.unlearn.base import Mask


def conv_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``(parameter name, weight)`` of every convolution, in module order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [(names[id(m.weight)], m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)]


def magnitude_masks(model: nn.Module, sparsity: float) -> Mask:
    """Global magnitude masks over convolution weights pruning exactly ``round(sparsity * N)``."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    weights = conv_weights(model)
    if not weights:
        raise ValueError("the model has no convolution weights to prune")
    flat = torch.cat([w.detach().abs().flatten().float() for _, w in weights])
    n_prune = int(round(sparsity * flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if n_prune:
        keep[torch.argsort(flat, stable=True)[:n_prune]] = False
    out: Mask = {}
    start = 0
    for name, w in weights:
        out[name] = keep[start : start + w.numel()].view_as(w).clone()
        start += w.numel()
    return out


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mask) -> None:
    """Zero the pruned entries in place."""
    params = dict(model.named_parameters())
    for name, keep in masks.items():
        params[name].mul_(keep.to(params[name].device))


@torch.no_grad()
def omp(model: nn.Module, sparsity: float, rewind_state: dict[str, torch.Tensor] | None = None) -> Mask:
    """Prune ``model`` in place; optionally rewind surviving weights to ``rewind_state`` first."""
    masks = magnitude_masks(model, sparsity)
    if rewind_state is not None:
        model.load_state_dict(rewind_state)
    apply_masks(model, masks)
    return masks


def conv_sparsity(model: nn.Module) -> float:
    """Fraction of convolution weights that are exactly zero."""
    weights = conv_weights(model)
    total = sum(w.numel() for _, w in weights)
    zeros = sum(int((w == 0).sum()) for _, w in weights)
    return zeros / max(1, total)


def pruned_nonzero(model: nn.Module, masks: Mask) -> int:
    """How many pruned entries are not zero (0 when the mask has been honoured)."""
    params = dict(model.named_parameters())
    return sum(int((params[n][~m.to(params[n].device)] != 0).sum()) for n, m in masks.items())
