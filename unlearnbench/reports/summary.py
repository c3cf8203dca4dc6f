"""The papers' summary table: mean ± std over seeds of UA, RA, TA, MIA-Efficacy, robust accuracy,
Avg. Gap and RTE per (forget spec, method), plus every other scalar metric for the full table.

The std is the sample standard deviation (ddof=1), as in the SalUn / Unlearn-Sparse tables; with a
single seed there is no std and the cell shows the value alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

Direction = Literal["higher", "lower", "reference"]


@dataclass(frozen=True)
class SummaryMetric:
    """A summary column: MLflow key, header, which way is better, and the regression tolerance.

    ``reference`` metrics (UA, MIA-Efficacy) are best when closest to the retrained model's value.
    A change counts as a regression only when it is worse by more than ``abs_tol`` *and* by more
    than ``rel_tol`` × the previous value (run time is noisy, accuracies are in points).
    """

    key: str
    label: str
    direction: Direction
    abs_tol: float = 1.0
    rel_tol: float = 0.0
    unit: str = "%"


UA = SummaryMetric("ua", "UA", "reference")
RA = SummaryMetric("retain_acc", "RA", "higher")
TA = SummaryMetric("test_acc", "TA", "higher")
# Class-wise forgetting: the papers' TA is the test accuracy without the forgotten class(es).
TA_RETAINED = SummaryMetric("test_retained_acc", "TA", "higher")
MIA = SummaryMetric("mia_efficacy", "MIA-Efficacy", "reference")
CORE_METRICS: tuple[SummaryMetric, ...] = (UA, RA, TA, TA_RETAINED, MIA)
TAIL_METRICS: tuple[SummaryMetric, ...] = (
    SummaryMetric("avg_gap", "Avg. Gap", "lower"),
    # Time is noisy: only a slow-down by more than half and by more than a second is flagged.
    SummaryMetric("rte_seconds", "RTE (s)", "lower", abs_tol=1.0, rel_tol=0.5, unit="s"),
)
_ROBUST = re.compile(r"^robust/(?P<split>[^/]+)/(?P<attack>[^/]+)$")
_CLEAN = re.compile(r"^clean/(?P<split>[^/]+)$")
# Rows that are references, not methods under test, in the order tables show them first.
REFERENCE_ROWS = ("retrain", "original")


def robust_metric(key: str) -> SummaryMetric | None:
    m = _ROBUST.match(key)
    if not m:
        return None
    return SummaryMetric(key, f"Robust {m['split']} {m['attack']}", "higher")


def summary_metrics(columns: list[str] | pd.Index) -> list[SummaryMetric]:
    """The table columns for metric keys ``columns`` (one forget spec): UA, RA, TA (the retained
    classes' test accuracy when present, as in the papers' class-wise tables), MIA-Efficacy,
    robust accuracies, Avg. Gap, RTE."""
    present = set(columns)
    ta = TA_RETAINED if TA_RETAINED.key in present else TA
    robust = _robust(present)
    return [m for m in (UA, RA, ta, MIA, *robust, *TAIL_METRICS) if m.key in present]


def comparison_metrics(columns: list[str] | pd.Index) -> list[SummaryMetric]:
    """Every summary metric present, both test accuracies included (for regression checks)."""
    present = set(columns)
    return [m for m in (*CORE_METRICS, *_robust(present), *TAIL_METRICS) if m.key in present]


_SPLIT_ORDER = {"test": 0, "retain": 1, "forget": 2}


def _robust(present: set[str]) -> list[SummaryMetric]:
    """Robust-accuracy columns, test split first (what the papers report), then retain, forget."""
    keys = [c for c in present if _ROBUST.match(c)]
    keys.sort(key=lambda k: (_SPLIT_ORDER.get(k.split("/")[1], 9), k))
    return [robust_metric(k) for k in keys]  # type: ignore[misc]


def direction_of(key: str) -> Direction:
    for m in (*CORE_METRICS, *TAIL_METRICS):
        if m.key == key:
            return m.direction
    if _ROBUST.match(key) or _CLEAN.match(key) or key.endswith("_acc"):
        return "higher"
    if key.startswith("gap/") or key.endswith("_seconds"):
        return "lower"
    return "reference"


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float | None  # None with a single seed
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        arr = np.asarray(values, dtype=np.float64)
        return cls(float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else None, len(arr))


def fmt(stat: Stat | dict | None, digits: int = 2) -> str:
    """``98.12 ± 0.35``; a single seed shows the value alone; a missing metric shows ``–``."""
    if stat is None:
        return "–"
    if isinstance(stat, dict):
        stat = Stat(stat["mean"], stat["std"], stat["n"])
    if not math.isfinite(stat.mean):
        return "–"
    text = f"{stat.mean:.{digits}f}"
    if stat.std is not None:
        text += f" ± {stat.std:.{digits}f}"
    return text


def _row_order(label: str, method: str) -> tuple[int, str]:
    return (REFERENCE_ROWS.index(method) if method in REFERENCE_ROWS else len(REFERENCE_ROWS), label)


def summarize(runs: pd.DataFrame, metric_columns: list[str]) -> list[dict[str, Any]]:
    """One entry per (forget spec, method label) with a Stat over seeds for every metric.

    Returns JSON-ready dicts: ``{"forget", "method", "label", "variant", "kind", "seeds",
    "values": {key: {"mean", "std", "n"}}}``, references (retrain, original) first per spec.
    """
    rows: list[dict[str, Any]] = []
    if runs is None or not len(runs):
        return rows
    for (forget, label), group in runs.groupby(["forget", "label"], sort=False, dropna=False):
        values: dict[str, dict] = {}
        for key in metric_columns:
            if key not in group:
                continue
            vals = [float(v) for v in group[key].tolist() if v is not None and not pd.isna(v)]
            if vals:
                values[key] = Stat.of(vals).to_dict()
        seeds = sorted(int(s) for s in group["seed"].tolist() if s is not None and not pd.isna(s))
        first = group.iloc[0]
        rows.append({
            "forget": str(forget), "label": str(label), "method": str(first["method"]),
            "variant": str(first["variant"] or ""), "kind": str(first["kind"]), "seeds": seeds,
            "values": values,
        })
    specs = list(dict.fromkeys(r["forget"] for r in rows))
    rows.sort(key=lambda r: (specs.index(r["forget"]), *_row_order(r["label"], r["method"])))
    return rows


def markdown_table(rows: list[dict[str, Any]], metrics: list[SummaryMetric]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (one forget spec) over ``metrics``."""
    header = ["Method", *[m.label for m in metrics], "Seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for r in rows:
        cells = [r["label"], *[fmt(r["values"].get(m.key)) for m in metrics], str(len(r["seeds"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
