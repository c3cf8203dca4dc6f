"""Reports from tracked runs: HTML (plots inlined) and Markdown summaries, compared with the
previous report of the same experiment so regressions are flagged."""

from unlearnbench.reports.compare import Change, compare, regressions
from unlearnbench.reports.render import ReportOutput, build_report, write_report
from unlearnbench.reports.runs import RunSet, load_runs
from unlearnbench.reports.summary import SummaryMetric, summarize, summary_metrics

__all__ = [
    "Change", "ReportOutput", "RunSet", "SummaryMetric", "build_report", "compare", "load_runs", "regressions",
    "summarize", "summary_metrics", "write_report",
]
