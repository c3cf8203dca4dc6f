"""Clean and adversarial accuracy per split under the evaluator's threat model.

Calls ``unlearnbench.robust.evaluate.robust_accuracy`` (imported lazily: only this opt-in
metric needs the robust package) for every requested attack on forget / retain / test.
``robust_n`` points per split are drawn with the evaluator's seed, so the model and its
reference are attacked on the same points. ``clean/<split>`` is the clean accuracy on those
points (reported by the first attack); a clean mistake counts as non-robust. ``n/clean/<split>``
and ``n/robust/<split>/<attack>`` (``Report.counts``) record how many points were attacked.

Class-wise specs: like TA (``test_retained_acc``), robustness on test images is measured on
``test_retained`` (the classes the model must keep), and ``test_forgotten`` is reported
separately, so "did unlearning cost robustness?" is not mixed up with the forgetting itself.
"""

from __future__ import annotations

from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, register_metric
from unlearnbench.eval.paired import Outcomes

ROBUST_SPLITS = ("forget", "retain", "test")
CLASSWISE_SPLITS = ("forget", "retain", "test_retained", "test_forgotten")


def robust_splits(ctx: EvalContext) -> tuple[str, ...]:
    """The splits attacked: test is split into retained / forgotten classes for class-wise specs."""
    return CLASSWISE_SPLITS if ctx.has("classwise") else ROBUST_SPLITS


@register_metric("robustness", direction="higher", needs=("robustness",),
                 keys="clean/<split>, robust/<split>/<attack>",
                 summary="clean and robust accuracy (%) per split under the threat model (opt-in)")
def robustness(ctx: EvalContext) -> MetricOutput:
    from unlearnbench.robust.evaluate import robust_accuracy

    opts = ctx.options
    out = MetricOutput()
    for split in robust_splits(ctx):
        tset = getattr(ctx.data, split)
        if tset is None or len(tset) == 0:
            continue
        for attack in opts.robustness:
            res = robust_accuracy(ctx.model, tset, attack, ctx.threat, n=opts.robust_n, seed=opts.seed)
            if f"clean/{split}" not in out.values:
                out.values[f"clean/{split}"] = float(res.clean_acc)
                out.counts[f"n/clean/{split}"] = int(res.n)
                if getattr(res, "clean", None) is not None and getattr(res, "idx", None) is not None:
                    out.outcomes[f"clean/{split}"] = Outcomes.of(res.clean, res.idx)
            out.values[f"robust/{split}/{attack}"] = float(res.robust_acc)
            out.counts[f"n/robust/{split}/{attack}"] = int(res.n)
            # The same points for the model and its reference (same seed): paired gaps.
            if getattr(res, "robust", None) is not None and getattr(res, "idx", None) is not None:
                out.outcomes[f"robust/{split}/{attack}"] = Outcomes.of(res.robust, res.idx)
    return out
