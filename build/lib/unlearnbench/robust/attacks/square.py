"""Square Attack (Andriushchenko et al. 2020), score-based black box, AutoAttack's schedule."""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput, per_batch
from unlearnbench.robust.threat import SquareConfig


@ATTACKS.register("square", summary="Square Attack (black box), 5000 queries, AutoAttack's p schedule",
                  norms=("Linf", "L2"), config=SquareConfig, kind="black-box", paper="https://arxiv.org/abs/1912.00049")
def square(model, x, y, threat, cfg: SquareConfig, batch_size: int) -> AttackOutput:
    from unlearnbench.robust.aa.square import Square

    atk = Square(model, norm=threat.norm, eps=threat.eps, n_queries=cfg.n_queries, n_restarts=cfg.n_restarts,
                 p_init=cfg.p_init, seed=cfg.seed, resc_schedule=cfg.resc_schedule)
    return AttackOutput(per_batch(atk, x, y, batch_size, "square"))
