"""Targeted Auto-PGD on the DLR loss over the top-9 classes (AutoAttack's APGD-T)."""

from __future__ import annotations

from unlearnbench.robust import checks
from unlearnbench.robust.attacks import ATTACKS, AttackOutput, per_batch
from unlearnbench.robust.threat import APGDTConfig


@ATTACKS.register("apgdt", summary="APGD-T: targeted DLR against the top-9 classes x 100 iterations",
                  norms=("Linf", "L2"), config=APGDTConfig, kind="gradient", paper="https://arxiv.org/abs/2003.01690")
def apgdt(model, x, y, threat, cfg: APGDTConfig, batch_size: int) -> AttackOutput:
    from unlearnbench.robust.aa.apgd import APGDT

    atk = APGDT(model, norm=threat.norm, eps=threat.eps, steps=cfg.steps, n_restarts=cfg.n_restarts, seed=cfg.seed,
                rho=cfg.rho, n_target_classes=min(cfg.n_target_classes, max(1, getattr(model, "num_classes", 10) - 1)))
    x_adv = per_batch(atk, x, y, batch_size, "apgd-t")
    checks.check_zero_gradients(atk.zero_grad_points, len(x))
    return AttackOutput(x_adv)
