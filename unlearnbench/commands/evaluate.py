"""``unlearnbench evaluate``, ``unlearnbench ui`` and ``unlearnbench shadow train|info``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import typer
from rich.table import Table

from unlearnbench.api import UserError
from unlearnbench.commands._common import (
    AllowDataMismatchOpt,
    AllowReferenceMismatchOpt,
    ConfigOpt,
    DataRootOpt,
    DeviceOpt,
    DownloadOpt,
    ExperimentOpt,
    NoTrackOpt,
    PerClassOpt,
    QuietOpt,
    SetOpt,
    SubsetOpt,
    SystemMetricsOpt,
    ThreadsOpt,
    TrackingOpt,
    app,
    build_config,
    check_outputs,
    console,
    data_source,
    err_console,
    handle_errors,
    json_safe,
    print_json,
    setup_output,
)
from unlearnbench.core.config import from_dict, load_yaml, parse_overrides

shadow_app = typer.Typer(help="Shadow-model pools for LiRA and U-LiRA.", no_args_is_help=True)
app.add_typer(shadow_app, name="shadow")


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError(f"{text!r} names nothing; give comma-separated names such as forget_acc,mia_efficacy.")
    return names


def _fmt(key: str, value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if key.endswith("_acc") or key.startswith(("mia_", "clean/", "robust/", "gap/ua", "gap/mia_e")) or key in ("ua", "avg_gap"):
        return f"{value:.2f}"
    return f"{value:.4g}"


_ORDER = ("forget_acc", "ua", "retain_acc", "test_acc", "test_retained_acc", "test_forgotten_acc", "val_acc",
          "mia_efficacy", "mia_entropy", "mia_m_entropy", "avg_gap", "aus", "rte_seconds")


def _ci(key: str, interval, digits: int | None = None) -> str:
    if interval is None:
        return ""
    digits = digits if digits is not None else (2 if _fmt(key, 1.0) == "1.00" else 3)
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _compact(title: str) -> Table:
    from rich import box

    # No vertical rules: room for the intervals in an 80-column terminal or log.
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)


def _summary_table(report) -> Table:
    paired = any(report.gap_paired(r[0]) for r in report.rows() if r[2] is not None)
    table = _compact(f"Evaluation of {report.name or 'model'}: value [95 % interval] on n points; "
                     "* = gap to the reference beyond that noise"
                     + (" (paired: McNemar on the same images)" if paired else ""))
    for col, just in (("metric", "left"), ("value [95 % CI]", "right"), ("n", "right"), ("ref", "right"),
                      ("|gap|", "right"), ("better", "left")):
        table.add_column(col, justify=just, style="bold" if col == "metric" else None, no_wrap=col != "better")
    rows = [r for r in report.rows() if not r[0].startswith("mia/")]
    rank = {k: i for i, k in enumerate(_ORDER)}
    rows.sort(key=lambda r: (rank.get(r[0], len(rank)), r[0]))
    arrows = {"higher": "higher", "lower": "lower", "reference": "near ref"}
    for key, value, ref, gap, direction in rows:
        n = report.n(key)
        ci = _ci(key, report.interval(key))
        noise = report.beyond_noise(key) if ref is not None else None
        table.add_row(key, f"{_fmt(key, value)} {ci}".strip(), "" if n is None else str(n), _fmt(key, ref),
                      _fmt(key, gap) + ("*" if noise else " " if noise is False else ""),
                      arrows.get(direction, direction))
    return table


def _num3(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def _mia_table(report) -> Table | None:
    groups: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in report.values.items():
        parts = key.split("/")
        if parts[0] == "mia" and len(parts) == 4:
            groups.setdefault((parts[1], parts[2]), {})[parts[3]] = value
    if not groups:
        return None
    table = _compact("Membership attacks: members (forget / retain) vs test images; AUC 0.5 = chance, "
                     "compare with the reference (ref)")
    # Short headers: nine columns with an interval in 80 characters.
    for col in ("attack", "mem", "n m/non", "auc [95 % CI]", "ref", "bal", "tpr@1%", "tpr@.1%"):
        table.add_column(col, justify="left" if col in ("attack", "mem") else "right", no_wrap=True)
    for (attack, pair), st in groups.items():
        prefix = f"mia/{attack}/{pair}"
        ref = report.reference_values.get(f"{prefix}/auc")
        n_mem, n_non = report.counts.get(f"{prefix}/n_members"), report.counts.get(f"{prefix}/n_nonmembers")
        counts = f"{n_mem}/{n_non}" if n_mem is not None else ""

        def tpr(k: str, prefix: str = prefix, st: dict = st) -> str:
            return "undef." if f"{prefix}/{k}" in report.undefined else _num3(st.get(k))

        auc = f"{_num3(st.get('auc'))} {_ci('', report.interval(f'{prefix}/auc'), 2)}".strip()
        # pairs are forget_test / retain_test: members vs test images
        bal = st.get("bal_acc")
        table.add_row(attack, pair.removesuffix("_test"), counts, auc, _num3(ref), "-" if bal is None else f"{bal:.2f}", tpr("tpr_at_fpr_0.01"),
                      tpr("tpr_at_fpr_0.001"))
    return table


def _undefined_note(report) -> str | None:
    """One line for the undefined low-FPR TPRs (the reason is the same for every attack)."""
    keys = [k for k in report.undefined if k.startswith("mia/")]
    if not keys:
        return None
    lows = sorted({k.rsplit("_", 1)[-1] for k in keys}, key=float)
    return (f"undef.: TPR at FPR {', '.join(lows)} is not measurable where 1/n_nonmembers is larger than that FPR "
            f"({len(keys)} value(s); see report.undefined).")


@app.command()
@handle_errors
def evaluate(
    checkpoint: list[Path] = typer.Option(
        ..., "--checkpoint", "-c",
        help="Checkpoint to evaluate (e.g. the unlearned model); repeat -c for several against one reference/original, which are then evaluated once."),
    reference: Path | None = typer.Option(None, "--reference", "-r", help="Retrained reference: checkpoint, or a report JSON."),
    original: Path | None = typer.Option(None, "--original", help="Original model checkpoint (or report JSON), for AUS."),
    forget: str | None = typer.Option(None, "--forget", help="Forget spec (default: recorded in the checkpoint)."),
    metrics: str | None = typer.Option(None, "--metrics", help="Comma-separated metrics (see `unlearnbench ls metrics`)."),
    robustness: str | None = typer.Option(None, "--robustness", help="Comma-separated attacks, e.g. pgd,autoattack."),
    norm: str | None = typer.Option(None, "--norm", help="Threat-model norm: Linf or L2 (default Linf)."),
    eps: str | None = typer.Option(None, "--eps", help="Threat-model radius, e.g. 8/255 (default)."),
    robust_n: int | None = typer.Option(None, "--robust-n", help="Points per split for robustness (default 1000)."),
    shadow_pool: list[Path] | None = typer.Option(None, "--shadow-pool", help="Shadow pool folder (LiRA and/or U-LiRA; repeatable)."),
    rte_seconds: float | None = typer.Option(None, "--rte-seconds", help="Unlearning run time (default: from the checkpoint)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the evaluation (robustness subsets)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON to this file; - prints only the JSON, on stdout."),
    no_log_checkpoint: bool = typer.Option(False, "--no-log-checkpoint", help="Do not copy the checkpoint into MLflow."),
    subset: int | None = SubsetOpt,
    per_class: int | None = PerClassOpt,
    allow_data_mismatch: bool = AllowDataMismatchOpt,
    allow_reference_mismatch: bool = AllowReferenceMismatchOpt,
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    device: str = DeviceOpt,
    data_root: Path | None = DataRootOpt,
    download: bool = DownloadOpt,
    tracking_uri: str | None = TrackingOpt,
    experiment: str = ExperimentOpt,
    no_track: bool = NoTrackOpt,
    system_metrics: bool = SystemMetricsOpt,
    quiet: bool = QuietOpt,
    threads: int | None = ThreadsOpt,
) -> None:
    """Evaluate a checkpoint: accuracies, MIAs, gaps to the retrained reference; log to MLflow."""
    setup_output(quiet, threads=threads)
    from unlearnbench import api
    from unlearnbench.eval.engine import EvalConfig, Evaluator

    cfg = build_config(
        EvalConfig, config, set_, metrics=_names(metrics), robustness=_names(robustness), norm=norm, eps=eps,
        robust_n=robust_n, seed=seed,
    )
    to_stdout = json_out is not None and str(json_out) == "-"
    out = err_console if to_stdout else console  # with --json -, stdout carries the JSON alone
    check_outputs(("--json", None if to_stdout else json_out, False),
                  inputs=(*checkpoint, reference, original, config, *(shadow_pool or ())), specs=(forget,),
                  store=False if no_track else tracking_uri)
    for path in checkpoint:
        if not path.is_file():
            raise UserError(f"Checkpoint {str(path)!r} does not exist.")
    track = None
    if not no_track:
        from unlearnbench.eval import tracking

        tracking.setup(tracking_uri, experiment)  # fail fast, before any work
        tracking.enable_system_metrics(system_metrics)
        track = tracking
    evaluator = Evaluator.from_config(cfg, shadow_pool=list(shadow_pool) if shadow_pool else None)
    results = []
    for path in checkpoint:
        # One live run per checkpoint, open while it is evaluated (renamed once the report says
        # what was evaluated); without tracking a null context.
        live = track.run(f"evaluate {path.name}", tags={"kind": "eval"}) if track is not None else contextlib.nullcontext()
        with live:
            report = api.evaluate_checkpoint(
                path, reference=reference, original=original, forget=forget, evaluator=evaluator, device=device,
                source=data_source(data_root, download, subset, per_class), rte_seconds=rte_seconds,
                allow_data_mismatch=allow_data_mismatch, allow_reference_mismatch=allow_reference_mismatch,
            )
            run_id = None
            if track is not None:
                run_id = track.log_report(report, checkpoint=path, log_checkpoint=not no_log_checkpoint, rename=True)
        if not to_stdout:
            console.print(_summary_table(report))
            mia = _mia_table(report)
            if mia is not None:
                console.print(mia)
            note = _undefined_note(report)
            if note is not None:
                console.print(note, style="dim", highlight=False)
        # Class-wise-only metrics on a random spec are not worth a line; missing inputs are.
        skipped = {k: v for k, v in report.skipped.items() if v != "needs classwise"}
        if skipped:
            out.print("Skipped: " + "; ".join(f"{k} ({v})" for k, v in sorted(skipped.items())), style="dim")
        if run_id is not None:
            out.print(f"Logged MLflow run {run_id} in experiment {experiment!r} ({track.resolve_uri(tracking_uri)}).")
        out.print(f"Evaluated {path} in {report.timings.get('total', 0):.1f} s.", style="dim", highlight=False)
        results.append((report, run_id))
    if len(checkpoint) > 1 and evaluator.companion_hits:
        out.print(f"The reference and original were predicted and evaluated once for {len(checkpoint)} checkpoints.",
                  style="dim")
    if json_out is None:
        return
    if len(results) == 1 and not to_stdout:
        results[0][0].save(json_out)
    else:
        data = [{**json.loads(r.to_json()), "mlflow_run_id": rid} for r, rid in results]
        data = data[0] if len(data) == 1 else data
        if to_stdout:
            print_json(data)
            return
        from unlearnbench.reports.render import write_text_atomic

        write_text_atomic(json_out, json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")
    console.print(f"Wrote {json_out}")


@app.command()
@handle_errors
def ui(
    tracking_uri: str | None = TrackingOpt,
    port: int = typer.Option(5000, "--port", help="Port of the MLflow UI."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (127.0.0.1 = this machine only)."),
    workers: int = typer.Option(1, "--workers", help="Server worker processes (MLflow's default is 4)."),
) -> None:
    """Start the MLflow UI on the tracking store the other commands log to."""
    from unlearnbench import api

    cmd, uri = api.ui_command(tracking_uri, host=host, port=port, workers=workers)
    console.print(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl-C stops it).")
    # MLflow's background job runner (GenAI jobs) is not needed to browse runs and starts extra
    # processes; a user who wants it can set the variable themselves.
    env = {**os.environ}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # Its own process group, so stopping us also stops the server's workers.
    proc = subprocess.Popen(cmd, start_new_session=True, env=env)

    def _stop(signum, frame):  # SIGTERM: stop the UI like Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        rc = 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
    if rc not in (0, -signal.SIGTERM):
        raise UserError(f"The MLflow UI exited with code {rc}; see its messages above.")


@shadow_app.command("train")
@handle_errors
def shadow_train(
    out: Path = typer.Option(..., "--out", "-o", help="Pool folder (created; re-running resumes it)."),
    dataset: str = typer.Option("digits", "--dataset", "-d", help="Registered dataset."),
    model: str = typer.Option("cnn", "--model", "-m", help="Registered model (use the target's architecture)."),
    n: int = typer.Option(16, "--n", help="Number of shadow models (each example is IN for n/2 of them)."),
    ulira_method: str | None = typer.Option(None, "--ulira-method", help="Build a U-LiRA pool with this unlearning method."),
    forget: str | None = typer.Option(None, "--forget", help="U-LiRA: the candidate forget examples (each pair forgets a random half)."),
    targets: int | None = typer.Option(None, "--targets", help="U-LiRA: pairs used as targets, not shadows (default n/2)."),
    method_config: Path | None = typer.Option(None, "--method-config", help="YAML config of the U-LiRA method."),
    method_set: list[str] | None = typer.Option(None, "--method-set", help="Override one method config key (repeatable)."),
    executor: str = typer.Option("local", "--executor", help="local (in-process) or ray."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Ray cluster address (default: start a local Ray)."),
    num_cpus: float = typer.Option(1.0, "--num-cpus", help="CPUs per shadow job (Ray)."),
    num_gpus: float = typer.Option(0.0, "--num-gpus", help="GPUs per shadow job (Ray)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per shadow (default: the dataset recipe)."),
    lr: float | None = typer.Option(None, "--lr"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    seed: int = typer.Option(0, "--seed", help="Pool seed (masks and shadow seeds)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Split seed: must match the evaluated models'."),
    val_fraction: float = typer.Option(0.1, "--val-fraction"),
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    device: str = DeviceOpt,
    data_root: Path | None = DataRootOpt,
    download: bool = DownloadOpt,
    quiet: bool = QuietOpt,
    threads: int | None = typer.Option(None, "--threads", help="Intra-op CPU threads of every shadow job "
                                       "(default: --num-cpus, at least 1)."),
) -> None:
    """Train a shadow-model pool (independent jobs, locally or on Ray) for LiRA / U-LiRA."""
    setup_output(quiet)
    from unlearnbench.api import train_shadow_pool
    from unlearnbench.core.data import DataSource
    from unlearnbench.core.executor import ExecutorConfig
    from unlearnbench.core.train import TrainConfig, recipe_for

    cfg = build_config(TrainConfig, config, set_, base=recipe_for(dataset), epochs=epochs, lr=lr,
                       batch_size=batch_size, device=device)
    ex = from_dict(ExecutorConfig, {"kind": executor, "ray_address": ray_address, "num_cpus": num_cpus, "num_gpus": num_gpus,
                                    "threads": threads})
    mcfg = {**(load_yaml(method_config) if method_config else {}), **parse_overrides(method_set or [])}
    check_outputs(("--out", out, True), inputs=(method_config, config), specs=(forget,))
    pool = train_shadow_pool(
        out, dataset=dataset, model=model, n=n, config=cfg, split_seed=split_seed, val_fraction=val_fraction,
        seed=seed, source=DataSource.from_env(data_root, download), executor=ex, ulira_method=ulira_method,
        forget=forget, method_config=mcfg or None, targets=targets,
    )
    _print_pool(pool)


@shadow_app.command("info")
@handle_errors
def shadow_info(pool_dir: Path = typer.Argument(..., help="Pool folder.")) -> None:
    """Show a shadow pool's settings and its hold-out attack results."""
    from unlearnbench import api

    _print_pool(api.shadow_pool(pool_dir))


