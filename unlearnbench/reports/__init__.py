"""Reports from tracked runs: HTML (plots inlined) and Markdown summaries, compared with the
previous report of the same experiment so regressions are flagged."""

from unlearnbench.reports import generation as _generation  # noqa: F401  (registers the generation study report)
from unlearnbench.reports.compare import Change, compare, regressions
from unlearnbench.reports.render import ReportOutput, build_report, write_report
from unlearnbench.reports.runs import RunSet, load_runs
from unlearnbench.reports.study import StudyReport, make_study_report, report_folder
from unlearnbench.reports.summary import SummaryMetric, summarize, summary_metrics

__all__ = [
    "Change", "ReportOutput", "RunSet", "StudyReport", "SummaryMetric", "build_report", "compare", "load_runs",
    "make_study_report", "regressions", "report_folder", "summarize", "summary_metrics", "write_report",
]
