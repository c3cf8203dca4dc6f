"""``unlearnbench benchmark`` (run or resume a study) and ``unlearnbench demo`` (the whole pipeline
on digits, then its report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from unlearnbench.commands._common import (
    DataRootOpt,
    DownloadOpt,
    PerClassOpt,
    QuietOpt,
    SetOpt,
    SubsetOpt,
    SystemMetricsOpt,
    TrackingOpt,
    app,
    check_outputs,
    console,
    err_console,
    handle_errors,
    json_safe,
    print_json,
    setup_output,
)

ExecutorOpt = typer.Option("local", "--executor", help="local (in-process) or ray (Ray tasks; needs the ray extra).")
RayAddressOpt = typer.Option(None, "--ray-address", help="Ray cluster address (default: start a local Ray).")
WorkDirOpt = typer.Option(Path("runs/cache"), "--work-dir", help="Cache of trained originals and references.")


def _overrides(sets: list[str] | None) -> dict[str, Any]:
    """``--set seeds=0,1 --set train.epochs=5``: dotted keys reach into the train/evaluation sections."""
    from unlearnbench.core.config import parse_overrides

    out: dict[str, Any] = {}
    for key, value in parse_overrides(sets or []).items():
        section, dot, sub = key.partition(".")
        if dot:
            out.setdefault(section, {})[sub] = value
        else:
            out[key] = value
    return out


def load(study: str, sets: list[str] | None, **cli: Any):
    """The study (a file or a shipped name) of whichever task its ``task:`` names, with ``--set``
    and the options' overrides (None: not given), checked in full; and its file."""
    from unlearnbench import api

    path = api.study_file(study)
    return api.load_study(path, changes=_overrides(sets), **cli), path


