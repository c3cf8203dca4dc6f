"""``unlearnbench report``: render an experiment's HTML + Markdown report from MLflow."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from unlearnbench.commands._common import (
    QuietOpt,
    TrackingOpt,
    app,
    check_outputs,
    console,
    handle_errors,
    setup_output,
)

# Terminal headers: short enough for nine columns in 80 characters.
_SHORT = {"mia_efficacy": "MIA", "avg_gap": "Gap", "rte_seconds": "RTE s"}


def print_summary(summary: dict) -> None:
    """The papers' table per forget spec (mean ± std over seeds), as rich tables on stdout."""
    from rich import box

    from unlearnbench.reports.summary import beyond_noise, fmt, fmt_ci, points_text, summary_metrics

    for spec in dict.fromkeys(r["forget"] for r in summary["rows"]):
        rows = [r for r in summary["rows"] if r["forget"] == spec]
        # A terminal is narrow: robust accuracy on the test split only (the report has every split).
        metrics = [m for m in summary_metrics(sorted({k for r in rows for k in r["values"]}))
                   if not m.key.startswith("robust/") or m.key.split("/")[1] in ("test", "test_retained")]
        seeds = {len(r["seeds"]) for r in rows}
        same = len(seeds) == 1
        title = (f"forget {spec}: mean ± std over {next(iter(seeds)) if same else 'the'} seed(s), "
                 "[95 % interval] below; * = differs from retrain beyond the noise")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        table.add_column("method", style="bold", no_wrap=True)
        for m in metrics:
            label = _SHORT.get(m.key) or (m.label.replace("Robust test_retained ", "rob ")
                                          .replace("Robust test ", "rob ").replace("autoattack", "AA"))
            # Wrap "98.12 ± 0.35" at its spaces rather than cutting numbers in a narrow terminal.
            table.add_column(label, justify="right", min_width=6, overflow="fold")
        if not same:
            table.add_column("seeds", justify="right")
        points = [points_text(rows, m.key) for m in metrics]
        if any(points):
            table.add_row("n (points)", *points, *([] if same else [""]), style="dim")
        for r in rows:
            style = "italic dim" if r["method"] in ("retrain", "original") else None
            # The interval on its own line: the value stays readable in a narrow column.
            cells = [(fmt(r["values"].get(m.key)) + ("*" if beyond_noise(r, m.key) else "")
                      + (f"\n{ci}" if (ci := fmt_ci(r["values"].get(m.key))) else "")) for m in metrics]
            table.add_row(r["label"], *cells, *([] if same else [str(len(r["seeds"]))]), style=style)
        console.print(table)
    from unlearnbench.reports.expected import rich_tables

    for renderable in rich_tables(summary):  # the recipe and the paper's numbers beside ours
        console.print(renderable)


def print_report_result(result, *, show_table: bool = True) -> None:
    if show_table:
        print_summary(result.summary)
    regs = result.regressions
    if result.previous_created is None:
        console.print("No previous report to compare with.")
    elif regs:
        console.print(f"[bold red]{len(regs)} regression(s)[/] since the report of {result.previous_created}:")
        for c in regs:
            console.print(f"  - {c.describe()}", highlight=False)
    else:
        console.print(f"No regression since the report of {result.previous_created}.")
    failed = result.summary.get("failed") or []
    if failed:
        console.print(f"[yellow]{len(failed)} failed run(s)[/] are listed in the report.")
    console.print(f"Report: {result.html}\nSummary: {result.markdown}", highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def report(
    experiment: str = typer.Option(..., "--experiment", "-e", help="MLflow experiment to report on."),
    out: Path = typer.Option(Path("reports"), "--out", "-o", help="Folder for reports (one sub-folder per experiment)."),
    run_id: str | None = typer.Option(None, "--run-id", help="Study parent run to report (default: the latest study)."),
    tolerance: float | None = typer.Option(
        None, "--tolerance",
        help="Use a fixed gate instead of the 95 % intervals: points an accuracy-like metric may worsen before it "
             "counts as a regression.",
    ),
    log: bool = typer.Option(True, "--log/--no-log", help="Attach the report to the study's MLflow run."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="Exit with code 1 when a regression is found (a change worse beyond its 95 % interval, or than --tolerance)."),
    tracking_uri: str | None = TrackingOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Render an HTML report (plots inlined) and a Markdown summary of an experiment's runs, and
    flag regressions against the previous report of the same experiment."""
    setup_output(quiet)
    from unlearnbench.api import build_report
    from unlearnbench.core.errors import ConfigError

    if tolerance is not None and not (tolerance >= 0 and tolerance != float("inf")):  # NaN fails >= too
        raise ConfigError("--tolerance must be zero or positive (points of accuracy).")
    check_outputs(("--out", out, True))
    result = build_report(experiment, out, tracking_uri=tracking_uri, parent_run_id=run_id, tolerance=tolerance,
                          log_to_mlflow=log)
    print_report_result(result)  # --quiet silences progress, never the results
    if fail_on_regression and result.regressions:
        raise typer.Exit(1)
