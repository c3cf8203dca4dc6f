"""Gap to the retrained reference, per value and averaged as in the SalUn / Unlearn-Sparse papers.

``gap/<key>`` = |value - reference value| for every value of a metric registered with
``gap=True`` that the reference also has (same metric, same data, same evaluator).

``avg_gap`` ("Avg. Gap" in SalUn, "Disparity Ave." in Unlearn-Sparse) is the mean of the four
absolute gaps on UA, RA, TA and MIA-Efficacy (RTE excluded):

    avg_gap = (|UA - UA_r| + |RA - RA_r| + |TA - TA_r| + |MIA - MIA_r|) / 4

with RA = ``retain_acc``, TA = ``test_acc`` (``test_retained_acc`` for class-wise specs, the
papers' class-wise TA) and MIA = ``mia_efficacy``. Check: SalUn Table 1, 10 % random
forgetting, SalUn row: (2.39 + 0.38 + 0.33 + 1.51) / 4 = 1.15.
"""

from __future__ import annotations

from collections.abc import Mapping

from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, metric_spec, register_metric
from unlearnbench.eval.paired import discordant_counts


def gap_values(values: Mapping[str, float], reference: Mapping[str, float], keys) -> dict[str, float]:
    return {f"gap/{k}": abs(float(values[k]) - float(reference[k])) for k in keys if k in values and k in reference}


def average_gap(values: Mapping[str, float], reference: Mapping[str, float], classwise: bool = False) -> float:
    """The papers' average gap over UA, RA, TA and MIA-Efficacy."""
    ta = "test_retained_acc" if classwise else "test_acc"
    keys = ("ua", "retain_acc", ta, "mia_efficacy")
    missing = [k for k in keys if k not in values or k not in reference]
    if missing:
        raise KeyError(f"average gap needs {', '.join(missing)} for the model and the reference")
    return sum(abs(float(values[k]) - float(reference[k])) for k in keys) / len(keys)


@register_metric("gap", direction="lower", gap=False, needs=("reference",), stage=2, keys="gap/<key>",
                 summary="|value - retrained reference value| for every gap-able value")
def gap(ctx: EvalContext) -> MetricOutput:
    keys = [k for k, m in ctx.sources.items() if metric_spec(m).gap]
    # Where both models' per-example outcomes on the same images are known, the discordant counts
    # make the gap's interval paired (Report.gap_interval, eval.paired).
    mine = {k: o for k, o in ctx.outcomes.items() if k in keys}
    return MetricOutput(values=gap_values(ctx.values, ctx.reference_values or {}, keys),
                        counts=discordant_counts(mine, ctx.reference_outcomes))


@register_metric("avg_gap", direction="lower", gap=False, needs=("reference",), stage=3,
                 requires=("ua", "retain_acc", "test_acc", "test_retained_acc", "mia_efficacy"),
                 summary="papers' Avg. Gap: mean |metric - retrain| over UA, RA, TA, MIA-Efficacy")
def avg_gap(ctx: EvalContext) -> dict[str, float]:
    try:
        return {"avg_gap": average_gap(ctx.values, ctx.reference_values or {}, ctx.has("classwise"))}
    except KeyError:
        return {}
