"""The papers' summary table: mean ± std over seeds of UA, RA, TA, MIA-Efficacy, robust accuracy,
Avg. Gap and RTE per (forget spec, method), plus every other scalar metric for the full table.

The std is the sample standard deviation (ddof=1), as in the SalUn / Unlearn-Sparse tables; with a
single seed there is no std and the cell shows the value alone.

Uncertainty (``eval.intervals``), per cell:

- ``ci``: with two or more seeds, the Student-t 95 % interval of the mean over seeds combined
  with the evaluation-set noise when the value is a proportion with a known n (``t+images``):
  every seed is scored on the *same* n images, so the spread over seeds says nothing about
  which images happened to be in the test set; that noise does not shrink with more seeds. The
  two are independent sources of error and add in quadrature: each side's half-width is
  sqrt(t half-width² + Wilson half-width on n²), the Wilson interval of the mean on the n
  images of one run (``images``). Wilson on n is exact when the seeds agree on every image and
  an upper bound otherwise. (The earlier floor, the Wilson interval on n × seeds, counted the
  same images once per seed as if they were new: up to sqrt(seeds) too narrow.) With one seed,
  the Wilson interval of that run's proportion on its ``n_points`` (``wilson``; ``auc``:
  Hanley-McNeil for an attack's AUC), from the ``n/<key>`` counts each run logs; none for values
  without a known n (Avg. Gap, RTE of one seed);
- ``vs_retrain[key]`` on every non-reference row: the difference to the ``retrain`` row of the
  same spec and its 95 % interval (``gap_interval``), ``paired`` when each run's discordant
  counts against its seed's retrain were logged (``n/<key>/model_only`` / ``reference_only``,
  ``eval.paired``), ``beyond_noise`` when that interval excludes 0.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from unlearnbench.eval import intervals as iv
from unlearnbench.eval.report import proportion_n, value_interval

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


# Class-wise specs attack test_retained (TA's images) and test_forgotten instead of test.
_SPLIT_ORDER = {"test": 0, "test_retained": 0, "retain": 1, "forget": 2, "test_forgotten": 3}


def _robust(present: set[str]) -> list[SummaryMetric]:
    """Robust-accuracy columns, test split first (what the papers report), then retain, forget."""
    keys = [c for c in present if _ROBUST.match(c)]
    keys.sort(key=lambda k: (_SPLIT_ORDER.get(k.split("/")[1], 9), k))
    return [robust_metric(k) for k in keys]  # type: ignore[misc]


def valid_range(key: str) -> tuple[float, float]:
    """The values ``key`` can take: run times, counts and absolute gaps are ≥ 0, accuracies and
    MIA-Efficacy lie in [0, 100], an AUC in [0, 1]; anything else is unbounded."""
    if key.endswith("/auc"):
        return (0.0, 1.0)
    if key.endswith("_seconds") or key.startswith(("time/", "gap/")) or key == "avg_gap" or is_count(key):
        return (0.0, math.inf)
    if key.endswith("_acc") or key in ("ua", "mia_efficacy") or _ROBUST.match(key) or _CLEAN.match(key):
        return (0.0, 100.0)
    return (-math.inf, math.inf)


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
    n: int  # seeds
    ci: tuple[float, float] | None = None  # 95 %: t over seeds, or Wilson on n_points for one seed
    ci_method: str | None = None  # "t" | "wilson" | "auc"
    n_points: int | None = None  # points each run's value rests on (a proportion's n)
    images: tuple[float, float] | None = None  # Wilson of the mean on the n images one run is scored on

    @property
    def noise(self) -> tuple[float, float] | None:
        """The interval comparisons use (the ``ci``)."""
        return self.ci

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n, "ci": None if self.ci is None else list(self.ci),
                "ci_method": self.ci_method, "n_points": self.n_points,
                "images": None if self.images is None else list(self.images)}

    @classmethod
    def of(cls, values: list[float], key: str = "", counts: dict[str, float] | None = None) -> Stat:
        arr = np.asarray(values, dtype=np.float64)
        mean = float(arr.mean())
        counts = counts or {}
        pn = proportion_n(key, counts) if key else None
        n_points = None if pn is None else pn[0]
        if len(arr) > 1:
            ci, method = iv.t_interval(arr.tolist()), "t"
        else:
            ci = value_interval(key, mean, counts) if key else None
            method = None if ci is None else ("wilson" if pn is not None else "auc")
        images = None
        if pn is not None:
            n, scale = pn
            # The same n images for every seed: their noise is Wilson on n, not on n x seeds.
            w = iv.wilson(mean / scale, n)
            images = None if w is None else (w[0] * scale, w[1] * scale)
        if images is not None and ci is not None and len(arr) > 1:
            ci, method = add_in_quadrature(mean, ci, images), "t+images"
        if pn is not None and ci is not None:
            ci = (max(ci[0], 0.0), min(ci[1], pn[1]))  # a proportion's mean stays within [0, 100 %]
        if ci is not None and key:
            lo, hi = valid_range(key)
            ci = (min(max(ci[0], lo), hi), max(min(ci[1], hi), lo))  # a run time's interval never goes below 0 s
        return cls(mean, float(arr.std(ddof=1)) if len(arr) > 1 else None, len(arr), ci, method, n_points, images)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stat:
        """From a summary JSON cell (older summaries have only mean, std, n)."""
        # Older summaries have "pooled" (Wilson on n x seeds, too narrow) instead of "images": not used.
        ci, images = d.get("ci"), d.get("images")
        return cls(d["mean"], d.get("std"), d.get("n", 1), None if ci is None else tuple(ci), d.get("ci_method"),
                   d.get("n_points"), None if images is None else tuple(images))


def add_in_quadrature(centre: float, a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The interval of ``centre`` whose half-width on each side is the root sum of squares of
    ``a``'s and ``b``'s (two independent sources of error around the same estimate)."""
    lo = math.hypot(centre - a[0], centre - b[0])
    hi = math.hypot(a[1] - centre, b[1] - centre)
    return centre - lo, centre + hi


