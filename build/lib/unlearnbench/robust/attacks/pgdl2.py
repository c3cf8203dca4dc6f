"""PGD in the L2 ball (Madry et al. 2018)."""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput, default_alpha, per_batch
from unlearnbench.robust.threat import PGDConfig


@ATTACKS.register("pgdl2", summary="PGD-k in the L2 ball, random start; step 2.5*eps/steps",
                  norms=("L2",), config=PGDConfig, kind="gradient", paper="https://arxiv.org/abs/1706.06083")
def pgdl2(model, x, y, threat, cfg: PGDConfig, batch_size: int) -> AttackOutput:
    import torchattacks

    atk = torchattacks.PGDL2(model, eps=threat.eps, alpha=default_alpha(threat, cfg.steps, cfg.alpha), steps=cfg.steps,
                             random_start=cfg.random_start)
    return AttackOutput(per_batch(atk, x, y, batch_size, f"pgdl2-{cfg.steps}"))
