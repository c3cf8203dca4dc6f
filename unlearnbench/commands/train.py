"""``unlearnbench train`` and ``unlearnbench ls``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer
from rich.table import Table

from unlearnbench.api.environment import LISTABLE
from unlearnbench.commands._common import (
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
    build_config,
    check_outputs,
    console,
    data_source,
    handle_errors,
    setup_output,
)
from unlearnbench.core.config import flatten


def _cell(v) -> str:
    if isinstance(v, type):  # config classes: their name is what a user can look up
        return v.__name__
    if isinstance(v, (list, tuple, set, frozenset)):
        return ", ".join(map(str, v))
    return "" if v is None else str(v)


@app.command("ls")
@handle_errors
def ls(
    kind: str = typer.Argument("all", help=f"One of: all, {', '.join(LISTABLE)}."),
    name: str | None = typer.Argument(None, help="One entry in full: every config key with type, default and meaning."),
    json_: bool = typer.Option(False, "--json", help="Print JSON (for scripts) instead of tables."),
) -> None:
    """List registered datasets, models, methods, attacks, metrics, presets or recipes; with NAME,
    show one entry in full (config keys, paper, reference code)."""
    from unlearnbench import api
    from unlearnbench.commands._common import print_json

    if name is not None:
        _show_entry(api.describe_entry(kind, name), json_)
        return
    found = api.list_registries(kind)
    if json_:
        print_json(found if kind == "all" else found.get(kind, []))
        return
    for k, rows in found.items():
        table = Table(title=k, title_justify="left")
        extra_cols = sorted({c for r in rows for c in r if c not in ("name", "summary")})
        table.add_column("name", style="bold")
        table.add_column("summary")
        for c in extra_cols:
            table.add_column(c)
        for r in rows:
            table.add_row(r["name"], r["summary"], *(_cell(r.get(c, "")) for c in extra_cols))
        console.print(table)
    if kind != "all":
        console.print(f"One in full: unlearnbench ls {kind} NAME", style="dim", highlight=False)


def _show_entry(d: dict, json_: bool) -> None:
    from unlearnbench.commands._common import print_json

    if json_:
        print_json(d)
        return
    console.print(f"[bold]{d['name']}[/] ({d['kind'][:-1] if d['kind'].endswith('s') else d['kind']}): {d['summary']}",
                  highlight=False, soft_wrap=True)
    for k, v in d.items():
        if k in ("kind", "name", "summary", "config", "sets"):
            continue
        if k == "recipes":  # one regime per line: where `unlearn` starts on data of that shape
            console.print("  recipes (unlearn's starting config, by the data's shape):", highlight=False)
            for line in v:
                console.print(f"    {line}", highlight=False, soft_wrap=True)
            continue
        console.print(f"  {k}: {_cell(v)}", highlight=False, soft_wrap=True)
    for section, title in (("config", "config keys (--set key=value)"), ("sets", "what it sets")):
        rows = d.get(section)
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        cols = ["key", "type", "default", *(["value"] if section == "sets" else []), "meaning"]
        for c in cols:
            table.add_column(c, style="bold" if c == "key" else None)
        for r in rows:
            table.add_row(*(_cell(r[c]) if r[c] is not None else "null" for c in cols))
        console.print(table)


@app.command()
@handle_errors
def train(
    dataset: str = typer.Option("digits", "--dataset", "-d", help="Registered dataset (see `ls datasets`)."),
    model: str = typer.Option("cnn", "--model", "-m", help="Registered model (see `ls models`), torchvision:NAME or module.path:factory."),
    out: Path = typer.Option(Path("runs/original.pt"), "--out", "-o", help="Checkpoint to write."),
    exclude: str | None = typer.Option(None, "--exclude", help="Train without this forget spec (the retrain reference)."),
    recipe: str | None = typer.Option(
        None, "--recipe", help="Named training recipe, e.g. paper-cifar (see `ls recipes`; default: the dataset's)."),
    prune: float | None = typer.Option(
        None, "--prune", help="Write Unlearn-Sparse's sparse original: train dense, prune this fraction of conv "
        "weights (OMP), rewind to --rewind-epoch and train again with the mask fixed."),
    rewind_epoch: int = typer.Option(8, "--rewind-epoch", help="With --prune: the dense epoch whose weights survive."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs (default: the dataset recipe)."),
    lr: float | None = typer.Option(None, "--lr"),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    seed: int = typer.Option(0, "--seed", help="Training seed (init, data order, augmentation)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the train/val and forget splits."),
    val_fraction: float = typer.Option(0.1, "--val-fraction"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model (worth it on CUDA; mode via --set compile_mode=…)."),
    adversarial: str | None = typer.Option(None, "--adversarial", help="Adversarial training: pgd_at, trades, mart, fast_at, nfgsm, gradalign."),
    adv_eps: str | None = typer.Option(None, "--adv-eps", help="Adversarial-training radius, e.g. 8/255 (default per norm)."),
    adv_norm: str = typer.Option("Linf", "--adv-norm", help="Adversarial-training norm: Linf or L2."),
    adv_steps: int = typer.Option(10, "--adv-steps", help="Inner PGD steps (pgd_at, trades, mart)."),
    subset: int | None = SubsetOpt,
    per_class: int | None = PerClassOpt,
    image_size: int | None = typer.Option(None, "--image-size", help="imagefolder: resize images to this many pixels a side (default 32)."),
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
    """Train an original model (or, with --exclude, the retrain-from-scratch reference)."""
    setup_output(quiet, threads=threads)
    from unlearnbench import api
    from unlearnbench.api import save_checkpoint
    from unlearnbench.core.recipes import resolve
    from unlearnbench.core.train import TrainConfig

    api.check_train(dataset, model)  # unknown names (or torchvision:/module:factory specs) fail first
    from unlearnbench.core.models import model_task

    if model_task(model) == "generation":  # the model declares its task; a DDPM trains by steps
        from unlearnbench.api import ConfigError

        given = [flag for flag, v in (("--recipe", recipe), ("--prune", prune), ("--epochs", epochs),
                                      ("--adversarial", adversarial), ("--compile", compile or None),
                                      ("--log-model", log_model or None)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} do not apply to the generation model {model}; it trains by steps "
                              "(--set steps=N).")
        from unlearnbench.commands.generate import train_generation

        track = None
        if not no_track:
            from unlearnbench.eval import tracking as track
        train_generation(dataset=dataset, model=model, out=out, exclude=exclude, seed=seed, split_seed=split_seed,
                         val_fraction=val_fraction, config=config, set_=set_, device=device,
                         source=data_source(data_root, download, subset, per_class, image_size), lr=lr,
                         batch_size=batch_size, track=track, tracking_uri=tracking_uri, experiment=experiment)
        return
    chosen = resolve(recipe, dataset)
    cfg = build_config(
        TrainConfig, config, set_, base=chosen.train,
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, compile=compile or None,
    )
    api.check_prune(prune, rewind_epoch, cfg.epochs, exclude=exclude, adversarial=adversarial)
    check_outputs(("--out", out, False), inputs=(config,), specs=(exclude,), store=False if no_track else tracking_uri)
    source = data_source(data_root, download, subset, per_class, image_size)
    track = None
    if not no_track:
        from unlearnbench.eval import tracking

        track = tracking
        tracking.setup(tracking_uri, experiment)
        tracking.enable_system_metrics(system_metrics)
    from unlearnbench.core.progress import images_seen

    images_before = images_seen()
    run = contextlib.nullcontext()
    if track is not None:
        # The run opens before the work, so it shows RUNNING while training and its duration is
        # the training's; params and tags known only afterwards (the final config, the data
        # digest, the git sha) are logged at the end.
        kind = "retrain" if exclude else "original"
        tags = {"kind": kind, "dataset": dataset, "model": model, "seed": seed, "split_seed": split_seed,
                "exclude": exclude or ""}
        name = track.readable_run_name(kind, dataset=dataset, model=model, seed=seed,
                                       forget=f"without {exclude}" if exclude else "")
        run = track.run(name, tags=tags)
    with run:
        outcome = api.train(dataset, model, cfg, recipe=chosen.name, exclude=exclude, split_seed=split_seed,
                            val_fraction=val_fraction, source=source, adversarial=adversarial, adv_norm=adv_norm,
                            adv_eps=adv_eps, adv_steps=adv_steps, prune=prune, rewind_epoch=rewind_epoch)
        cfg = outcome.config
        save_checkpoint(out, outcome.model, outcome.meta)
        metrics = outcome.meta["metrics"]
        if track is not None:
            from unlearnbench.eval.inputs import training_inputs

            track.log_params({
                **flatten(cfg), "recipe": chosen.name, "prune": prune or "", "rewind_epoch": rewind_epoch if prune else "",
                "dataset": dataset, "model": model, "exclude": exclude or "", "split_seed": split_seed,
                "subset": source.subset or "", "per_class": source.per_class or "",
                **(flatten(outcome.adversarial, "adversarial.") if outcome.adversarial is not None else {})})
            track.set_tags({"git_sha": outcome.meta["provenance"]["git_sha"],
                            "data_sha256": outcome.meta["data_fingerprint"]["train_sha256"][:12]})
            track.log_history(outcome.history)  # train_loss, lr, val_acc per epoch (step = epoch)
            track.log_metrics(metrics)
            track.log_inputs(training_inputs(outcome.splits, outcome.data))
            track.log_artifact(out, "checkpoint")
            if log_model:
                track.log_model(outcome.model, outcome.splits.test.x[:2].float() / 255)
    console.print(
        f"Saved {out}  test acc {metrics['test_acc']:.2f}%  val acc {metrics['val_acc']:.2f}%"
        + (f"  forget acc {metrics['forget_acc']:.2f}%" if "forget_acc" in metrics else "")
        + f"  ({metrics['train_seconds']:.1f} s, {_per_second(images_seen() - images_before, metrics['train_seconds'])}, "
        f"recipe {chosen.name})",
        highlight=False,
    )
    if chosen.caveat:
        console.print(f"Note on recipe {chosen.name}: {chosen.caveat}.", style="dim", highlight=False, soft_wrap=True)


def _per_second(images: int, seconds: float) -> str:
    return f"{images / seconds:.0f} images/s" if seconds > 0 else "- images/s"
