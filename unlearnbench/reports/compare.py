"""Compare a report's summary with the previous report of the same experiment.

Each summary metric has a direction (``higher``/``lower`` is better, or ``reference``: best when
closest to the retrained model of the same forget spec) and a tolerance (see
``summary.SummaryMetric``). A change worse than the tolerance is a regression, better than it an
improvement. A (forget spec, method) row that the previous report had and this one lacks is a
regression too: usually its job now fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from unlearnbench.reports.summary import REFERENCE_ROWS, SummaryMetric, comparison_metrics

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
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta}


def _index(summary: dict) -> dict[tuple[str, str], dict]:
    return {(r["forget"], r["label"]): r for r in summary.get("rows", [])}


def _mean(row: dict | None, key: str) -> float | None:
    if row is None or key not in row["values"]:
        return None
    return float(row["values"][key]["mean"])


def _worse_by(metric: SummaryMetric, before: float, after: float) -> float:
    """How much worse ``after`` is than ``before`` (negative: better), in the metric's unit."""
    return after - before if metric.direction == "lower" else before - after


def _exceeds(metric: SummaryMetric, before: float, amount: float) -> bool:
    return amount > metric.abs_tol and amount > metric.rel_tol * abs(before)


def compare(current: dict, previous: dict, *, tolerance: float | None = None) -> list[Change]:
    """Regressions and improvements of ``current`` relative to ``previous`` (summary dicts).

    ``tolerance`` overrides the absolute tolerance of every percentage metric (points).
    """
    cur, prev = _index(current), _index(previous)
    keys = sorted({k for r in (*current.get("rows", []), *previous.get("rows", [])) for k in r["values"]})
    metrics = comparison_metrics(keys)
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
                ref = _reference_label(old)
                ref_before = _mean(prev.get((forget, ref)), m.key)
                ref_after = _mean(cur.get((forget, ref)), m.key)
                if ref_before is None or ref_after is None:
                    continue
                prev_dist, cur_dist = abs(before - ref_before), abs(after - ref_after)
                worse = cur_dist - prev_dist
                base = prev_dist
            else:
                worse = _worse_by(m, before, after)
                base = before
            if _exceeds(m, base, worse):
                status: Status = "regression"
            elif _exceeds(m, base, -worse):
                status = "improvement"
            else:
                continue
            changes.append(Change(forget, label, m.key, m.label, status, before, after, prev_dist, cur_dist))
    for key in cur.keys() - prev.keys():
        changes.append(Change(key[0], key[1], "", "", "new"))
    order = {"regression": 0, "missing": 1, "improvement": 2, "new": 3}
    changes.sort(key=lambda c: (order[c.status], c.forget, c.label, c.metric))
    return changes


def regressions(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.status in ("regression", "missing")]


def _reference_label(row: dict) -> str:
    """The Retrain row a method row is compared with: pruned rows have their own sparse Retrain
    (``retrain [prune=0.95]``, see eval/study.py); adversarial-retain rows share their prune level's."""
    prune = next((p for p in str(row.get("variant") or "").split(",") if p.startswith("prune=")), "")
    return f"retrain [{prune}]" if prune else "retrain"