def run_and_summarize(cfg, path: Path, *, executor: str, ray_address: str | None, cpus: float, gpus: float,
                      threads: int | None = None, tracking_uri: str | None, work_dir: Path, data_root: Path | None,
                      download: bool, new: bool, quiet: bool, json_out: Path | None = None, reports: Path = Path("reports")):
    """Run the study (any task) and print its tables (always: ``--quiet`` silences progress, not
    results). ``json_out``: also write the outcome and the tables as JSON there (``-``: stdout, alone)."""
    from unlearnbench.api import run_study
    from unlearnbench.commands.report import print_tables
    from unlearnbench.core.data import DataSource
    from unlearnbench.core.executor import ExecutorConfig

    ex = ExecutorConfig(kind=executor, ray_address=ray_address, num_cpus=cpus, num_gpus=gpus, threads=threads)
    source = DataSource.from_env(data_root, download)
    result = run_study(cfg, tracking_uri=tracking_uri, executor=ex, work_dir=work_dir, source=source, new=new,
                       study_file=path, reports=reports,
                       on_event=(None if quiet else lambda text: err_console.print(text, highlight=False)))
    report = result.report
    to_stdout = json_out is not None and str(json_out) == "-"
    out = err_console if to_stdout else console
    if not to_stdout:
        print_tables(report.tables, report.extras)
    out.print(
        f"Study {result.study} ({result.study_id}): {result.finished} run(s) finished now, "
        f"{result.skipped} already done, {len(result.failures)} failed; experiment {result.experiment!r}, "
        f"parent run {result.parent_run_id} in {result.tracking_uri}.", highlight=False, soft_wrap=True,
    )
    if report.files:
        out.print(f"Report: {report.files[0]}" + "".join(f" (and {f})" for f in report.files[1:]),
                  highlight=False, soft_wrap=True)
    from rich.markup import escape

    for key, error in result.failures:  # labels such as "finetune [prune=0.95]" are not markup
        out.print(f"[yellow]failed[/] {escape(key)}: {escape(error)}", highlight=False, soft_wrap=True)
    if json_out is not None:
        data = {"study": result.study, "study_id": result.study_id, "experiment": result.experiment,
                "tracking_uri": result.tracking_uri, "parent_run_id": result.parent_run_id, "total": result.total,
                "finished": result.finished, "skipped": result.skipped, "resumed": result.resumed,
                "failures": [{"run_key": k, "error": e} for k, e in result.failures], **report.data}
        if to_stdout:
            print_json(data)
        else:
            from unlearnbench.reports.render import write_text_atomic

            write_text_atomic(json_out, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
            console.print(f"Wrote {json_out}", highlight=False)
    return result


def exit_if_failed(result) -> None:
    """A study with failed runs is not a success: say how many, and exit 1 (not 2: the input was fine)."""
    if result.failures:
        err_console.print(
            f"{len(result.failures)} of {result.total} run(s) failed (listed above); re-run the same command to retry them.",
            highlight=False, soft_wrap=True,
        )
        raise typer.Exit(1)


@app.command()
@handle_errors
def benchmark(
    study: str = typer.Argument(..., help="Study YAML file, or a shipped example name (digits, demo, ...)."),
    executor: str = ExecutorOpt,
    ray_address: str | None = RayAddressOpt,
    cpus_per_job: float = typer.Option(1.0, "--cpus-per-job", help="CPUs Ray reserves per job."),
    threads: int | None = typer.Option(
        None, "--threads",
        help="Intra-op threads of every job, on both executors (default: --cpus-per-job, at least 1); it changes CPU results."),
    gpus_per_job: float = typer.Option(0.0, "--gpus-per-job", help="GPUs Ray reserves per job (fractions pack jobs)."),
    experiment: str | None = typer.Option(None, "--experiment", help="MLflow experiment (default: the study's)."),
    device: str | None = typer.Option(None, "--device", help="Override the study's device: auto, cpu or cuda."),
    new: bool = typer.Option(False, "--new", help="Start a fresh study run instead of resuming the last one."),
    work_dir: Path = WorkDirOpt,
    set_: list[str] | None = SetOpt,
    subset: int | None = SubsetOpt,
    per_class: int | None = PerClassOpt,
    data_root: Path | None = DataRootOpt,
    download: bool = DownloadOpt,
    tracking_uri: str | None = TrackingOpt,
    quiet: bool = QuietOpt,
    system_metrics: bool = SystemMetricsOpt,
    json_out: Path | None = typer.Option(None, "--json", help="Also write the outcome and table as JSON to this file; - prints only the JSON, on stdout."),
    out: Path = typer.Option(Path("reports"), "--out", "-o",
                             help="Folder of the report files a study writes (generation studies: OUT/<study>/report.html)."),
) -> None:
    """Run a study (classification or generation, as its file's task: says): methods × forget
    specs × seeds against the retrained reference, logged to MLflow (a parent run, one child run
    per method, spec and seed). Re-running resumes it: finished runs are not run again."""
    setup_output(quiet)
    from unlearnbench.api import ConfigError

    if executor not in ("local", "ray"):
        raise ConfigError(f"Unknown executor {executor!r}; use local or ray.")
    cfg, path = load(study, set_, experiment=experiment, device=device, subset=subset, per_class=per_class)
    from unlearnbench import api

    api.check_study_executor(cfg, executor)
    json_file = None if json_out is None or str(json_out) == "-" else json_out
    check_outputs(("--json", json_file, False), ("--work-dir", work_dir, True),
                  ("--out", api.study_report_folder(cfg, out), True), inputs=(path,), store=tracking_uri)
    from unlearnbench.eval import tracking

    tracking.enable_system_metrics(system_metrics)  # sampled on the study's parent run
    result = run_and_summarize(cfg, path, executor=executor, ray_address=ray_address, cpus=cpus_per_job,
                               gpus=gpus_per_job, threads=threads, tracking_uri=tracking_uri, work_dir=work_dir, data_root=data_root,
                               download=download, new=new, quiet=quiet, json_out=json_out, reports=out)
    if not result.report.files:  # a study that wrote no report of its own: where to make one
        hint = f"Report: unlearnbench report --experiment {cfg.experiment_name}"
        (err_console if json_out is not None and str(json_out) == "-" else console).print(hint, highlight=False)
    exit_if_failed(result)


@app.command()
@handle_errors
def demo(
    out: Path = typer.Option(Path("reports"), "--out", "-o", help="Report folder."),
    work_dir: Path = WorkDirOpt,
    executor: str = ExecutorOpt,
    new: bool = typer.Option(False, "--new", help="Run the demo study afresh instead of resuming it."),
    set_: list[str] | None = SetOpt,
    tracking_uri: str | None = TrackingOpt,
    quiet: bool = QuietOpt,
    threads: int | None = typer.Option(None, "--threads", help="Intra-op CPU threads of every job (default 1: "
                                       "the demo's jobs are tiny)."),
) -> None:
    """The whole pipeline on the embedded digits data, in a few minutes on a laptop CPU: train the
    original, retrain the reference, unlearn class 3 with salun, l1_sparse, scar, finetune and
    random_label, evaluate (accuracies, MIA, PGD on up to 500 points per split), log to MLflow and
    write the HTML report."""
    setup_output(quiet)
    from unlearnbench.api import build_report
    from unlearnbench.commands.report import print_report_result
    from unlearnbench.eval import tracking

    cfg, path = load("demo", set_)
    uri = tracking.resolve_uri(tracking_uri)
    check_outputs(("--out", out, True), ("--work-dir", work_dir, True), store=uri)
    study = run_and_summarize(cfg, path, executor=executor, ray_address=None, cpus=1.0, gpus=0.0, threads=threads,
                              tracking_uri=uri,
                      work_dir=work_dir, data_root=None, download=False, new=new, quiet=quiet)
    result = build_report(cfg.experiment_name, out, tracking_uri=uri, log_to_mlflow=True)
    print_report_result(result, show_table=False)
    ui = "unlearnbench ui" + (f" --tracking-uri {uri}" if uri != tracking.DEFAULT_URI else "")
    console.print(
        f"\nMLflow store: {uri} (experiment {cfg.experiment_name!r})\n"
        f"Open the report: {result.html.resolve().as_uri()}\n"
        f"Browse the runs: {ui}   (then open http://127.0.0.1:5000)", highlight=False, soft_wrap=True,
    )
    exit_if_failed(study)
