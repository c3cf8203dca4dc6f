"""FAB (Croce & Hein 2020), minimum-norm; targeted over the top-9 classes by default (FAB-T)."""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput, per_batch
from unlearnbench.robust.threat import FABConfig


@ATTACKS.register("fab", summary="FAB-T (targeted, top-9 classes) or untargeted FAB; 100 iterations",
                  norms=("Linf", "L2"), config=FABConfig, kind="minimum-norm", paper="https://arxiv.org/abs/1907.02044")
def fab(model, x, y, threat, cfg: FABConfig, batch_size: int) -> AttackOutput:
    import torchattacks

    from unlearnbench.robust.aa.fab import FABT

    n_targets = min(cfg.n_target_classes, max(1, getattr(model, "num_classes", 10) - 1))
    common = dict(norm=threat.norm, eps=threat.eps, steps=cfg.steps, n_restarts=cfg.n_restarts, alpha_max=cfg.alpha_max,
                  eta=cfg.eta, beta=cfg.beta, seed=cfg.seed)
    if cfg.targeted:  # FABT falls back to torchattacks' loop unless n_restarts == 1
        atk = FABT(model, n_target_classes=n_targets, **common)
    else:
        atk = torchattacks.FAB(model, multi_targeted=False, n_classes=n_targets + 1, **common)
    return AttackOutput(per_batch(atk, x, y, batch_size, "fab-t" if cfg.targeted else "fab"))
