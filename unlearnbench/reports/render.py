"""Build a report from the runs of an experiment and write it: HTML (plots inlined), Markdown,
the summary JSON and a history entry used by the next report's comparison.

Layout under ``out`` (default ``reports/``)::

    <experiment slug>/report.html    self-contained: opens from disk and in MLflow's artifact viewer
    <experiment slug>/summary.md     the papers' table, changes since the previous report, failures
    <experiment slug>/summary.json   the numbers of the latest report (machine-readable)
    <experiment slug>/history/<UTC time>.json   one summary per report, for comparisons

Every file is written to a temporary name and renamed into place, summary.json last, so an
interrupted render leaves the previous report intact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unlearnbench.core.io import atomic_write
from unlearnbench.reports import expected, plots
from unlearnbench.reports.compare import Change, compare, regressions
from unlearnbench.reports.runs import RunSet, load_runs
from unlearnbench.reports.summary import (
    beyond_noise,
    comparison_metrics,
    digits_for,
    fmt,
    fmt_ci,
    markdown_table,
    points_text,
    summarize,
    summary_metrics,
)

log = logging.getLogger(__name__)
FORMAT = "unlearnbench-report-summary-v1"


@dataclass
class ReportOutput:
    directory: Path
    html: Path
    markdown: Path
    summary_json: Path
    summary: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    previous_created: str | None = None

    @property
    def regressions(self) -> list[Change]:
        return regressions(self.changes)


def slug(name: str) -> str:
    """A folder name for an experiment (experiment names may hold ``/`` and spaces)."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return text or "experiment"


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(text)


def build_summary(runset: RunSet, created: str) -> dict[str, Any]:
    metric_cols = sorted(runset.metric_columns)
    rows = summarize(runset.runs, metric_cols)
    ids = sorted(runset.runs["run_id"].tolist()) if len(runset.runs) else []
    parent = runset.parent or {}
    return {
        "format": FORMAT,
        "experiment": runset.experiment,
        "created": created,
        "tracking_uri": runset.tracking_uri,
        "source": {
            "parent_run_id": parent.get("run_id"),
            "study": parent.get("study"),
            "study_id": parent.get("study_id"),
            "runs": len(ids),
            "failed": len(runset.failed),
            "fingerprint": hashlib.sha256(",".join(ids).encode()).hexdigest()[:16],
            "git_sha": sorted({s for s in runset.runs.get("git_sha", []) if s}) if len(runset.runs) else [],
            # What the "Code:" line shows: commits, or package versions where runs had no checkout.
            "code": sorted({s for s in runset.runs.get("code", []) if s}) if len(runset.runs) else [],
        },
        "metrics": [
            {"key": m.key, "label": m.label, "direction": m.direction} for m in comparison_metrics(metric_cols)
        ],
        "rows": rows,
        "paper": expected.section(runset, rows),  # recipe, differences, the paper's numbers (reports/expected.py)
    }


