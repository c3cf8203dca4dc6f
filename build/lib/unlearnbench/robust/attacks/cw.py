"""Carlini–Wagner L2 (torchattacks' single-c version); a minimum-norm attack.

Its adversarial examples are not bounded by eps: ``run_attack`` resets those beyond eps to the
clean image, so the robust accuracy is "no CW example within eps".
"""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput, per_batch
from unlearnbench.robust.threat import CWConfig


@ATTACKS.register("cw", summary="Carlini-Wagner L2 (single c, no binary search); examples beyond eps count as robust",
                  norms=("L2", "Linf"), config=CWConfig, kind="minimum-norm", paper="https://arxiv.org/abs/1608.04644")
def cw(model, x, y, threat, cfg: CWConfig, batch_size: int) -> AttackOutput:
    import torchattacks

    atk = torchattacks.CW(model, c=cfg.c, kappa=cfg.kappa, steps=cfg.steps, lr=cfg.lr)
    return AttackOutput(per_batch(atk, x, y, batch_size, f"cw-{cfg.steps}"))