def fmt(stat: Stat | dict | None, digits: int = 2, *, ci: bool = False) -> str:
    """``98.12 ± 0.35``; a single seed shows the value alone; a missing metric shows ``–``.
    ``ci=True`` appends the 95 % interval: ``98.12 ± 0.35 [97.25, 98.99]``."""
    if stat is None:
        return "–"
    if isinstance(stat, dict):
        stat = Stat.from_dict(stat)
    if not math.isfinite(stat.mean):
        return "–"
    text = f"{stat.mean:.{digits}f}"
    if stat.std is not None:
        text += f" ± {stat.std:.{digits}f}"
    if ci and stat.ci is not None:
        text += " " + iv.fmt_interval(stat.ci, digits)
    return text


def fmt_ci(stat: Stat | dict | None, digits: int = 2) -> str:
    """The cell's 95 % interval alone (``[97.25, 98.99]``), or ``""``."""
    if stat is None:
        return ""
    if isinstance(stat, dict):
        stat = Stat.from_dict(stat)
    return iv.fmt_interval(stat.ci, digits)


def _row_order(label: str, method: str) -> tuple[int, str]:
    return (REFERENCE_ROWS.index(method) if method in REFERENCE_ROWS else len(REFERENCE_ROWS), label)


def summarize(runs: pd.DataFrame, metric_columns: list[str]) -> list[dict[str, Any]]:
    """One entry per (forget spec, method label) with a Stat over seeds for every metric.

    Returns JSON-ready dicts: ``{"forget", "method", "label", "variant", "kind", "seeds",
    "values": {key: {"mean", "std", "n", "ci", "ci_method", "n_points"}},
    "vs_retrain": {key: {"diff", "ci", "beyond_noise"}}}``, references (retrain, original) first
    per spec. Count columns (``n/<key>``, ``<attack>/n_members``) give the n behind each value.
    """
    rows: list[dict[str, Any]] = []
    per_seed: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    if runs is None or not len(runs):
        return rows
    for (forget, label), group in runs.groupby(["forget", "label"], sort=False, dropna=False):
        values: dict[str, dict] = {}
        counts = {c: float(np.median([v for v in group[c].tolist() if v is not None and not pd.isna(v)]))
                  for c in metric_columns if is_count(c) and c in group and group[c].notna().any()}
        for key in metric_columns:
            if key not in group:
                continue
            vals = [float(v) for v in group[key].tolist() if v is not None and not pd.isna(v)]
            if vals:
                values[key] = Stat.of(vals, key, counts).to_dict()
                per_seed.setdefault((str(forget), str(label)), {})[key] = {
                    int(s): float(v) for s, v in zip(group["seed"].tolist(), group[key].tolist(), strict=True)
                    if s is not None and not pd.isna(s) and v is not None and not pd.isna(v)}
        seeds = sorted(int(s) for s in group["seed"].tolist() if s is not None and not pd.isna(s))
        first = group.iloc[0]
        rows.append({
            "forget": str(forget), "label": str(label), "method": str(first["method"]),
            "variant": str(first["variant"] or ""), "kind": str(first["kind"]), "seeds": seeds,
            "values": values,
        })
    specs = list(dict.fromkeys(r["forget"] for r in rows))
    rows.sort(key=lambda r: (specs.index(r["forget"]), *_row_order(r["label"], r["method"])))
    _add_vs_retrain(rows, per_seed)
    return rows


