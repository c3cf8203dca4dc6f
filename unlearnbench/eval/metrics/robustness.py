"""Clean and adversarial accuracy per split under the evaluator's threat model.

Calls ``unlearnbench.robust.evaluate.robust_accuracy`` (imported lazily: only this opt-in
metric needs the robust package) for every requested attack on forget / retain / test.
``robust_n`` points per split are drawn with the evaluator's seed, so the model and its
reference are attacked on the same points. ``clean/<split>`` is the clean accuracy on those
points (reported by the first attack); a clean mistake counts as non-robust.
"""

from __future__ import annotations

from unlearnbench.eval.metrics.base import EvalContext, register_metric

ROBUST_SPLITS = ("forget", "retain", "test")


@register_metric("robustness", direction="higher", needs=("robustness",),
                 keys="clean/<split>, robust/<split>/<attack>",
                 summary="clean and robust accuracy (%) per split under the threat model (opt-in)")
def robustness(ctx: EvalContext) -> dict[str, float]:
    from unlearnbench.robust.evaluate import robust_accuracy

    opts = ctx.options
    out: dict[str, float] = {}
    for split in ROBUST_SPLITS:
        tset = getattr(ctx.data, split)
        if tset is None or len(tset) == 0:
            continue
        for attack in opts.robustness:
            res = robust_accuracy(ctx.model, tset, attack, ctx.threat, n=opts.robust_n, seed=opts.seed)
            out.setdefault(f"clean/{split}", float(res.clean_acc))
            out[f"robust/{split}/{attack}"] = float(res.robust_acc)
    return out
