"""DeepFool (Moosavi-Dezfooli et al. 2016), L2 minimal perturbation; slow (per-image Jacobians)."""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput, per_batch
from unlearnbench.robust.threat import DeepFoolConfig


@ATTACKS.register("deepfool", summary="DeepFool L2 minimal perturbation (per image, slow); beyond eps counts as robust",
                  norms=("L2", "Linf"), config=DeepFoolConfig, kind="minimum-norm", paper="https://arxiv.org/abs/1511.04599")
def deepfool(model, x, y, threat, cfg: DeepFoolConfig, batch_size: int) -> AttackOutput:
    import torchattacks

    atk = torchattacks.DeepFool(model, steps=cfg.steps, overshoot=cfg.overshoot)
    return AttackOutput(per_batch(atk, x, y, batch_size, f"deepfool-{cfg.steps}"))
