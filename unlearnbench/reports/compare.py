"""Compare a report's summary with the previous report of the same experiment.

Each summary metric has a direction (``higher``/``lower`` is better, or ``reference``: best when
closest to the retrained model of the same forget spec). Two gates:

- **intervals** (default): a change is a regression when it is worse beyond the noise: the 95 %
  interval of (now - before) excludes 0 on the bad side. The interval comes from both cells'
  Welch's t from mean / std / seeds when both reports have two or more seeds, with Newcombe from
  the Wilson intervals on the n images of one run added in quadrature (the evaluation-set noise,
  which more seeds on the same images do not shrink), else MOVER from both
  cells' ``ci`` (``summary.Stat``; Newcombe for single seeds of proportions). For ``reference`` metrics the distance to retrain must grow by
  more than the root sum of squares of the four half-widths (method and retrain, before and now).
  Run time, and cells without any interval (a single seed of a value with no n, summaries from
  before intervals existed), fall back to the fixed tolerance;
- **tolerance** (``tolerance=`` given, ``report --tolerance``): the fixed rule for every metric: worse
  by more than ``abs_tol`` points (and by more than ``rel_tol`` × the previous value).

Better beyond the same bound is an improvement. A (forget spec, method) row that the previous
report had and this one lacks is a regression too: usually its job now fails.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from unlearnbench.eval import intervals as iv
from unlearnbench.reports.summary import (
    REFERENCE_ROWS,
    Stat,
    SummaryMetric,
    add_in_quadrature,
    comparison_metrics,
    reference_label,
)

Status = Literal["regression", "improvement", "missing", "new"]


@dataclass(frozen=True)
class Change:
    forget: str
    label: str
    metric: str  # MLflow key ("" for a whole row)
    metric_label: str
    status: Status
    previous: float | None = None
    current: float | None = None
    # For reference metrics: the distance to the retrained model before and now.
    previous_distance: float | None = None
    current_distance: float | None = None
    # The bound the change exceeded: "interval" (the 95 % noise) or "tolerance" (fixed points).
    rule: str = "tolerance"
    noise: float | None = None  # half-width of the change's 95 % interval (rule "interval")

    @property
    def delta(self) -> float | None:
        if self.previous is None or self.current is None:
            return None
        return self.current - self.previous

    def describe(self) -> str:
        where = f"{self.label} on {self.forget}"
        if self.status == "missing":
            return f"{where}: no finished run any more (previously reported)"
        if self.status == "new":
            return f"{where}: new in this report"
        text = f"{where}: {self.metric_label} ({self.metric}) {self.previous:.2f} → {self.current:.2f}"
        if self.previous_distance is not None and self.current_distance is not None:
            text += f" (distance to retrain {self.previous_distance:.2f} → {self.current_distance:.2f})"
        if self.rule == "interval" and self.noise is not None:
            text += f", beyond the 95 % noise ±{self.noise:.2f}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta}


def _index(summary: dict) -> dict[tuple[str, str], dict]:
    return {(r["forget"], r["label"]): r for r in summary.get("rows", [])}


def _mean(row: dict | None, key: str) -> float | None:
    if row is None or key not in row["values"]:
        return None
    return float(row["values"][key]["mean"])


def _stat(row: dict | None, key: str) -> Stat | None:
    if row is None or key not in row["values"]:
        return None
    return Stat.from_dict(row["values"][key])


def _half(stat: Stat | None) -> float | None:
    return None if stat is None else iv.half_width(stat.mean, stat.noise)


def change_interval(before: Stat, after: Stat) -> tuple[float, float] | None:
    """95 % interval of ``after.mean - before.mean``: Welch from mean / std / seeds when both have
    two or more seeds, plus (in quadrature) Newcombe from both cells' Wilson intervals on one
    run's n images (the evaluation-set noise); MOVER from the cells' ``ci`` otherwise."""
    if after.std is not None and before.std is not None and after.n > 1 and before.n > 1:
        welch = iv.welch_from_stats(after.mean, after.std, after.n, before.mean, before.std, before.n)
        images = iv.mover(after.mean, after.images, before.mean, before.images)
        if welch is None or images is None:
            return welch or images
        # The spread over seeds and the evaluation-set noise (each report's seeds all scored on the
        # same images, so it does not shrink with seeds) are independent: add them in quadrature.
        return add_in_quadrature(after.mean - before.mean, welch, images)
    return iv.mover(after.mean, after.noise, before.mean, before.noise)


def _worse_by(metric: SummaryMetric, before: float, after: float) -> float:
    """How much worse ``after`` is than ``before`` (negative: better), in the metric's unit."""
    return after - before if metric.direction == "lower" else before - after


