"""Auto-PGD (Croce & Hein 2020), untargeted, CE or DLR loss, AutoAttack's 100-iteration budget."""

from __future__ import annotations

from unlearnbench.robust import checks
from unlearnbench.robust.attacks import ATTACKS, AttackOutput, per_batch
from unlearnbench.robust.threat import APGDConfig


@ATTACKS.register("apgd", summary="Auto-PGD (CE or DLR loss), 100 iterations as in AutoAttack",
                  norms=("Linf", "L2"), config=APGDConfig, kind="gradient", paper="https://arxiv.org/abs/2003.01690")
def apgd(model, x, y, threat, cfg: APGDConfig, batch_size: int) -> AttackOutput:
    from unlearnbench.robust.aa.apgd import APGD

    atk = APGD(model, norm=threat.norm, eps=threat.eps, steps=cfg.steps, n_restarts=cfg.n_restarts, seed=cfg.seed,
               loss=cfg.loss, eot_iter=cfg.eot_iter, rho=cfg.rho)
    x_adv = per_batch(atk, x, y, batch_size, f"apgd-{cfg.loss}")
    checks.check_zero_gradients(atk.zero_grad_points, len(x))
    return AttackOutput(x_adv)
