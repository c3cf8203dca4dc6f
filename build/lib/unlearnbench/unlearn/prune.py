"""One-shot global magnitude pruning (OMP) of convolution weights, as in Unlearn-Sparse.

``pruner/utils.py`` of OPTML-Group/Unlearn-Sparse prunes globally over all ``nn.Conv2d`` weights
only (L1 unstructured; the head and BatchNorm are never pruned) and reports sparsity over those
weights. Here the number pruned is exactly ``round(sparsity * N)`` of the N convolution weights,
the smallest by magnitude, ties broken by a stable sort (lower flat index first).

The mask is returned as ``{parameter name: bool tensor}`` with True = kept. Pruned weights are
set to zero, and every later step keeps them exactly zero: the unlearning loop treats False
entries as frozen (see ``loops.Stepper``), which is what Unlearn-Sparse gets from
``weight = weight_orig ⊙ weight_mask``.

Two ways to get a pruned model (docs/studies.md, "Prune first"):

* **OMP with rewinding** (Unlearn-Sparse's sparse original, a study's default ``prune_mode:
  rewind``): keep the dense model's weights after an early epoch (:class:`EpochSnapshot`), prune
  the final weights, rewind the survivors to the snapshot (:func:`sparse_start`) and train again
  with the mask fixed (:func:`train_masked`). Its Retrain reference trains a fresh initialisation
  with the same mask.
* **One-shot** (``--prune S`` on ``unlearn``, ``prune_mode: one-shot`` in a study): :func:`omp`
  prunes the trained dense original just before unlearning, without retraining.
"""

from __future__ import annotations

import copy
import hashlib
from contextlib import contextmanager

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


# ----------------------------------------------------------------------------- prune first (OMP + rewind)
#
# Unlearn-Sparse's sparse "original" (main_imp.py --prune_type rewind_lt --rewind_epoch 8):
#   1. train the dense model, keeping its weights after epoch ``rewind_epoch`` (EpochSnapshot);
#   2. prune the *final* dense weights globally by magnitude (magnitude_masks);
#   3. rewind the survivors to the epoch-k weights (sparse_start) and
#   4. train again with the mask fixed (train_masked: weight = weight_orig ⊙ mask, as
#      torch.nn.utils.prune does in the reference, so pruned weights stay exactly zero).
# The Retrain reference of a pruned row is a fresh initialisation trained on the retain set with
# the same mask (sparse_retrain), not the dense Retrain.


class EpochSnapshot:
    """``epoch_end`` callback of ``core.train.fit`` that keeps a CPU copy of the weights after
    each of ``epochs`` (1-based, as ``fit`` counts): the rewind point, and the last epoch (the
    reference prunes the final weights, not the best-validation ones ``fit`` restores).
    ``inner`` is another callback to chain."""

    def __init__(self, *epochs: int, inner=None) -> None:
        if not epochs or min(epochs) < 1:
            raise ValueError("snapshot epochs count from 1")
        self.epochs = epochs
        self.inner = inner
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def state(self) -> dict[str, torch.Tensor] | None:
        """The snapshot of the first epoch asked for (None if training never got there)."""
        return self.states.get(self.epochs[0])

    def __call__(self, epoch: int, record: dict, model: nn.Module):
        if epoch in self.epochs:
            self.states[epoch] = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
        return self.inner(epoch, record, model) if self.inner is not None else None


def _module_of(model: nn.Module, param_name: str) -> tuple[nn.Module, str]:
    path, _, attr = param_name.rpartition(".")
    return (model.get_submodule(path) if path else model), attr


@contextmanager
def fixed_mask(model: nn.Module, masks: Mask):
    """Inside the block the masked parameters are ``param_orig ⊙ mask`` (``torch.nn.utils.prune``),
    so every forward pass sees pruned weights at exactly zero whatever the optimizer does to
    ``param_orig``; on exit the product is made permanent (plain parameters, pruned entries 0)."""
    import torch.nn.utils.prune as tprune

    done = []
    try:
        for name, keep in masks.items():
            module, attr = _module_of(model, name)
            tprune.custom_from_mask(module, attr, keep.to(getattr(module, attr).device))
            done.append((module, attr))
        yield model
    finally:
        for module, attr in done:
            tprune.remove(module, attr)


def train_masked(model: nn.Module, masks: Mask, train, val, info, config, *, description: str):
    """``core.train.fit`` with ``masks`` fixed throughout (pruned weights are zero before, during
    and after training); returns fit's TrainResult."""
    from unlearnbench.core.train import fit

    apply_masks(model, masks)
    with fixed_mask(model, masks):
        result = fit(model, train, val, info, config, description=description)
    return result


@torch.no_grad()
def sparse_start(dense: nn.Module, rewind_state: dict[str, torch.Tensor], sparsity: float) -> tuple[nn.Module, Mask]:
    """The starting point of the sparse original: the mask from the *final* dense weights, the
    surviving weights (and BatchNorm statistics) from the epoch-k snapshot."""
    masks = magnitude_masks(dense, sparsity)
    start = copy.deepcopy(dense)
    start.load_state_dict(rewind_state)
    apply_masks(start, masks)
    return start, masks


def mask_digest(masks: Mask) -> str:
    """A short hash of a mask (recorded with sparse models so two can be checked for the same mask)."""
    h = hashlib.sha256()
    for name in sorted(masks):
        h.update(name.encode())
        h.update(masks[name].to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def lr_rewound(config, rewind_epoch: int):
    """The sparse original's TrainConfig with Unlearn-Sparse's *learning-rate rewinding*: after
    pruning, ``main_imp.py`` builds a fresh MultiStepLR and steps it ``rewind_epoch`` times before
    the full run, so each decay comes ``rewind_epoch`` epochs earlier (91/136 → 83/128 for
    rewind epoch 8 of 182). Milestones already passed scale the base lr by ``gamma`` instead.
    Other schedules are returned unchanged (the reference rewinds only its MultiStepLR)."""
    import dataclasses

    if config.schedule != "multistep" or not rewind_epoch:
        return config
    shift = rewind_epoch / config.epochs
    passed = [m for m in config.milestones if m - shift <= 1e-12]
    kept = tuple(m - shift for m in config.milestones if m - shift > 1e-12)
    lr = config.lr * config.gamma ** len(passed)
    if not kept:
        return dataclasses.replace(config, lr=lr, schedule="constant")
    return dataclasses.replace(config, lr=lr, milestones=kept)


def rewind_retrain(dense_last: nn.Module, rewind_state: dict[str, torch.Tensor], sparsity: float, train, val, info,
                   config, rewind_epoch: int, *, description: str = "sparse original"):
    """Unlearn-Sparse's sparse original from a dense run: OMP of ``dense_last`` (the last-epoch
    weights), survivors rewound to ``rewind_state`` (the weights after ``rewind_epoch``), trained
    with the mask fixed and learning-rate rewinding. Returns ``(model, masks, TrainResult)``;
    ``dense_last`` is not changed."""
    model, masks = sparse_start(dense_last, rewind_state, sparsity)
    result = train_masked(model, masks, train, val, info, lr_rewound(config, rewind_epoch), description=description)
    return model, masks, result