def is_count(key: str) -> bool:
    """``n/<key>`` and ``.../n_members`` / ``n_nonmembers``: how many points a value rests on."""
    return key.startswith("n/") or key.endswith(("/n_members", "/n_nonmembers"))


def reference_label(row: dict[str, Any]) -> str:
    """The Retrain row a row is compared with: pruned rows have their own sparse Retrain
    (``retrain [prune=0.95]``, see study/plan.py); other variants share the plain one's."""
    prune = next((p for p in str(row.get("variant") or "").split(",") if p.startswith("prune=")), "")
    return f"retrain [{prune}]" if prune else "retrain"


def _add_vs_retrain(rows: list[dict[str, Any]], per_seed: dict) -> None:
    """The difference of every non-retrain row to its spec's retrain row, with its interval."""
    retrain = {(r["forget"], r["label"]): r for r in rows if r["method"] == "retrain"}
    for r in rows:
        ref = retrain.get((r["forget"], reference_label(r)))
        r["vs_retrain"] = {}
        if ref is None or r["method"] == "retrain":
            continue
        for key, cell in r["values"].items():
            rc = ref["values"].get(key)
            if rc is None or is_count(key):
                continue
            mine = per_seed.get((r["forget"], r["label"]), {})
            interval = gap_interval(cell, rc, mine.get(key), per_seed.get((ref["forget"], ref["label"]), {}).get(key),
                                    key, _seed_counts(mine, key))
            if interval is None:
                continue
            paired = _paired_noise(key, mine.get(key, {}), sorted(mine.get(key, {})), _seed_counts(mine, key))
            r["vs_retrain"][key] = {"diff": cell["mean"] - rc["mean"], "ci": list(interval),
                                    "beyond_noise": bool(iv.excludes_zero(interval)), "paired": paired is not None}


def _seed_counts(per_seed: dict[str, dict[int, float]], key: str) -> dict[int, dict[str, float]]:
    """seed -> the counts a run logged for ``key`` (n and the discordant counts vs its retrain)."""
    from unlearnbench.eval.paired import MODEL_ONLY, REFERENCE_ONLY

    out: dict[int, dict[str, float]] = {}
    for name in (f"n/{key}", f"n/{key}/{MODEL_ONLY}", f"n/{key}/{REFERENCE_ONLY}"):
        for seed, v in per_seed.get(name, {}).items():
            out.setdefault(seed, {})[name] = v
    return out


def gap_interval(cell: dict, ref: dict, seeds: dict[int, float] | None = None,
                 ref_seeds: dict[int, float] | None = None, key: str = "",
                 seed_counts: dict[int, dict[str, float]] | None = None) -> tuple[float, float] | None:
    """95 % interval of ``cell.mean - ref.mean``.

    Two or more common seeds (a study pairs each seed's method run with that seed's retrain): the
    paired t interval of the per-seed differences, with the evaluation-set noise of the mean
    difference added in quadrature, because every seed is scored on the same images. That noise
    is Newcombe's *paired* interval of the seeds' mean 2x2 table when each run logged its
    discordant counts against its retrain (``seed_counts``: seed -> that run's counts), else the
    unpaired Newcombe / MOVER from both cells' ``images`` intervals (wider). One seed: the paired
    interval of that run when its counts are known, else MOVER from both cells' ``ci``."""
    a, b = Stat.from_dict(cell), Stat.from_dict(ref)
    common = sorted(set(seeds or {}) & set(ref_seeds or {}))
    noise = _paired_noise(key, seeds or {}, common, seed_counts or {})
    if len(common) >= 2 and len(common) == a.n == b.n:
        diffs = [seeds[s] - ref_seeds[s] for s in common]  # type: ignore[index]
        t = iv.t_interval(diffs)
        images = noise if noise is not None else iv.mover(a.mean, a.images, b.mean, b.images)
        if t is None or images is None:
            return t or images
        return add_in_quadrature(sum(diffs) / len(diffs), t, images)  # both centred on the mean difference
    if noise is not None and a.n == b.n == 1:
        return noise
    return iv.mover(a.mean, a.noise, b.mean, b.noise)


