"""Per-sample membership signals computed from logits and labels.

All functions take float logits ``(N, C)`` and int64 labels ``(N,)`` and return a float64
``(N,)`` tensor on the CPU. Softmax probabilities are computed in float32, like the SalUn /
Unlearn-Sparse code (``F.softmax(output)`` on float32 logits), so the SVC features below are
bit-for-bit the values that code feeds its attack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax in float32 (the reference code's precision)."""
    return F.softmax(logits.float(), dim=1)


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Probability of the true class, p_y (the SalUn MIA-Efficacy feature)."""
    p = probabilities(logits)
    return p.gather(1, labels.view(-1, 1).long()).squeeze(1).double().cpu()


def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy (computed in float64 so large margins stay distinct)."""
    return F.cross_entropy(logits.double(), labels.long(), reduction="none").cpu()


def entropy(logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Shannon entropy of the softmax, -sum_i p_i log p_i (0 log 0 = 0)."""
    p = probabilities(logits).double()
    return -(p * torch.log(p.clamp_min(1e-30))).sum(1).cpu()


def modified_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Song & Mittal's modified entropy (2021), correctly indexed per row:

    Mentr(p, y) = -(1 - p_y) log(p_y) - sum_{i != y} p_i log(1 - p_i)

    The Unlearn-Sparse/SalUn ``SVC_MIA.py`` version indexes ``probs[:, labels]`` (whole columns
    selected by the label vector, not one entry per row) and takes ``log(p)`` where
    ``log(1 - p)`` is meant; neither bug is reproduced here.
    """
    p = probabilities(logits).double()
    y = labels.view(-1, 1).long().to(p.device)
    log_p = torch.log(p.clamp_min(1e-30))
    log_1mp = torch.log((1 - p).clamp_min(1e-30))
    p_y = p.gather(1, y).squeeze(1)
    true_term = -(1 - p_y) * log_p.gather(1, y).squeeze(1)
    others = -(p * log_1mp)
    others = others.scatter(1, y, 0.0).sum(1)
    return (true_term + others).cpu()


def scaled_logit(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LiRA's logit-scaled confidence phi = log p_y - log(sum_{y' != y} p_y').

    Written as ``z_y - logsumexp_{y' != y} z_{y'}``, which equals the reference
    ``score.py`` formula (softmax in float64 with ``+1e-45`` inside the logs) without its
    floor: it stays finite and exact when p_y rounds to 1.
    """
    z = logits.double()
    y = labels.view(-1, 1).long().to(z.device)
    z_y = z.gather(1, y).squeeze(1)
    others = z.scatter(1, y, float("-inf"))
    return (z_y - torch.logsumexp(others, dim=1)).cpu()
