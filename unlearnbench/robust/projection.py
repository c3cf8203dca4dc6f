"""Fitting adversarial images to their threat model: which rows are outside the eps-ball or
[0, 1] (``threat_violations``) and the projection back (``project_to_threat``). Shared by
``robust.attacks.run_attack`` and the AutoAttack engine (``robust.aa``), below both."""

from __future__ import annotations

import torch

from unlearnbench.robust.threat import ThreatModel


def _row_size(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().max(1)[0] if norm == "Linf" else flat.norm(dim=1)


def threat_violations(x: torch.Tensor, x_adv: torch.Tensor, threat: ThreatModel,
                      rtol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: ``(outside, beyond)`` — outside the eps-ball or [0, 1] at all (``outside``), and
    by more than float rounding (``beyond``: eps exceeded by a relative ``rtol`` + 1e-7, or a
    pixel outside [-1e-6, 1 + 1e-6])."""
    flat = x_adv.flatten(1)
    size = _row_size(x_adv - x, threat.norm)
    outside = (size > threat.eps) | (flat.min(1)[0] < 0) | (flat.max(1)[0] > 1)
    beyond = (size > threat.eps * (1 + rtol) + 1e-7) | (flat.min(1)[0] < -1e-6) | (flat.max(1)[0] > 1 + 1e-6)
    return outside, beyond


def project_to_threat(x: torch.Tensor, x_adv: torch.Tensor, threat: ThreatModel, rtol: float = 1e-4) -> torch.Tensor:
    """Fit ``x_adv`` to [0, 1] and the eps-ball, touching only the rows that are outside.

    Rows inside are returned bit for bit (recomputing ``x + (x_adv - x)`` would move them by a
    rounding error, and then the saved images would not be the ones the verdicts were computed
    on); rows outside by rounding are projected back; rows far outside go back to ``x``.
    """
    x_adv = x_adv.detach().to(x.dtype)
    outside, beyond = threat_violations(x, x_adv, threat, rtol)
    if not bool(outside.any()):
        return x_adv
    x_adv = x_adv.clone()
    rows = outside & ~beyond
    if bool(rows.any()):
        xr = x[rows]
        delta = x_adv[rows].clamp(0.0, 1.0) - xr
        if threat.norm == "Linf":
            delta = delta.clamp(-threat.eps, threat.eps)
        else:
            size = _row_size(delta, "L2")
            delta = delta * torch.clamp(threat.eps / (size + 1e-12), max=1.0).view(-1, *([1] * (x.dim() - 1)))
        x_adv[rows] = (xr + delta).clamp(0.0, 1.0)
    x_adv[beyond] = x[beyond]
    return x_adv