def _exceeds(metric: SummaryMetric, before: float, amount: float) -> bool:
    return amount > metric.abs_tol and amount > metric.rel_tol * abs(before)


def compare(current: dict, previous: dict, *, tolerance: float | None = None) -> list[Change]:
    """Regressions and improvements of ``current`` relative to ``previous`` (summary dicts).

    Without ``tolerance`` the interval gate decides (see the module docstring); ``tolerance``
    switches to the fixed rule and overrides the absolute tolerance of every percentage metric.
    """
    cur, prev = _index(current), _index(previous)
    keys = sorted({k for r in (*current.get("rows", []), *previous.get("rows", [])) for k in r["values"]})
    metrics = comparison_metrics(keys)
    use_intervals = tolerance is None
    if tolerance is not None:
        metrics = [replace(m, abs_tol=tolerance) if m.unit == "%" else m for m in metrics]
    changes: list[Change] = []
    for (forget, label), old in prev.items():
        new = cur.get((forget, label))
        if new is None:
            changes.append(Change(forget, label, "", "", "missing"))
            continue
        is_reference_row = old["method"] in REFERENCE_ROWS
        for m in metrics:
            before, after = _mean(old, m.key), _mean(new, m.key)
            if before is None or after is None:
                continue
            prev_dist = cur_dist = None
            if m.direction == "reference":
                if is_reference_row:
                    continue  # a reference is not judged by its distance to itself
                ref_before = _mean(prev.get((forget, reference_label(old))), m.key)
                ref_after = _mean(cur.get((forget, reference_label(old))), m.key)
                if ref_before is None or ref_after is None:
                    continue
                prev_dist, cur_dist = abs(before - ref_before), abs(after - ref_after)
                worse = cur_dist - prev_dist
                base = prev_dist
                halves = [_half(_stat(old, m.key)), _half(_stat(new, m.key)),
                          _half(_stat(prev.get((forget, reference_label(old))), m.key)),
                          _half(_stat(cur.get((forget, reference_label(old))), m.key))]
                noise = math.sqrt(sum(h * h for h in halves)) if all(h is not None for h in halves) else None
                bounds = None if noise is None else (worse - noise, worse + noise)
            else:
                worse = _worse_by(m, before, after)
                base = before
                bounds = change_interval(_stat(old, m.key), _stat(new, m.key))  # type: ignore[arg-type]
                if bounds is not None:
                    # (after - before) -> how much worse, in the metric's direction
                    bounds = (bounds[0], bounds[1]) if m.direction == "lower" else (-bounds[1], -bounds[0])
                noise = None if bounds is None else (bounds[1] - bounds[0]) / 2
            if use_intervals and m.unit == "%" and bounds is not None:
                rule = "interval"
                regressed, improved = bounds[0] > 0, bounds[1] < 0
            else:
                rule = "tolerance"
                regressed, improved = _exceeds(m, base, worse), _exceeds(m, base, -worse)
            if regressed:
                status: Status = "regression"
            elif improved:
                status = "improvement"
            else:
                continue
            changes.append(Change(forget, label, m.key, m.label, status, before, after, prev_dist, cur_dist,
                                  rule, noise if rule == "interval" else None))
    for key in cur.keys() - prev.keys():
        changes.append(Change(key[0], key[1], "", "", "new"))
    order = {"regression": 0, "missing": 1, "improvement": 2, "new": 3}
    changes.sort(key=lambda c: (order[c.status], c.forget, c.label, c.metric))
    return changes


def regressions(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.status in ("regression", "missing")]
