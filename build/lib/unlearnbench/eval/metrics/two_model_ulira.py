"""Two-model U-LiRA: one unlearned model against one retrained model, per-example Gaussians
from a ``ulira`` pool.

Positives: the forget examples under the evaluated (unlearned) model; negatives: the same
examples under the retrained reference; score: U-LiRA's per-example log likelihood ratio. This
is cheap but compares two *whole models*: the number mostly reflects which two models were drawn
(one retrain against other retrains of the same data gave AUC from 0.08 to 0.92 on digits).
Use ``ulira`` (the protocol over a pool of targets) for conclusions; this one is a diagnostic.
"""

from __future__ import annotations

from unlearnbench.eval.lira import usable
from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, record_attack, register_metric
from unlearnbench.eval.roc import attack_stats


@register_metric("two_model_ulira", direction="lower", needs=("ulira_pool", "reference_model"), gap=False,
                 keys="mia/two_model_ulira/forget/{auc,bal_acc,tpr_at_fpr_*,n_members,n_nonmembers}",
                 summary="U-LiRA scores of one unlearned vs one retrained model (diagnostic; depends on the pair drawn)")
def two_model_ulira(ctx: EvalContext) -> MetricOutput:
    pool = ctx.pool("ulira")
    pool.check_data(ctx.data)
    fit = pool.fit(getattr(ctx.options, "lira_variance", "auto"))
    mine, ref = ctx.preds("forget"), ctx.preds("forget", "reference")
    out = MetricOutput()
    if mine is None or ref is None:
        return out
    pos = pool.positions(mine.idx, "forget")
    ok = usable(fit, True)[pos]
    sub = fit.subset(pos[ok])
    st = attack_stats(sub.online(mine.phi.numpy()[ok]), sub.online(ref.phi.numpy()[ok]))
    record_attack(out, "mia/two_model_ulira/forget", st)
    return out
