"""PGD with a random start (Madry et al. 2018), Linf."""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput, default_alpha, per_batch
from unlearnbench.robust.threat import PGDConfig


@ATTACKS.register("pgd", summary="PGD-k, Linf, random start; step 2.5*eps/steps (default 10 steps)",
                  norms=("Linf",), config=PGDConfig, kind="gradient", paper="https://arxiv.org/abs/1706.06083")
def pgd(model, x, y, threat, cfg: PGDConfig, batch_size: int) -> AttackOutput:
    import torchattacks

    atk = torchattacks.PGD(model, eps=threat.eps, alpha=default_alpha(threat, cfg.steps, cfg.alpha), steps=cfg.steps,
                           random_start=cfg.random_start)
    return AttackOutput(per_batch(atk, x, y, batch_size, f"pgd-{cfg.steps}"))
