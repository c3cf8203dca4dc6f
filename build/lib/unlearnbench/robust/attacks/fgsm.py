"""FGSM (Goodfellow et al. 2015): one signed-gradient step of size eps."""

from __future__ import annotations

from unlearnbench.robust.attacks import ATTACKS, AttackOutput, per_batch
from unlearnbench.robust.threat import FGSMConfig


@ATTACKS.register("fgsm", summary="FGSM: one signed-gradient step of size eps (weak; a sanity baseline)",
                  norms=("Linf",), config=FGSMConfig, kind="gradient", paper="https://arxiv.org/abs/1412.6572")
def fgsm(model, x, y, threat, cfg: FGSMConfig, batch_size: int) -> AttackOutput:
    import torchattacks

    atk = torchattacks.FGSM(model, eps=threat.eps)
    return AttackOutput(per_batch(atk, x, y, batch_size, "fgsm"))
