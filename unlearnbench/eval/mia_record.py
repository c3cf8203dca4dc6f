"""How a membership attack's statistics are written into a metric's output.

Every attack records, under its own prefix (e.g. ``mia/lira_online/forget_test``):

- the statistics (``auc``, cross-fitted ``bal_acc``, ``tpr_at_fpr_<a>``);
- ``n_members`` and ``n_nonmembers``: how many points the numbers rest on;
- a TPR at an FPR below ``1 / n_nonmembers`` is **undefined**: with that few non-members the
  only ROC point at or below that FPR is FPR = 0, so the value would be "TPR at FPR 0" under
  another name. It is left out of the values (no number) and its reason is recorded.

Counts and reasons go to ``MetricOutput.counts`` / ``MetricOutput.undefined`` where the output
has them, otherwise the counts are values of their own (``<prefix>/n_members``).
"""

from __future__ import annotations

from typing import Any

from unlearnbench.eval.roc import AttackStats, fpr_key


def undefined_reason(fpr: float, n_nonmembers: int) -> str | None:
    """Why TPR at ``fpr`` is not measurable with ``n_nonmembers`` non-members (None if it is)."""
    if n_nonmembers <= 0:
        return "undefined: there are no non-members"
    if fpr < 1.0 / n_nonmembers - 1e-12:
        return f"undefined: FPR {fpr:g} is below 1/n_nonmembers = 1/{n_nonmembers}"
    return None


def defined_values(stats: AttackStats) -> tuple[dict[str, float], dict[str, str]]:
    """(the defined statistics, ``tpr_at_fpr_<a>`` -> reason for the undefined ones)."""
    values = dict(stats.values())
    why = {}
    for a in stats.tpr_at_fpr:
        reason = undefined_reason(a, stats.n_nonmembers)
        if reason is not None:
            values.pop(fpr_key(a), None)
            why[fpr_key(a)] = reason
    return values, why


def stats_summary(stats: AttackStats) -> dict[str, float]:
    """Defined statistics plus the two counts, e.g. for a pool manifest's hold-out results."""
    values, _ = defined_values(stats)
    return {**values, "n_members": stats.n_members, "n_nonmembers": stats.n_nonmembers}


def record_counts(out: Any, prefix: str, counts: dict[str, int]) -> None:
    target = getattr(out, "counts", None)
    target = out.values if target is None else target
    target.update({f"{prefix}/{k}": int(v) for k, v in counts.items()})


def record_mia(out: Any, prefix: str, stats: AttackStats, curve: bool = True) -> None:
    """Write ``stats`` into the metric output ``out`` under ``prefix`` (see the module doc)."""
    values, why = defined_values(stats)
    out.values.update({f"{prefix}/{k}": v for k, v in values.items()})
    record_counts(out, prefix, {"n_members": stats.n_members, "n_nonmembers": stats.n_nonmembers})
    undefined = getattr(out, "undefined", None)
    if undefined is not None:
        undefined.update({f"{prefix}/{k}": v for k, v in why.items()})
    if curve:
        out.curves[prefix] = stats.curve()
