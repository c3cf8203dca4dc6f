"""``unlearnbench unlearn``: apply an unlearning method (or a preset) to a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from unlearnbench.api import ConfigError, UserError
from unlearnbench.commands._common import (
    AllowDataMismatchOpt,
    AllowReferenceMismatchOpt,
    ConfigOpt,
    DataRootOpt,
    DeviceOpt,
    DownloadOpt,
    ExperimentOpt,
    LogModelOpt,
    NoTrackOpt,
    PerClassOpt,
    QuietOpt,
    SetOpt,
    SubsetOpt,
    SystemMetricsOpt,
    ThreadsOpt,
    TrackingOpt,
    app,
    check_outputs,
    console,
    data_source,
    handle_errors,
    setup_output,
)
from unlearnbench.core.config import flatten, load_yaml, parse_overrides

_ROWS = (
    ("forget_acc", "forget acc (%)"),
    ("retain_acc", "retain acc (%)"),
    ("val_acc", "val acc (%)"),
    ("test_acc", "test acc (%)"),
    ("test_retained_acc", "test acc, kept classes (%)"),
    ("test_forgotten_acc", "test acc, forgotten classes (%)"),
)


@app.command()
@handle_errors
def unlearn(
    method: str | None = typer.Argument(None, help="Registered method (see `ls methods`); optional with --preset."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Original model checkpoint (from `train`)."),
    forget: str | None = typer.Option(None, "--forget", "-f", help="What to forget: class:3, random:0.1, indices:FILE."),
    out: Path = typer.Option(Path("runs/unlearned.pt"), "--out", "-o", help="Checkpoint to write."),
    preset: str | None = typer.Option(None, "--preset", help="A published protocol (see `ls presets`)."),
    prune: float | None = typer.Option(None, "--prune", help="Prune conv weights to this sparsity first (OMP), e.g. 0.95."),
    adv_retain: str | None = typer.Option(None, "--adv-retain", help="Attack for adversarial retain batches, e.g. pgd."),
    seed: int | None = typer.Option(None, "--seed", help="Unlearning seed (default 0)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip the evaluation (accuracies, MIA, gaps)."),
    reference: Path | None = typer.Option(None, "--reference", "-r", help="Retrained reference checkpoint: adds gaps and Avg. Gap."),
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
    log_model: bool = LogModelOpt,
    system_metrics: bool = SystemMetricsOpt,
    quiet: bool = QuietOpt,
    threads: int | None = ThreadsOpt,
) -> None:
    """Unlearn a forget set from a checkpoint and write the unlearned checkpoint."""
    setup_output(quiet, threads=threads)
    from unlearnbench import api
    from unlearnbench.api import load_checkpoint, save_checkpoint
    from unlearnbench.core.data import parse_forget_spec
    from unlearnbench.unlearn import METHODS
    from unlearnbench.unlearn.jobs import accuracies
    from unlearnbench.unlearn.presets import PRESETS

    # Everything a user can get wrong is checked before the (possibly long) run.
    values: dict[str, Any] = {}
    dataset = None
    if preset is not None:
        p = PRESETS.get(preset)
        if method is not None and method != p.method:
            raise ConfigError(f"Preset {preset!r} uses method {p.method!r}, not {method!r}; drop one of them.")
        method, dataset, values = p.method, p.dataset, dict(p.config)
        forget = forget or p.forget
        prune = prune if prune is not None else p.prune
    if method is None:
        raise ConfigError("Name a METHOD (see `unlearnbench ls methods`) or a --preset.")
    METHODS.get(method)
    if forget is None:
        raise ConfigError("Say what to forget with --forget, e.g. --forget class:3 or --forget random:0.1.")
    spec = parse_forget_spec(forget)  # the one parse of this request: the object is passed down
    if config is not None:
        values.update(load_yaml(config))
    values.update(parse_overrides(set_ or []))
    seed = _resolve_seed(seed, values)
    check_outputs(("--out", out, False), inputs=(checkpoint, reference, config), specs=(spec,),
                  store=False if no_track else tracking_uri)
    ckpt = load_checkpoint(checkpoint)
    from unlearnbench.unlearn.base import method_task

    ckpt.require_task(method_task(method), f"method {method}")
    if ckpt.task != "classification":
        raise ConfigError("The unlearn command evaluates classifiers; unlearn a generation model in a generation study "
                          "(unlearnbench benchmark digits-generation) or with unlearnbench.unlearn() from Python.")
    ref_ckpt = load_checkpoint(reference) if reference is not None and not no_eval else None
    request = api.check_unlearn(ckpt, method, spec, config=values, prune=prune, adv_retain=adv_retain, seed=seed,
                                dataset=dataset, preset=preset)
    if preset is not None and p.release:
        console.print(f"Preset {preset} follows {p.release}" + (f"; quirks: {len(p.quirks)} (ls presets {preset})"
                      if p.quirks else ""), style="dim", highlight=False)
    track = None
    if not no_track:
        from unlearnbench.eval import tracking

        track = tracking
        tracking.setup(tracking_uri, experiment)  # fail fast, before any work
        tracking.enable_system_metrics(system_metrics)

    from unlearnbench.core.progress import images_seen

    images_before = images_seen()
    source = data_source(data_root, download, subset, per_class)
    # The run opens before the work (RUNNING while it unlearns; a true duration); what is known
    # only afterwards (the method's full config, metrics, artifacts) is logged into it at the end.
    # The data is loaded and split once, inside run_unlearn; the per-epoch curves (for MLflow's
    # charts) are recorded on that same forget set.
    with _live_run(track, ckpt.meta, method, forget, preset, seed):
        outcome = api.run_unlearn(request, device=device, source=source, reference=ref_ckpt,
                                  allow_data_mismatch=allow_data_mismatch,
                                  allow_reference_mismatch=allow_reference_mismatch, record_epochs=not no_track)
        history = outcome.history
        report, before = None, {}
        if not no_eval:
            report = _evaluate(outcome, ref_ckpt)
            # The report's accuracies go into the checkpoint's metadata and the summary (the engine
            # already predicted every split); only the original's are computed for the comparison.
            outcome.metrics.update({k: report.values[k] for k, _ in _ROWS if k in report.values})
            before = accuracies(outcome.original, outcome.data)
        utility = None
        if before:
            from unlearnbench.unlearn.recipes import utility_drop

            utility = utility_drop(method, before, outcome.metrics, preset or request.recipe, request.recipe_fits)
            if utility:  # kept with the checkpoint, the report and the MLflow run
                outcome.meta["utility_warning"] = utility
                if report is not None:
                    report.config["utility_warning"] = utility
        images = images_seen() - images_before
        # The checkpoint is written before anything is logged: if the store breaks since it was
        # checked (locked, read-only), the user still gets the model they asked for.
        save_checkpoint(out, outcome.model, outcome.meta)
        if track is not None:
            _log_run(track, outcome, out, checkpoint, preset, prune, adv_retain, seed, report, history, log_model)
    _summary(method, out, outcome, before, images)
    if utility:
        console.print(f"Warning: {utility}", highlight=False, soft_wrap=True)
    if report is not None:
        from unlearnbench.commands.evaluate import _summary_table

        console.print(_summary_table(report))


def _evaluate(outcome, ref_ckpt):
    """The full evaluation engine on the fresh model (the `unlearn` default; --no-eval skips it)."""
    from unlearnbench.api import evaluate_model
    from unlearnbench.core.config import to_dict

    device = next(outcome.model.parameters()).device
    # run_unlearn checked the reference against the run before unlearning.
    ref = ref_ckpt.build(device) if ref_ckpt is not None else None
    return evaluate_model(
        outcome.model, outcome.data, reference=ref, original=outcome.original,
        rte_seconds=outcome.result.seconds, config={**to_dict(outcome.result.config), **_mismatches(outcome.meta)},
        meta=outcome.meta,
    )


def _mismatches(meta: dict) -> dict:
    """Protocol mismatches the user allowed (--allow-*-mismatch): recorded with the run."""
    return {k: meta[k] for k in ("data_mismatch", "reference_mismatch") if meta.get(k)}


def _log_run(tracking, outcome, out: Path, checkpoint: Path, preset, prune, adv_retain, seed: int, report=None,
             history=(), log_model: bool = False) -> None:
    from unlearnbench.eval.inputs import dataset_inputs

    meta = outcome.meta
    method = meta["method"]
    release = ""
    if preset:
        from unlearnbench.unlearn.presets import PRESETS

        release = PRESETS.get(preset).release
    params = {
        **flatten(outcome.result.config), "method": method, "forget": meta["forget"], "dataset": meta["dataset"],
        "model": meta["model"], "prune": prune, "adv_retain": adv_retain or "", "preset": preset or "",
        "preset_release": release, "checkpoint": str(checkpoint), **_mismatches(meta), **({"recipe": meta["recipe"]} if meta.get("recipe") else {}),
    }
    tracking.log_params(params)
    tracking.set_tags({"git_sha": meta["provenance"]["git_sha"]})
    tracking.log_metrics(outcome.metrics)
    tracking.log_epochs(history, prefix="unlearn/")  # loss and forget accuracy per epoch
    if report is not None:  # logs into the open run: metrics, inputs, report.json, per-class CSV, ROC plots
        tracking.log_report(report, checkpoint=out)
    else:
        tracking.log_inputs(dataset_inputs(outcome.data))
        tracking.log_artifact(out, "checkpoint")
    if log_model:
        tracking.log_model(outcome.model, outcome.data.forget.x[:2].float() / 255)


def _live_run(tracking, meta: dict, method: str, forget: str, preset, seed: int):
    """The MLflow run of this request, opened before its work (a null context without tracking)."""
    import contextlib

    if tracking is None:
        return contextlib.nullcontext()
    tags = {"kind": "unlearn", "method": method, "dataset": meta["dataset"], "model": meta["model"],
            "forget": forget, "seed": seed, "preset": preset or ""}
    name = tracking.readable_run_name("unlearn", method=method, dataset=meta["dataset"], model=meta["model"],
                                      forget=forget, seed=seed, label=preset or method)
    return tracking.run(name, tags=tags)


def _resolve_seed(seed: int | None, values: dict[str, Any]) -> int:
    """--seed wins; a seed in --config/--set is used when --seed is absent."""
    if "seed" in values:
        given = values.pop("seed")
        try:
            given = int(given)
        except (TypeError, ValueError):
            raise ConfigError(f"Bad value {given!r} for 'seed': expected int.") from None
        if seed is not None and seed != given:
            raise UserError(f"Two different seeds given (--seed {seed} and seed={given}); give one.")
        return given
    return 0 if seed is None else seed


def _summary(method: str, out: Path, outcome, before: dict[str, float], images: int = 0) -> None:
    metrics = outcome.metrics
    table = Table(title=f"{method}: {outcome.meta['forget']} on {outcome.meta['dataset']}", title_justify="left")
    table.add_column("metric")
    table.add_column("original", justify="right")
    table.add_column("unlearned", justify="right")
    for key, label in _ROWS:
        if key in metrics:
            table.add_row(label, f"{before[key]:.2f}" if key in before else "", f"{metrics[key]:.2f}")
    table.add_row("run time, RTE (s)", "", f"{metrics['rte_seconds']:.2f}")
    if len(table.rows) > 1:
        console.print(table)
    console.print(f"Saved {out}  (unlearning took {metrics['rte_seconds']:.2f} s{_rate(images, metrics['rte_seconds'])})",
                  highlight=False)


def _rate(images: int, seconds: float) -> str:
    """``, 1234 images/s`` when the method stepped through images (one-shot methods do not)."""
    return f", {images / seconds:.0f} images/s" if images and seconds > 0 else ""
