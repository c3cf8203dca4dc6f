"""``unlearnbench train`` and ``unlearnbench ls``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

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
from unlearnbench.commands._listing import LISTABLE, listing, registry
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
    from unlearnbench.commands._common import print_json
    from unlearnbench.commands._describe import describe
    from unlearnbench.core.errors import UnknownNameError

    if kind != "all" and kind not in LISTABLE:
        raise UnknownNameError(f"Unknown list {kind!r}; choose all or one of: {', '.join(LISTABLE)}.")
    if name is not None:
        if kind == "all":
            raise UnknownNameError(f"Name the list {name!r} belongs to, e.g. unlearnbench ls methods {name}.")
        reg = registry(kind)
        if reg is None:
            raise UnknownNameError(f"The {kind} registry is not installed here.")
        _show_entry(describe(kind, reg.entry(name)), json_)
        return
    found = listing(list(LISTABLE) if kind == "all" else [kind])
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


def _make_sparse(outcome, cfg, snap, sparsity: float, rewind_epoch: int) -> None:
    """Replace the dense outcome by the sparse original (prune.rewind_retrain), in place."""
    import copy

    from unlearnbench.core.jobs import train_metrics
    from unlearnbench.unlearn.prune import conv_sparsity, mask_digest, rewind_retrain

    dense_last = copy.deepcopy(outcome.model)
    dense_last.load_state_dict(snap.states[cfg.epochs])
    splits = outcome.splits
    model, masks, result = rewind_retrain(dense_last, snap.states[rewind_epoch], sparsity, splits.train, splits.val,
                                          splits.info, cfg, rewind_epoch)
    dense_metrics = outcome.meta["metrics"]
    metrics = train_metrics(model, splits, splits.train, result, None)
    metrics["train_seconds"] += dense_metrics["train_seconds"]  # the dense run is part of the sparse original's cost
    outcome.meta["metrics"] = metrics
    outcome.meta["sparse"] = {"sparsity": sparsity, "rewind_epoch": rewind_epoch, "mask": mask_digest(masks),
                              "conv_sparsity": conv_sparsity(model), "dense_metrics": dense_metrics}
    outcome.model = model
    outcome.history = outcome.history + [{**r, "epoch": r["epoch"] + cfg.epochs} for r in result.history]


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
    from unlearnbench.core.checkpoint import save_checkpoint
    from unlearnbench.core.data import DATASETS
    from unlearnbench.core.jobs import train_model
    from unlearnbench.core.models import check_model_spec
    from unlearnbench.core.recipes import resolve
    from unlearnbench.core.train import TrainConfig

    DATASETS.get(dataset), check_model_spec(model)  # unknown names (or torchvision:/module:factory specs) fail first
    chosen = resolve(recipe, dataset)
    cfg = build_config(
        TrainConfig, config, set_, base=chosen.train,
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, compile=compile or None,
    )
    if prune is not None:
        from unlearnbench.core.errors import ConfigError

        if not 0 < prune < 1:
            raise ConfigError(f"--prune is the pruned fraction of convolution weights, in (0, 1); got {prune}.")
        if exclude is not None or adversarial is not None:
            raise ConfigError("--prune trains a sparse original; for its Retrain reference run "
                              "`unlearnbench unlearn retrain --prune S` on the sparse checkpoint.")
        if not 1 <= rewind_epoch < cfg.epochs:
            raise ConfigError(f"--rewind-epoch must lie in [1, {cfg.epochs}) for {cfg.epochs} training epochs.")
    check_outputs(("--out", out, False), inputs=(config,), specs=(exclude,), store=False if no_track else tracking_uri)
    source = data_source(data_root, download, subset, per_class, image_size)
    track = None
    if not no_track:
        from unlearnbench.eval import tracking

        track = tracking
        tracking.setup(tracking_uri, experiment)
        tracking.enable_system_metrics(system_metrics)
    at = None
    if adversarial is not None:
        # Robust training selects its own weights (best held-out PGD accuracy), not fit's best clean val.
        from unlearnbench.robust.train import adversarial_hooks

        at, cfg = adversarial_hooks(adversarial, adv_norm, adv_eps, adv_steps, cfg, dataset, split_seed, val_fraction,
                                    source)
    snap = None
    if prune is not None:
        from unlearnbench.unlearn.prune import EpochSnapshot

        snap = EpochSnapshot(rewind_epoch, cfg.epochs)
    from unlearnbench.core.progress import images_seen

    images_before = images_seen()
    outcome = train_model(
        dataset, model, cfg, exclude=exclude, split_seed=split_seed, val_fraction=val_fraction,
        source=source,
        loss_fn=at.loss_fn if at else None, epoch_end=at.epoch_end if at else snap,
    )
    if snap is not None:
        _make_sparse(outcome, cfg, snap, prune, rewind_epoch)
    outcome.meta["recipe"] = chosen.name
    if at is not None:
        outcome.meta["adversarial"] = at.summary()
    save_checkpoint(out, outcome.model, outcome.meta)
    metrics = outcome.meta["metrics"]
    if track is not None:
        tags = {"kind": outcome.meta["kind"], "dataset": dataset, "model": model, "seed": seed,
                "split_seed": split_seed, "exclude": exclude or "", "git_sha": outcome.meta["provenance"]["git_sha"],
                "data_sha256": outcome.meta["data_fingerprint"]["train_sha256"][:12]}
        params = {**flatten(cfg), "recipe": chosen.name, "prune": prune or "", "rewind_epoch": rewind_epoch if prune else "",
                  "dataset": dataset, "model": model, "exclude": exclude or "", "split_seed": split_seed,
                  "subset": source.subset or "", "per_class": source.per_class or "",
                  **(flatten(at.cfg, "adversarial.") if at else {})}
        name = track.readable_run_name(outcome.meta["kind"], dataset=dataset, model=model, seed=seed,
                                       forget=f"without {exclude}" if exclude else "")
        with track.run(name, params=params, tags=tags):
            track.log_history(outcome.history)  # train_loss, lr, val_acc per epoch (step = epoch)
            track.log_metrics(metrics)
            track.log_artifact(out, "checkpoint")
            if outcome.data is not None:  # the retrain reference: its splits as dataset inputs
                from unlearnbench.eval.inputs import dataset_inputs

                track.log_inputs([e for e in dataset_inputs(outcome.data) if e["context"] != "forget"])
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
