"""Studies and reports: ``load_study`` (any study task, checked in full before anything trains), ``run_study``,
``build_report``, and a report's summary as printable tables (``summary_tables``,
``expected_tables``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def load_study(path_or_name: str | Path, *, changes: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """A study (YAML file or shipped name) of whichever task its ``task:`` key names (default
    ``classification``; an unknown one is refused naming the known tasks), checked in full before
    anything trains. ``overrides`` replace the file's keys (``None``: not given; a key the task's
    study does not have is refused); ``changes`` are merged into its sections instead
    (``{"train": {"epochs": 5}}`` changes one training key, as the CLI's ``--set train.epochs=5``)."""
    from unlearnbench.core.config import load_yaml
    from unlearnbench.study.tasks import study_from_data, study_path

    data = load_yaml(study_path(path_or_name))
    if changes and isinstance(data, Mapping):
        data = dict(data)
        for key, value in changes.items():
            both = isinstance(value, Mapping) and isinstance(data.get(key), Mapping)
            data[key] = {**data[key], **value} if both else value
    return study_from_data(data, **overrides)


def study_file(path_or_name: str | Path) -> Path:
    """The file of a study: ``path_or_name`` itself, or the shipped study of that name."""
    from unlearnbench.study.tasks import study_path

    return study_path(path_or_name)


def run_study(config: Any, *, reports: str | Path = "reports", **kwargs: Any) -> Any:
    """Run or resume a study of any task (``tracking_uri``, ``executor``, ``work_dir``, ``source``,
    ``new``, ``study_file``, ``on_event``; see ``study.run`` and ``study.generation``), then make its
    report: ``result.report`` is a ``reports.StudyReport`` (tables, report files: a generation study
    writes ``<reports>/<study name>/report.html``). An executor the study's task cannot use is refused
    before any work."""
    from unlearnbench.reports import make_study_report
    from unlearnbench.study import run_study as _run_study

    result = _run_study(config, **kwargs)
    result.report = make_study_report(config, result, reports)
    return result


def study_report_folder(config: Any, reports: str | Path = "reports") -> Path | None:
    """The folder ``run_study`` writes the study's report files into, or None (checked by the CLI
    before the work)."""
    from unlearnbench.reports import report_folder

    return report_folder(config, reports)


def check_study_executor(config: Any, kind: str) -> None:
    """One sentence when the study's task cannot run on executor ``kind`` (``local``, ``ray``)."""
    from unlearnbench.study.tasks import check_executor_kind

    check_executor_kind(config, kind)


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
    from unlearnbench.reports.summary import summary_tables as _tables

    return _tables(summary)


def expected_tables(summary: Mapping[str, Any]) -> list[Any]:
    """The recipe line and the measured-vs-paper tables of a summary with a ``paper`` block, as
    terminal renderables (rich); empty without one. See ``reports.expected``."""
    from unlearnbench.reports.expected import rich_tables

    return rich_tables(dict(summary))