def _paired_noise(key: str, seeds: dict[int, float], common: list[int],
                  seed_counts: dict[int, dict[str, float]]) -> tuple[float, float] | None:
    """Newcombe's paired interval of the mean 2x2 table over the common seeds (the evaluation-set
    noise of the mean difference), or None unless every seed's table is known."""
    from unlearnbench.eval import paired

    pn = proportion_n(key, seed_counts[common[0]]) if key and common and common[0] in seed_counts else None
    if pn is None:
        return None
    tables = []
    for s in common:
        tab = paired.table(key, seeds[s], pn[1], seed_counts.get(s, {}))
        if tab is None or proportion_n(key, seed_counts[s]) != pn:
            return None
        tables.append(tab)
    # The mean table: its margins are the mean proportions, its discordant cells the mean
    # disagreement. Averaging outcomes over seeds only reduces the per-image spread, so this
    # bounds the noise of the mean difference from above (Cauchy-Schwarz).
    mean_tab = [sum(t[i] for t in tables) / len(tables) for i in range(4)]
    d = iv.newcombe_paired(*mean_tab)  # type: ignore[arg-type]
    return None if d is None else (d[0] * pn[1], d[1] * pn[1])


def beyond_noise(row: dict[str, Any], key: str) -> bool:
    """Whether ``row`` differs from its spec's retrain row on ``key`` beyond the noise."""
    return bool((row.get("vs_retrain") or {}).get(key, {}).get("beyond_noise"))


def cell_text(row: dict[str, Any], key: str, *, ci: bool = True, mark: bool = True) -> str:
    """A table cell: mean ± std [95 % interval], ``*`` when the gap to retrain is beyond the noise."""
    text = fmt(row["values"].get(key), digits_for(key), ci=ci)
    return text + ("*" if mark and beyond_noise(row, key) else "")


def digits_for(key: str) -> int:
    """Counts print as integers (``124``, not ``124.00``); everything else with two decimals."""
    return 0 if is_count(key) else 2


def markdown_table(rows: list[dict[str, Any]], metrics: list[SummaryMetric]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (one forget spec) over ``metrics``: mean ±
    std [95 % interval] per cell, ``*`` where the gap to retrain is beyond the noise, and a row
    of n (points per run) under the header."""
    header = ["Method", *[m.label for m in metrics], "Seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    ns = [points_text(rows, m.key) for m in metrics]
    if any(ns):
        lines.append("| *n (points)* | " + " | ".join(ns) + " | |")
    for r in rows:
        cells = [r["label"], *[cell_text(r, m.key) for m in metrics], str(len(r["seeds"]))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def points_text(rows: list[dict[str, Any]], key: str) -> str:
    """The n behind a column (``1093``; ``40–46`` when rows differ), or ``""``."""
    ns = sorted({int(r["values"][key]["n_points"]) for r in rows
                 if key in r["values"] and r["values"][key].get("n_points")})
    if not ns:
        return ""
    return str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"


def summary_tables(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The papers' table per forget spec as text cells ready to print (see ``api.summary_tables``)."""
    tables = []
    for spec in dict.fromkeys(r["forget"] for r in summary["rows"]):
        rows = [r for r in summary["rows"] if r["forget"] == spec]
        metrics = summary_metrics(sorted({k for r in rows for k in r["values"]}))
        seeds = {len(r["seeds"]) for r in rows}
        tables.append({
            "forget": spec,
            "seeds": next(iter(seeds)) if len(seeds) == 1 else None,
            "columns": [{"key": m.key, "label": m.label} for m in metrics],
            "points": [points_text(rows, m.key) for m in metrics],
            "rows": [{"label": r["label"], "method": r["method"], "seeds": len(r["seeds"]),
                      "cells": [{"value": fmt(r["values"].get(m.key)), "beyond_noise": beyond_noise(r, m.key),
                                 "ci": fmt_ci(r["values"].get(m.key))} for m in metrics]}
                     for r in rows],
        })
    return tables
