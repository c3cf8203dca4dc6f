"""What a finished study becomes, per study task: printable tables, extra renderables (the paper's
numbers), the report files a task writes and JSON extras, as one ``StudyReport``. Each task
registers its reporter at its definition (``@study_report("generation")``), so ``api.run_study``
and the CLI treat every task alike. Classification studies: the summary of their MLflow runs
(``reports.render.build_summary``); their full report is ``unlearnbench report``. Generation
studies: ``reports.generation`` writes their report (grids inlined) and logs it to the parent run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnbench.core.registry import Registry


@dataclass
class StudyReport:
    # Text tables ready to print, in ``summary_tables``' format (forget, seeds, columns, points,
    # rows with cells), each with an optional ``title``.
    tables: list[dict[str, Any]] = field(default_factory=list)
    extras: list[Any] = field(default_factory=list)  # terminal renderables shown after the tables
    files: tuple[Path, ...] = ()  # report files written (HTML first)
    data: dict[str, Any] = field(default_factory=dict)  # JSON-ready extras of the outcome (--json)
    summary: dict[str, Any] | None = None  # classification: the summary behind the tables


Reporter = Callable[[Any, Any, Path], StudyReport]  # (study config, StudyResult, reports folder) -> StudyReport
STUDY_REPORTS: Registry[Reporter] = Registry("study reports", entry_point_group="unlearnbench.study_reports")


def study_report(task: str, *, writes_folder: bool = False) -> Callable[[Reporter], Reporter]:
    """Decorator: the reporter of study task ``task``; ``writes_folder``: it writes report files
    into ``<reports folder>/<study name>`` (checked before the study runs)."""
    return STUDY_REPORTS.register(task, writes_folder=writes_folder)


def _task(config: Any) -> str:
    from unlearnbench.study.tasks import task_of

    return task_of(config).name


def report_folder(config: Any, out: str | Path) -> Path | None:
    """Where the study's reporter writes files, or None when it writes none."""
    name = _task(config)
    if name in STUDY_REPORTS and STUDY_REPORTS.info(name).get("writes_folder"):
        return Path(out) / config.name
    return None


def make_study_report(config: Any, result: Any, out: str | Path = "reports") -> StudyReport:
    name = _task(config)
    if name not in STUDY_REPORTS:  # a plug-in task without a reporter: its result alone
        return StudyReport()
    return STUDY_REPORTS.get(name)(config, result, Path(out))


@study_report("classification")
def classification_report(config: Any, result: Any, out: Path) -> StudyReport:
    """The papers' table per forget spec from the study's MLflow runs, and the paper's numbers."""
    from unlearnbench.reports.expected import rich_tables
    from unlearnbench.reports.render import build_summary
    from unlearnbench.reports.runs import load_runs
    from unlearnbench.reports.summary import summary_tables

    runs = load_runs(result.experiment, result.tracking_uri, parent_run_id=result.parent_run_id, with_artifacts=False)
    summary = build_summary(runs, "")
    return StudyReport(tables=summary_tables(summary), extras=rich_tables(summary), data={"summary": summary},
                       summary=summary)
