"""torchattacks' own ``AutoAttack``: NOT the standard AutoAttack (weaker), offered for speed.

It runs APGD, APGD-T and FAB with 10 iterations instead of 100 and Square with a rescaled
schedule. Its numbers can overestimate robustness; never report them as "AutoAttack".
"""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput, per_batch
from unlearnbench.robust.threat import FastAutoAttackConfig


@ATTACKS.register("autoattack-fast", summary="torchattacks' AutoAttack (10-step, WEAKER than standard; not comparable)",
                  norms=("Linf", "L2"), config=FastAutoAttackConfig, kind="ensemble (weaker)",
                  paper="https://github.com/Harry24k/adversarial-attacks-pytorch")
def autoattack_fast(model, x, y, threat, cfg: FastAutoAttackConfig, batch_size: int) -> AttackOutput:
    import torchattacks

    # n_classes only sets the number of targets (n_classes - 1); 10 keeps AutoAttack's top-9 on
    # CIFAR-100 instead of 99 targets.
    n_classes = min(10, getattr(model, "num_classes", 10))
    atk = torchattacks.AutoAttack(model, norm=threat.norm, eps=threat.eps, version=cfg.version, n_classes=n_classes,
                                  seed=cfg.seed)
    return AttackOutput(per_batch(atk, x, y, batch_size, "autoattack-fast"))
