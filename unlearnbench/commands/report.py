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
    from unlearnbench import api

    print_tables(api.summary_tables(summary), api.expected_tables(summary))


def print_tables(tables: list[dict], extras: list | tuple = ()) -> None:
    """Tables in ``api.summary_tables``' format (a study's, any task), then ``extras`` (rich
    renderables: the recipe and the paper's numbers beside ours)."""
    from rich import box

    for t in tables:
        # A terminal is narrow: robust accuracy on the test split only (the report has every split).
        keep = [i for i, c in enumerate(t["columns"])
                if not c["key"].startswith("robust/") or c["key"].split("/")[1] in ("test", "test_retained")]
        same = t["seeds"] is not None
        title = t.get("title") or (f"forget {t['forget']}: mean ± std over {t['seeds'] if same else 'the'} seed(s), "
                                   "[95 % interval] below; * = differs from retrain beyond the noise")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        table.add_column("method", style="bold", no_wrap=True)
        for i in keep:
            c = t["columns"][i]
            label = _SHORT.get(c["key"]) or (c["label"].replace("Robust test_retained ", "rob ")
                                             .replace("Robust test ", "rob ").replace("autoattack", "AA"))
            # Wrap "98.12 ± 0.35" at its spaces rather than cutting numbers in a narrow terminal.
            table.add_column(label, justify="right", min_width=6, overflow="fold")
        if not same:
            table.add_column("seeds", justify="right")
        points = [t["points"][i] for i in keep]
        if any(points):
            table.add_row("n (points)", *points, *([] if same else [""]), style="dim")
        for r in t["rows"]:
            style = "italic dim" if r["method"] in ("retrain", "original") else None
            # The interval on its own line: the value stays readable in a narrow column.
            cells = [(c["value"] + ("*" if c["beyond_noise"] else "") + (f"\n{c['ci']}" if c["ci"] else ""))
                     for c in (r["cells"][i] for i in keep)]
            table.add_row(r["label"], *cells, *([] if same else [str(r["seeds"])]), style=style)
        console.print(table)
    for renderable in extras:
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
    from unlearnbench.api import ConfigError, build_report

    if tolerance is not None and not (tolerance >= 0 and tolerance != float("inf")):  # NaN fails >= too
        raise ConfigError("--tolerance must be zero or positive (points of accuracy).")
    check_outputs(("--out", out, True))
    result = build_report(experiment, out, tracking_uri=tracking_uri, parent_run_id=run_id, tolerance=tolerance,
                          log_to_mlflow=log)
    print_report_result(result)  # --quiet silences progress, never the results
    if fail_on_regression and result.regressions:
        raise typer.Exit(1)