def previous_summary(directory: Path, fingerprint: str) -> dict | None:
    """The newest earlier report built from *other* runs (re-rendering the same runs is not news)."""
    hist = directory / "history"
    if not hist.is_dir():
        return None
    for path in sorted(hist.glob("*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("Skipping unreadable report history file %s", path)
            continue
        if data.get("format") == FORMAT and data.get("source", {}).get("fingerprint") != fingerprint:
            return data
    return None


# ---------------------------------------------------------------------------- artifacts -> plots


def _curves_of(report: dict) -> dict[str, Any]:
    """MIA curves of a report.json: ``{name: {"fpr": [...], "tpr": [...]}}`` (nested dicts are
    flattened into ``a/b`` names)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and "fpr" in node and "tpr" in node:
            out[prefix] = node
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)

    walk("", report.get("curves") or {})
    return out


def _per_class_of(report: dict, split: str = "test") -> dict[str, float]:
    """Per-class accuracy (%) on ``split`` from a report.json's ``per_class`` table.

    Accepts the table as a list of records or as pandas' ``orient="split"/"columns"`` JSON.
    """
    table = report.get("per_class")
    if table is None:
        return {}
    import pandas as pd

    try:
        if isinstance(table, str):
            table = json.loads(table)
        if isinstance(table, dict) and {"columns", "data"} <= set(table):
            frame = pd.DataFrame(table["data"], columns=table["columns"], index=table.get("index"))
        else:
            frame = pd.DataFrame(table)
    except (ValueError, TypeError):
        return {}
    if "class" not in frame.columns:
        frame = frame.reset_index().rename(columns={"index": "class"})
    if "split" in frame.columns:
        frame = frame[frame["split"] == split]
        col = next((c for c in ("acc", "accuracy") if c in frame.columns), None)
    else:
        col = next((c for c in (split, f"{split}_acc", f"acc/{split}") if c in frame.columns), None)
    if col is None or "class" not in frame.columns:
        return {}
    name_col = next((c for c in ("name", "class_name") if c in frame.columns), "class")
    return {str(n): float(v) for n, v in zip(frame[name_col], frame[col], strict=True) if v is not None and np.isfinite(v)}


def _with_counts(curves: dict[str, Any], report: dict) -> dict[str, Any]:
    """Curves of reports written before curves carried their counts get them from ``counts``."""
    counts = report.get("counts") or {}
    out = {}
    for name, c in curves.items():
        if "n_nonmembers" not in c and f"{name}/n_nonmembers" in counts:
            c = {**c, "n_nonmembers": [counts[f"{name}/n_nonmembers"]], "n_members": [counts.get(f"{name}/n_members")]}
        out[name] = c
    return out


def _threat_text(runset: RunSet) -> str:
    """``Linf, ε = 0.1`` from the first run's evaluation config (report.json), or ``""``."""
    for report in runset.artifacts.values():
        ev = (report.get("config") or {}).get("eval") or {}
        if ev.get("robustness"):
            eps = ev.get("eps")
            eps_text = f"{eps:.4g}" if isinstance(eps, (int, float)) else str(eps)
            if isinstance(eps, float) and abs(eps * 255 - round(eps * 255)) < 1e-6 and eps < 1:
                eps_text += f" ({round(eps * 255)}/255)"
            return f"{ev.get('norm', 'Linf')}, ε = {eps_text}"
    return ""


def _figures(runset: RunSet, rows: list[dict]) -> list[dict[str, str]]:
    figures: list[dict[str, str]] = []

    def add(fid: str, title: str, png: bytes | None, caption: str) -> None:
        if png is not None:
            figures.append({"id": fid, "title": title, "src": plots.data_uri(png), "caption": caption})

    add("ua-vs-ta", "UA vs TA", plots.ua_vs_ta(rows),
        "Mean over seeds, error bars ± std where there are two seeds or more; every marker labelled, no label over "
        "another. The hollow star and dashed cross mark the retrained model: the closer, the better.")
    add("gap-bars", "Gap to retrain per metric", plots.gap_bars(rows),
        "|UA, RA, TA, MIA-Efficacy − retrain's| per method: bars are the mean over seeds, error bars the std over "
        "seeds (only with two seeds or more); * marks a difference beyond the noise (its 95 % interval excludes 0).")
    add("pareto", "Run time vs Avg. Gap", plots.pareto(rows),
        "Cost against closeness to retrain (mean over seeds, ± std with two seeds or more); the grey line joins the "
        "methods no other beats on both; the dashed line is retrain's run time.")
    runs = runset.runs
    curves: dict[tuple[str, str], dict] = {}
    per_class: dict[str, dict[str, dict[str, list[float]]]] = {}
    if len(runs):
        for _, r in runs.sort_values(["seed"], na_position="last").iterrows():
            report = runset.artifacts.get(r["run_id"])
            if not report:
                continue
            key = (r["forget"], r["label"])
            if key not in curves:
                found = _curves_of(report)
                if found:
                    curves[key] = _with_counts(found, report)
            for cls, acc in _per_class_of(report).items():
                per_class.setdefault(r["forget"], {}).setdefault(r["label"], {}).setdefault(cls, []).append(acc)
    add("roc", "MIA ROC curves", plots.roc_curves(rows, curves),
        "Membership-inference ROC on log-log axes (first seed per method): the SVC of MIA-Efficacy (its decision "
        "value as a score; o = its own threshold) beside the threshold attacks; the retrained model is the target. "
        "Hatched: FPR below 1/n_nonmembers, where TPR cannot be measured (undefined).")
    threat = _threat_text(runset)
    add("robust-bars", "Clean and robust accuracy" + (f" ({threat})" if threat else ""), plots.robust_bars(rows, threat),
        "Per split and attack, n = points attacked per run; whiskers are the 95 % interval (t over seeds, at least "
        "Wilson on the points); the hatched bars are the original model (before unlearning).")
    order = {(r["forget"], r["label"]): i for i, r in enumerate(rows)}
    for spec, by_label in per_class.items():
        labels = sorted(by_label, key=lambda lab: order.get((spec, lab), 1 << 30))
        matrix = {lab: {c: float(np.mean(v)) for c, v in by_label[lab].items()} for lab in labels}
        add(f"per-class-{slug(spec)}", f"Per-class test accuracy — forget {spec}",
            plots.per_class_heatmap(matrix, f"forget {spec}"), "Mean over seeds of each class's test accuracy (%).")
    return figures


# ---------------------------------------------------------------------------- text


def _specs(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["forget"] for r in rows))


def _failed_records(runset: RunSet) -> list[dict[str, Any]]:
    if not len(runset.failed):
        return []
    return [
        {"forget": r["forget"], "label": r["label"], "seed": "" if r["seed"] is None or r["seed"] != r["seed"] else int(r["seed"]),
         "error": r["error"] or "(no error recorded)", "run_id": r["run_id"]}
        for _, r in runset.failed.iterrows()
    ]


def render_markdown(summary: dict, changes: list[Change], previous: dict | None, failed: list[dict]) -> str:
    src = summary["source"]
    lines = [f"# unlearnbench report: {summary['experiment']}", ""]
    what = f"study {src['study']} ({src['study_id']}), parent run {src['parent_run_id']}" if src.get("parent_run_id") else "all evaluated runs"
    code = f" Code: {', '.join(src['code'])}." if src.get("code") else ""
    lines += [f"Generated {summary['created']} from {src['runs']} runs ({what}) in `{summary['tracking_uri']}`.{code}", ""]
    lines += ["Values are mean ± std over seeds (sample std) [95 % interval: t over seeds and the Wilson "
              "interval on the n images every seed is scored on, added in quadrature; Wilson on the run's n for a "
              "single seed]; accuracies and MIA-Efficacy in %, RTE in seconds. UA and MIA-Efficacy are best when "
              "closest to Retrain. `*`: the difference to Retrain is beyond the noise (its 95 % interval excludes "
              "0; paired on the same images where the runs logged their discordant counts). "
              "*n (points)*: images each run's value was measured on.", ""]
    for spec in _specs(summary["rows"]):
        rows = [r for r in summary["rows"] if r["forget"] == spec]
        lines += [f"## Forget `{spec}`", "", markdown_table(rows, _spec_metrics(rows)), ""]
    lines += expected.markdown(summary)
    lines += ["## Changes since the previous report", ""]
    if previous is None:
        lines += ["No previous report of this experiment to compare with.", ""]
    else:
        regs = regressions(changes)
        lines += [f"Compared with the report of {previous['created']}: "
                  f"{len(regs)} regression{'s' if len(regs) != 1 else ''}.", ""]
        for c in changes:
            tag = {"regression": "REGRESSION", "missing": "REGRESSION", "improvement": "improvement", "new": "new"}[c.status]
            lines.append(f"- **{tag}** {c.describe()}")
        lines.append("")
    if failed:
        lines += ["## Failed runs", ""]
        for f in failed:
            lines.append(f"- {f['label']} on `{f['forget']}` seed {f['seed']}: {f['error']} (run {f['run_id']})")
        lines.append("")
    return "\n".join(lines)


def _spec_metrics(rows: list[dict]):
    return summary_metrics(sorted({k for r in rows for k in r["values"]}))


def _html_tables(summary: dict) -> list[dict[str, Any]]:
    tables = []
    for spec in _specs(summary["rows"]):
        rows = [r for r in summary["rows"] if r["forget"] == spec]
        metrics = _spec_metrics(rows)
        all_keys = sorted({k for r in rows for k in r["values"]})
        tables.append({
            "forget": spec,
            "header": [m.label for m in metrics],
            "points": [points_text(rows, m.key) for m in metrics],
            "rows": [{"label": r["label"], "reference": r["method"] in ("retrain", "original"),
                      "cells": [_cell(r, m.key) for m in metrics], "seeds": len(r["seeds"])} for r in rows],
            "all_header": [r["label"] for r in rows],
            "families": [
                {"name": fam, "rows": [{"key": k, "cells": [fmt(r["values"].get(k), digits_for(k), ci=True) for r in rows]}
                                       for k in keys]}
                for fam, keys in metric_families(all_keys)
            ],
        })
    return tables


# Metric families of the "All metrics" table, in display order: (name, test on the key).
FAMILIES: tuple[tuple[str, Any], ...] = (
    ("Accuracy", lambda k: k.endswith("_acc") or k in ("ua", "aus")),
    ("MIA-Efficacy (SVC)", lambda k: k.startswith(("mia_efficacy", "mia_entropy", "mia_m_entropy"))),
    ("Membership attacks", lambda k: k.startswith("mia/") and not k.endswith(("/n_members", "/n_nonmembers"))),
    ("Robustness", lambda k: k.startswith(("robust/", "clean/"))),
    ("Gaps to retrain", lambda k: k.startswith("gap/") or k == "avg_gap"),
    ("Divergence from retrain", lambda k: k.startswith("div/")),
    ("Run time", lambda k: k.endswith("_seconds") or k.startswith("time/")),
    ("Counts (n)", lambda k: k.startswith("n/") or k.endswith(("/n_members", "/n_nonmembers"))),
)


def metric_families(keys: list[str]) -> list[tuple[str, list[str]]]:
    """``keys`` grouped by family (``FAMILIES``; the rest under "Other"), empty families dropped."""
    groups: dict[str, list[str]] = {}
    for k in keys:
        fam = next((name for name, test in FAMILIES if test(k)), "Other")
        groups.setdefault(fam, []).append(k)
    order = [name for name, _ in FAMILIES] + ["Other"]
    return [(name, groups[name]) for name in order if name in groups]


def _cell(row: dict, key: str) -> dict[str, Any]:
    """A summary cell for the HTML table: the value, its 95 % interval, whether the gap to
    retrain is beyond the noise, and a tooltip saying so."""
    cell = row["values"].get(key)
    gap = (row.get("vs_retrain") or {}).get(key)
    title = ""
    if cell is not None and cell.get("ci") is not None:
        how = {"t": "t over seeds", "t+images": "t over seeds plus the test images' Wilson noise",
               "t+wilson": "t over seeds, at least Wilson on the pooled points (older report)",
               "wilson": f"Wilson on n = {cell.get('n_points')}", "auc": "Hanley-McNeil"}.get(cell.get("ci_method"), "")
        title = f"95 % interval ({how})"
    if gap is not None:
        lo, hi = gap["ci"]
        title += (f"; vs retrain {gap['diff']:+.2f} [{lo:.2f}, {hi:.2f}]"
                  + (" (paired on the same images)" if gap.get("paired") else "") + ": "
                  + ("beyond the noise" if gap["beyond_noise"] else "within the noise"))
    return {"text": fmt(cell), "ci": fmt_ci(cell), "sig": beyond_noise(row, key), "title": title.lstrip("; ")}


def render_html(summary: dict, changes: list[Change], previous: dict | None, failed: list[dict],
                figures: list[dict[str, str]]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("unlearnbench.reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2").render(
        summary=summary, tables=_html_tables(summary), changes=changes, previous=previous,
        regressions=regressions(changes), failed=failed, figures=figures, paper=expected.html(summary),
    )


# ---------------------------------------------------------------------------- entry point


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_report(
    runset: RunSet,
    out: str | Path = "reports",
    *,
    tolerance: float | None = None,
    now: dt.datetime | None = None,
) -> ReportOutput:
    """Render ``runset`` under ``out/<experiment slug>/`` and compare with the previous report."""
    when = now or _now()
    created = when.isoformat(timespec="seconds")
    directory = Path(out) / slug(runset.experiment)
    summary = build_summary(runset, created)
    previous = previous_summary(directory, summary["source"]["fingerprint"])
    changes = compare(summary, previous, tolerance=tolerance) if previous is not None else []
    summary["comparison"] = {
        "previous_created": previous["created"] if previous else None,
        "tolerance": tolerance,
        "changes": [c.to_dict() for c in changes],
        "regressions": len(regressions(changes)),
    }
    failed = _failed_records(runset)
    summary["failed"] = failed
    figures = _figures(runset, summary["rows"])
    html = render_html(summary, changes, previous, failed, figures)
    markdown = render_markdown(summary, changes, previous, failed)
    text = json.dumps(summary, indent=2, sort_keys=False, default=str)
    stamp = when.strftime("%Y%m%dT%H%M%S%fZ")
    out_html, out_md, out_json = directory / "report.html", directory / "summary.md", directory / "summary.json"
    write_text_atomic(out_html, html)
    write_text_atomic(out_md, markdown)
    write_text_atomic(directory / "history" / f"{stamp}.json", text)
    write_text_atomic(out_json, text)
    return ReportOutput(directory, out_html, out_md, out_json, summary, changes,
                        previous["created"] if previous else None)


def build_report(
    experiment: str,
    out: str | Path = "reports",
    *,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    tolerance: float | None = None,
    log_to_mlflow: bool = False,
) -> ReportOutput:
    """Read ``experiment`` from MLflow, write its report, and optionally attach the report to the
    study's parent run (artifacts ``report/report.html`` and ``report/summary.md``)."""
    runset = load_runs(experiment, tracking_uri, parent_run_id=parent_run_id)
    if not len(runset.runs) and not len(runset.failed):
        from unlearnbench.core.errors import UserError

        raise UserError(
            f"Experiment {experiment!r} has no evaluated runs yet; run `unlearnbench benchmark` "
            "or `unlearnbench evaluate` first."
        )
    result = write_report(runset, out, tolerance=tolerance)
    if log_to_mlflow and runset.parent is not None:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=runset.tracking_uri)
        for path in (result.html, result.markdown):
            client.log_artifact(runset.parent["run_id"], str(path), "report")
    return result