def _print_pool(pool) -> None:
    m = pool.manifest
    what = f"U-LiRA pool ({m['method']} on {m['forget']})" if pool.kind == "ulira" else "LiRA pool"
    console.print(f"{what} in {pool.path}: {pool.n}/{m['n']} shadows, {m['model']} on {m['dataset']} "
                  f"(split_seed {m['split_seed']}), {sum(s['seconds'] for s in m['shadows']):.0f} s of training.")
    hold = m.get("holdout")
    if hold and pool.kind == "ulira":
        u = hold["ulira"]
        console.print(f"U-LiRA over {u['n_targets']} targets (half unlearned, half retrained; {u['n_members']} + "
                      f"{u['n_nonmembers']} decisions): accuracy {u['acc']:.3f} [{u['acc_lo']:.3f}, {u['acc_hi']:.3f}], "
                      f"AUC {u['auc']:.3f} [{u['auc_lo']:.3f}, {u['auc_hi']:.3f}] (95 % intervals over the targets, "
                      "given this pool's shadows; 0.5 = like retraining).")
        if "auc_fit_lo" in u:
            console.print(f"With the shadow fit's variance (bootstrap over shadow and target pairs, {u['n_boot']} "
                          f"draws), for claims about the method: accuracy [{u['acc_fit_lo']:.3f}, {u['acc_fit_hi']:.3f}], "
                          f"AUC [{u['auc_fit_lo']:.3f}, {u['auc_fit_hi']:.3f}].")
    elif hold:
        table = Table(title="Hold-out attack on the pool's own shadows", title_justify="left")
        for col in ("attack", "auc", "bal_acc", "tpr@1%fpr", "tpr@0.1%fpr"):
            table.add_column(col, justify="left" if col == "attack" else "right")
        for name, st in hold.items():
            table.add_row(name, *(_fmt("", st.get(k)) for k in ("auc", "bal_acc", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001")))
        console.print(table)
