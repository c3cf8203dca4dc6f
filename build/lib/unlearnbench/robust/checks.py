"""Input validation and AutoAttack-style sanity checks.

``check_inputs`` raises (an attack on wrongly scaled images silently measures nothing); the other
checks follow the original AutoAttack "flags" (Croce & Hein, ``autoattack/checks.py``) and only
warn, each with the fix in the message.
"""

from __future__ import annotations

import sys
import warnings

import torch
import torch.nn as nn

from unlearnbench.core.errors import UserError


class AttackInputError(UserError, ValueError):
    """Images or labels given to an attack are not what attacks need."""


class RobustnessWarning(UserWarning):
    """A robustness evaluation may be unreliable (see the message for the fix)."""


def check_inputs(x: torch.Tensor, y: torch.Tensor, num_classes: int | None = None) -> None:
    """Images must be float NCHW tensors in [0, 1]; labels int64 class indices."""
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise AttackInputError(
            "Attack inputs must be float image tensors in [0, 1]; convert uint8 images with x.float() / 255."
        )
    if x.dim() != 4:
        raise AttackInputError(f"Attack inputs must have shape (N, C, H, W), got {tuple(x.shape)}.")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or len(y) != len(x):
        raise AttackInputError(f"Labels must be a 1-D tensor with one label per image ({len(x)}).")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise AttackInputError("Labels must be integer class indices, not one-hot or float scores.")
    if len(x) == 0:
        raise AttackInputError("There are no images to attack; choose a split that is not empty.")
    if not bool(torch.isfinite(x).all()):
        raise AttackInputError("Attack inputs contain NaN or infinite values; check the data pipeline.")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        hint = (
            " They look already normalised (mean/std): pass unnormalised images and let the model's first layer normalise."
            if lo < 0
            else " They look like 0-255 pixel values: divide by 255."
        )
        raise AttackInputError(f"Attack inputs must lie in [0, 1] but range over [{lo:.3g}, {hi:.3g}].{hint}")
    if num_classes is not None and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise AttackInputError(
            f"Labels must lie in 0..{num_classes - 1} for this {num_classes}-class model, found {int(y.min())}..{int(y.max())}."
        )


def _warn(message: str) -> None:
    warnings.warn(message, RobustnessWarning, stacklevel=3)


def check_logits(model: nn.Module, x: torch.Tensor, alpha: float = 1e-5) -> int:
    """Warn when the model outputs probabilities; return the number of classes."""
    with torch.no_grad():
        out = model(x)
    if out.dim() != 2:
        raise AttackInputError(f"The model must return one (N, classes) logits tensor, got shape {tuple(out.shape)}.")
    if bool(out.max() < 1 + alpha) and bool(out.min() > -alpha) and bool(((out.sum(-1) - 1).abs() < alpha).all()):
        _warn(
            "The model seems to output probabilities (softmax) instead of logits; attacks and the DLR loss "
            "need logits. Remove the final softmax layer."
        )
    return int(out.shape[-1])


def check_model_mode(model: nn.Module) -> None:
    """Attacks run the model in eval mode (and restore its mode); say so when it was training."""
    if any(m.training for m in model.modules()):
        _warn(
            "The model was in train mode; it is attacked in eval mode (running BatchNorm statistics, no dropout) "
            "and its mode is restored afterwards. Call model.eval() to silence this."
        )


def check_randomized(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int = 5, alpha: float = 1e-4) -> bool:
    """Warn (and return True) when ``n`` forward passes on the same images disagree (a randomised
    defence), as the reference's ``check_randomized``: 5 passes, the number of correct points of
    each, and the largest L2 distance between any two passes' L2-normalised logits (> ``alpha``).
    A model random only now and then (e.g. on every third call) passes a 2-pass check."""
    with torch.no_grad():
        outs = [model(x) for _ in range(n)]
    correct = [int((o.argmax(1) == y).sum()) for o in outs]
    normed = [o / (o.flatten(1).norm(dim=1, keepdim=True) + 1e-10) for o in outs]
    max_diff = max((float((normed[a] - normed[b]).flatten(1).norm(dim=1).max())
                    for a in range(n) for b in range(a + 1, n)), default=0.0)
    differs = len(set(correct)) > 1 or max_diff > alpha
    if differs:
        _warn(
            f"{n} forward passes of the model on the same images differ (a randomised model or one left "
            "in train mode): use the 'rand' version of AutoAttack (attack 'autoattack-rand', or --set version=rand)."
        )
    return differs


