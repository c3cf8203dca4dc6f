"""Standard AutoAttack (and its ``rand`` version), faithful to the original; see ``robust.aa``."""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput
from unlearnbench.robust.threat import AutoAttackConfig, RandAutoAttackConfig

PAPER = "https://arxiv.org/abs/2003.01690"


def _run(model, x, y, threat, cfg: AutoAttackConfig, batch_size: int) -> AttackOutput:
    from unlearnbench.robust.aa import run_autoattack

    out = run_autoattack(model, x, y, threat, cfg)  # chunks of cfg.chunk, not batch_size
    return AttackOutput(out.x_adv, out.stages, out.robust, {"stage_seconds": out.stage_seconds, "version": cfg.version})


@ATTACKS.register("autoattack", summary="standard AutoAttack: APGD-CE, APGD-T(9x100), FAB-T(9x100), Square(5000)",
                  norms=("Linf", "L2"), config=AutoAttackConfig, kind="ensemble", paper=PAPER)
def autoattack(model, x, y, threat, cfg: AutoAttackConfig, batch_size: int) -> AttackOutput:
    return _run(model, x, y, threat, cfg, batch_size)


@ATTACKS.register("autoattack-rand", summary="AutoAttack for randomised models: APGD-CE + APGD-DLR with EOT 20",
                  norms=("Linf", "L2"), config=RandAutoAttackConfig, kind="ensemble", paper=PAPER)
def autoattack_rand(model, x, y, threat, cfg: RandAutoAttackConfig, batch_size: int) -> AttackOutput:
    return _run(model, x, y, threat, cfg, batch_size)
