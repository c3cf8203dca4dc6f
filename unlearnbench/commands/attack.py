"""``unlearnbench attack``: clean and robust accuracy of a checkpoint under one attack."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer
from rich.table import Table

from unlearnbench.commands._common import (
    AllowDataMismatchOpt,
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
    ThreadsOpt,
    TrackingOpt,
    app,
    check_outputs,
    console,
    data_source,
    handle_errors,
    setup_output,
)


@app.command()
@handle_errors
def attack(
    name: str = typer.Argument(..., help="Registered attack (see `unlearnbench ls attacks`), e.g. autoattack or pgd."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Model checkpoint written by unlearnbench."),
    split: str = typer.Option("test", "--split", help="test, forget, retain or val."),
    forget: str | None = typer.Option(None, "--forget", help="Forget spec for --split forget/retain (default: the checkpoint's --exclude)."),
    n: int | None = typer.Option(1000, "--n", help="Points to attack (a seeded random subset); 0 = all."),
    eps: str | None = typer.Option(None, "--eps", help="Radius, e.g. 8/255 (default: 8/255 for Linf, 0.5 for L2)."),
    norm: str = typer.Option("Linf", "--norm", help="Linf or L2."),
    seed: int = typer.Option(0, "--seed", help="Seed of the attack and of the point subset."),
    batch_size: int = typer.Option(250, "--batch-size", help="Points per batch (not AutoAttack's random-stream chunk: 250 as in the reference, --set chunk=N)."),
    save_adv: Path | None = typer.Option(None, "--save-adv", help="Write the adversarial examples to this .pt file."),
    subset: int | None = SubsetOpt,
    per_class: int | None = PerClassOpt,
    allow_data_mismatch: bool = AllowDataMismatchOpt,
    config: Path | None = ConfigOpt,
    set_: list[str] | None = SetOpt,
    device: str = DeviceOpt,
    data_root: Path | None = DataRootOpt,
    download: bool = DownloadOpt,
    tracking_uri: str | None = TrackingOpt,
    experiment: str = ExperimentOpt,
    no_track: bool = NoTrackOpt,
    quiet: bool = QuietOpt,
    threads: int | None = ThreadsOpt,
) -> None:
    """Attack a checkpoint on one split and report clean and robust accuracy (logged to MLflow)."""
    setup_output(quiet, threads=threads)
    from unlearnbench import api
    from unlearnbench.core.config import load_yaml, parse_overrides

    overrides: dict = {}
    if config is not None:
        overrides.update(load_yaml(config))
    overrides.update(parse_overrides(set_ or []))
    # The same checks as api.robust_accuracy: attack name and keys, split, n, batch size, threat model.
    request = api.check_attack(name, config=overrides, norm=norm, eps=eps, split=split, n=n, seed=seed,
                               batch_size=batch_size)
    threat = request.threat
    check_outputs(("--save-adv", save_adv, False), inputs=(checkpoint, config), specs=(forget,),
                  store=False if no_track else tracking_uri)
    target = api.load_attack_target(checkpoint, request, forget=forget, device=device)
    track = None
    if not no_track:
        from unlearnbench.eval import tracking

        track = tracking
        tracking.setup(tracking_uri, experiment)
    from unlearnbench.robust.evaluate import save_adversarial

    meta = target.checkpoint.meta
    live = contextlib.nullcontext()
    if track is not None:
        tags = {"kind": "attack", "attack": name, "split": split, "dataset": meta["dataset"], "model": meta["model"],
                "seed": seed, "checkpoint_kind": meta.get("kind", ""), "forget": target.forget or "",
                "git_sha": (meta.get("provenance") or {}).get("git_sha", "")}
        live = track.run(f"attack-{name}-{split}", tags=tags)  # live while the attack runs
    with live:
        outcome = api.attack_checkpoint(target, request, source=data_source(data_root, download, subset, per_class),
                                        allow_data_mismatch=allow_data_mismatch, return_adv=save_adv is not None)
        result, meta, spec, mismatch = outcome.result, outcome.meta, outcome.forget, outcome.data_mismatch
        attack_cfg = request.config
        if save_adv is not None:
            save_adversarial(save_adv, result, {"checkpoint": str(checkpoint), "split": split, "forget": spec or ""})
        metrics = result.metrics(split)
        if track is not None:
            from unlearnbench.core.config import flatten
            from unlearnbench.eval.inputs import split_input

            track.log_params({"attack": name, "split": split, "norm": threat.norm, "eps": threat.eps, "n": result.n,
                              "checkpoint": str(checkpoint), "forget": spec or "", "batch_size": batch_size,
                              **({"data_mismatch": mismatch} if mismatch else {}),
                              **{f"attack.{k}": v for k, v in flatten(attack_cfg).items()}})
            track.log_metrics(metrics)
            track.log_inputs([split_input(meta["dataset"], int(meta["split_seed"]), split, outcome.tset, spec or "")])
            if save_adv is not None:
                track.log_artifact(save_adv, "adversarial")

    table = Table(title=f"{name} on {split} ({threat.label}, n={result.n}, seed {seed})", title_justify="left")
    table.add_column("stage")
    table.add_column("robust points", justify="right")
    table.add_column("accuracy %", justify="right")
    table.add_column("seconds", justify="right")
    for stage, count in result.stages.items():
        secs = result.stage_seconds.get(stage)
        table.add_row(stage, str(count), f"{100 * count / result.n:.2f}", "" if secs is None else f"{secs:.1f}")
    console.print(table)
    console.print(f"clean {result.clean_acc:.2f}%  robust {result.robust_acc:.2f}%  ({result.seconds:.1f} s)"
                  + (f"  adversarial examples: {save_adv}" if save_adv is not None else ""))