# Functions whose call during a plain forward pass marks a "dynamic" defence (one that runs its
# own optimisation on the input at test time), as in the reference's ``check_dynamic``.
_DYNAMIC_CALLS = frozenset({"grad", "backward", "_make_grads"})


def check_dynamic(model: nn.Module, x: torch.Tensor) -> bool:
    """Warn (and return True) when a forward pass computes gradients (``torch.autograd.grad``,
    ``backward``): a test-time-optimising defence that AutoAttack alone may not evaluate well."""
    seen: list[str] = []

    def trace(frame, event, arg):
        if event == "call" and frame.f_code.co_name in _DYNAMIC_CALLS:
            seen.append(frame.f_code.co_name)
        return None  # no line tracing: only calls are counted

    before = sys.gettrace()  # a debugger's or coverage's tracer is put back afterwards
    sys.settrace(trace)
    try:
        model(x)  # with autograd on, as the reference: a defence may rely on it
    finally:
        sys.settrace(before)
    if seen:
        _warn(
            f"The model computes gradients in its forward pass ({', '.join(sorted(set(seen)))}): a dynamic "
            "(test-time optimising) defence. AutoAttack alone may overestimate its robustness; use an adaptive attack."
        )
    return bool(seen)


def check_zero_gradients(n_zero: int, n_total: int) -> None:
    """``n_zero`` counts points (each once), so it never exceeds ``n_total``."""
    if n_zero > n_total:
        raise ValueError(f"{n_zero} zero-gradient points out of {n_total}: points were counted more than once")
    if n_zero:
        _warn(
            f"{n_zero} of {n_total} points have a zero input gradient, so gradient-based attacks cannot move "
            "them (gradient masking, e.g. input quantisation); the robust accuracy may be overestimated. "
            "Check the model for non-differentiable layers."
        )


def check_n_classes(num_classes: int, n_targets: int, stages: tuple[str, ...]) -> int:
    """Return the number of target classes that can be used; warn when it is fewer than asked."""
    # DLR divides by (z_1 - z_3); its targeted form also needs z_4.
    if any(s.endswith("-t") for s in stages) and num_classes < 4:
        raise AttackInputError(
            f"AutoAttack's targeted DLR loss needs at least 4 classes, this model has {num_classes}; use apgd or pgd."
        )
    if any("dlr" in s for s in stages) and num_classes < 3:
        raise AttackInputError(f"The DLR loss needs at least 3 classes, this model has {num_classes}; use apgd with loss=ce.")
    usable = max(1, min(n_targets, num_classes - 1))
    if usable < n_targets and any(s.endswith("-t") for s in stages):
        _warn(
            f"{n_targets} target classes were asked for but the model has only {num_classes} classes; "
            f"APGD-T and FAB-T use {usable}."
        )
    return usable


def check_square(counts: dict[str, int], n: int, alpha: float = 0.002) -> None:
    """Square (black box) should not beat the white-box attacks by more than 0.2 % of the points."""
    if "square" not in counts or n == 0:
        return
    before = min(v for k, v in counts.items() if k != "square")
    if (before - counts["square"]) / n > alpha:
        _warn(
            f"Square Attack lowered the robust accuracy by {100 * (before - counts['square']) / n:.2f} points after "
            "the gradient-based attacks: a sign of gradient masking. Consider an adaptive attack or Square with "
            "more queries and restarts before trusting this number."
        )
