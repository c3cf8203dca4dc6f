"""Studies and reports: ``load_study`` (checked in full before anything trains), ``run_study``,
``build_report``, and a report's summary as printable tables (``summary_tables``,
``expected_tables``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def load_study(path_or_name: str | Path, **overrides: Any) -> Any:
    """A study (YAML file or shipped name), checked in full before anything trains."""
    from unlearnbench.study import load_study as _load_study

    return _load_study(path_or_name, **overrides)


def run_study(config: Any, **kwargs: Any) -> Any:
    """Run or resume a study (``tracking_uri``, ``executor``, ``work_dir``, ``source``, ``new``,
    ``study_file``, ``on_event``); see ``study.run``."""
    from unlearnbench.study import run_study as _run_study

    return _run_study(config, **kwargs)


def build_report(experiment: str, out: str | Path = "reports", **kwargs: Any) -> Any:
    """Write the HTML and Markdown report of an experiment's runs (``tracking_uri``,
    ``parent_run_id``, ``tolerance``, ``log_to_mlflow``); see ``reports.render``."""
    from unlearnbench.reports import build_report as _build_report

    return _build_report(experiment, out, **kwargs)



def summary_tables(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The papers' table per forget spec (mean ± std over seeds, the 95 % interval, ``*`` where a
    method differs from retrain beyond the noise), as text cells ready to print: one dict per
    spec with ``forget``, ``seeds`` (the common count, or None when rows differ), ``columns``
    (``key``, ``label``), ``points`` (the n behind each column) and ``rows`` (``label``,
    ``method``, ``seeds``, ``cells``: ``value``, ``beyond_noise``, ``ci``). ``summary`` is a
    report's ``summary`` (``build_report(...).summary``)."""
    from unlearnbench.reports.summary import beyond_noise, fmt, fmt_ci, points_text, summary_metrics

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


def expected_tables(summary: Mapping[str, Any]) -> list[Any]:
    """The recipe line and the measured-vs-paper tables of a summary with a ``paper`` block, as
    terminal renderables (rich); empty without one. See ``reports.expected``."""
    from unlearnbench.reports.expected import rich_tables

    return rich_tables(dict(summary))
