"""U-LiRA (Hayes et al., 2024): can a per-example attacker tell the unlearned model from the
model retrained without the forget set?

With a ``ulira`` shadow pool (unlearned / retrained pairs for the same forget set and method,
see ``eval.shadow``), every forget example gets a Gaussian over its logit-scaled confidence
under the shadows' unlearned models (IN) and one under their retrained models (OUT). The score
of a model on the example is the online likelihood ratio. Positives are the forget examples
under the evaluated (unlearned) model, negatives the same examples under the retrained
reference. ``bal_acc`` is cross-fitted (threshold chosen on one half of the examples, scored on the
other, see ``eval.crossfit``): about 0.5 means the attack cannot tell the two models apart
(it can fall below 0.5 by chance), 1.0 that every forget example gives it away.
"""

from __future__ import annotations

from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, register_metric
from unlearnbench.eval.roc import attack_stats


@register_metric("ulira", direction="lower", needs=("ulira_pool", "reference_model"),
                 keys="mia/ulira/forget/{auc,bal_acc,tpr_at_fpr_*}",
                 summary="U-LiRA: per-example attack unlearned vs retrained (0.5 = indistinguishable)")
def ulira(ctx: EvalContext) -> MetricOutput:
    pool = ctx.pool("ulira")
    pool.check_data(ctx.data)
    fit = pool.fit(getattr(ctx.options, "lira_variance", "auto"))
    mine, ref = ctx.preds("forget"), ctx.preds("forget", "reference")
    out = MetricOutput()
    if mine is None or ref is None:
        return out
    sub = fit.subset(pool.positions(mine.idx, "forget"))
    st = attack_stats(sub.online(mine.phi.numpy()), sub.online(ref.phi.numpy()))
    out.values.update({f"mia/ulira/forget/{k}": v for k, v in st.values().items()})
    out.curves["mia/ulira/forget"] = st.curve()
    return out
