"""Distillation losses shared by teacher-based methods (SCAR, SCRUB, Bad Teacher)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_from_probs(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """KL(p_teacher ‖ softmax(student)) averaged over the batch (``batchmean``)."""
    return F.kl_div(F.log_softmax(student_logits.float(), 1), teacher_probs.float(), reduction="batchmean")


def kl_from_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) ‖ softmax(student)), ``batchmean``, computed in log space (stable)."""
    return F.kl_div(F.log_softmax(student_logits.float(), 1), F.log_softmax(teacher_logits.float(), 1),
                    reduction="batchmean", log_target=True)


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """SCRUB's ``DistillKL``: T²·KL(softmax(t/T) ‖ softmax(s/T)), summed over classes, mean over batch."""
    t = temperature
    return kl_from_logits(student_logits / t, teacher_logits / t) * t * t
