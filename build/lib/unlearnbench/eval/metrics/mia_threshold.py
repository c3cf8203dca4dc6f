"""Global-threshold membership attacks (Yeom et al. loss; Song & Mittal confidence, entropy,
modified entropy) reported as ROC AUC, cross-fitted balanced accuracy and TPR at 1 % / 0.1 % FPR.

Pairs (members vs non-members):

- ``forget_test``: forget set vs test set. For class-wise specs the non-members are the test
  images of the forgotten classes (``test_forgotten``), the only unseen images of those classes.
- ``retain_test``: retain set vs test set (``test_retained`` for class-wise specs).

Each attack also records ``n_members`` / ``n_nonmembers`` (``mia/<attack>/<pair>/n_members``
in ``Report.counts``); a TPR at an FPR below 1/n_nonmembers is undefined (``Report.undefined``),
not a number.

Scores are oriented so that higher means "member": -loss, p_y, -entropy, -modified entropy.
A model retrained without the forget set gives ``forget_test`` AUC about 0.5 on random
forgetting; the target is the retrained reference's value (direction ``reference``).
"""

from __future__ import annotations

from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, record_attack, register_metric
from unlearnbench.eval.roc import attack_stats

ATTACKS = {
    # name: (Predictions attribute, sign so that higher = member)
    "loss": ("loss", -1.0),
    "confidence": ("confidence", 1.0),
    "entropy": ("entropy", -1.0),
    "m_entropy": ("m_entropy", -1.0),
}


def pair_splits(ctx: EvalContext) -> dict[str, tuple[str, str]]:
    """Pair name -> (member split, non-member split)."""
    if ctx.has("classwise"):
        return {"forget_test": ("forget", "test_forgotten"), "retain_test": ("retain", "test_retained")}
    return {"forget_test": ("forget", "test"), "retain_test": ("retain", "test")}


@register_metric("mia_threshold", direction="reference",
                 keys="mia/{loss,confidence,entropy,m_entropy}/{forget_test,retain_test}/{auc,bal_acc,tpr_at_fpr_*}",
                 summary="threshold attacks (loss, confidence, entropy, m-entropy): AUC, balanced acc, TPR at low FPR")
def mia_threshold(ctx: EvalContext) -> MetricOutput:
    out = MetricOutput()
    for pair, (mem_split, non_split) in pair_splits(ctx).items():
        mem, non = ctx.preds(mem_split), ctx.preds(non_split)
        if mem is None or non is None:
            continue
        for attack, (attr, sign) in ATTACKS.items():
            st = attack_stats(sign * getattr(mem, attr).numpy(), sign * getattr(non, attr).numpy())
            record_attack(out, f"mia/{attack}/{pair}", st)
    return out
