"""``unlearnbench sample`` (a PNG grid from a generation checkpoint) and the generation half of
``unlearnbench train`` (a conditional DDPM, chosen by the model's declared task)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from unlearnbench.commands._common import (
    DeviceOpt,
    QuietOpt,
    ThreadsOpt,
    app,
    check_outputs,
    console,
    handle_errors,
    setup_output,
)


def train_generation(*, dataset: str, model: str, out: Path, exclude: str | None, seed: int, split_seed: int,
                     val_fraction: float, config: Path | None, set_: list[str] | None, device: str, source: Any,
                     lr: float | None, batch_size: int | None, track: Any, tracking_uri: str | None,
                     experiment: str) -> None:
    """Train a generation model (``train --model ddpm_tiny``): steps, not epochs (``--set steps=N``)."""
    from unlearnbench.api import save_checkpoint
    from unlearnbench.commands._common import build_config
    from unlearnbench.core.config import flatten
    from unlearnbench.core.diffusion import DiffusionTrainConfig
    from unlearnbench.core.jobs import train_generator

    cfg = build_config(DiffusionTrainConfig, config, set_, lr=lr, batch_size=batch_size, seed=seed, device=device)
    check_outputs(("--out", out, False), inputs=(config,))
    if track is not None:
        track.setup(tracking_uri, experiment)
    outcome = train_generator(dataset, model, cfg, exclude=exclude, split_seed=split_seed, val_fraction=val_fraction,
                              source=source)
    save_checkpoint(out, outcome.model, outcome.meta)
    metrics = outcome.meta["metrics"]
    if track is not None:
        tags = {"kind": outcome.meta["kind"], "task": "generation", "dataset": dataset, "model": model, "seed": seed,
                "split_seed": split_seed, "exclude": exclude or "", "git_sha": outcome.meta["provenance"]["git_sha"]}
        params = {**flatten(cfg), "dataset": dataset, "model": model, "exclude": exclude or "", "split_seed": split_seed}
        name = track.readable_run_name(outcome.meta["kind"], dataset=dataset, model=model, seed=seed,
                                       forget=f"without {exclude}" if exclude else "")
        with track.run(name, params=params, tags=tags):
            track.log_history(outcome.history, step_key="step")
            track.log_metrics(metrics)
            track.log_artifact(out, "checkpoint")
    console.print(f"Saved {out}  final diffusion loss {metrics['final_loss']:.4f}  ({metrics['train_seconds']:.1f} s, "
                  f"{cfg.steps} steps of {cfg.batch_size}; generation model)", highlight=False)


def parse_classes(text: str | None, num_classes: int) -> list[int]:
    from unlearnbench.api import ConfigError

    if text is None:
        return list(range(num_classes))
    try:
        classes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--classes takes class indices separated by commas (e.g. 0,3,5), not {text!r}.") from None
    bad = [c for c in classes if not 0 <= c < num_classes]
    if not classes or bad:
        raise ConfigError(f"--classes must name classes in 0..{num_classes - 1}; got {text!r}.")
    return classes


@app.command()
@handle_errors
def sample(
    checkpoint: Path = typer.Argument(..., help="A generation checkpoint (from `train --model ddpm_tiny` or `unlearn`)."),
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", help="PNG grid to write: one row per class."),
    classes: str | None = typer.Option(None, "--classes", help="Classes to draw, e.g. 0,3 (default: all)."),
    n: int = typer.Option(8, "--n", help="Images per class."),
    guidance: float = typer.Option(2.0, "--guidance", help="Classifier-free guidance w: (1+w)·eps(c) − w·eps(null)."),
    steps: int = typer.Option(50, "--steps", help="DDIM steps."),
    eta: float = typer.Option(0.0, "--eta", help="DDIM eta: 0 deterministic, 1 DDPM-like (the reference)."),
    scale: int = typer.Option(4, "--scale", help="Upscale the PNG this many times (nearest neighbour)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise: the same seed gives the same images."),
    device: str = DeviceOpt,
    quiet: bool = QuietOpt,
    threads: int | None = ThreadsOpt,
) -> None:
    """Draw class-conditional samples from a generation checkpoint and write them as a PNG grid."""
    setup_output(quiet, threads=threads)
    from unlearnbench.api import ConfigError, ModelError, load_checkpoint
    from unlearnbench.core.config import from_dict
    from unlearnbench.core.diffusion import SampleConfig, grid, is_generator, save_png
    from unlearnbench.core.runtime import resolve_device

    if n < 1 or scale < 1:
        raise ConfigError("--n and --scale must be at least 1.")
    cfg = from_dict(SampleConfig, {"guidance": guidance, "steps": steps, "eta": eta, "seed": seed})
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must end in .png (sample writes a PNG grid), not {out.name!r}.")
    check_outputs(("--out", out, False), inputs=(checkpoint,))
    ckpt = load_checkpoint(checkpoint)
    ckpt.require_task("generation", "sample (train one with `unlearnbench train --model ddpm_tiny`)")
    wanted = parse_classes(classes, int(ckpt.meta["num_classes"]))
    model = ckpt.build(resolve_device(device))
    if not is_generator(model):  # pragma: no cover - metadata and registry agree for built-in models
        raise ModelError(f"Checkpoint {checkpoint} does not build a generation model.")
    import torch

    labels = torch.tensor(wanted).repeat_interleave(n)
    images = _draw(model, labels, cfg)
    save_png(grid(images, n), out, scale=scale)
    console.print(f"Wrote {out}: {len(wanted)} class(es) x {n} samples, guidance {guidance}, {steps} DDIM steps, "
                  f"eta {eta}, seed {seed}", highlight=False)


def _draw(model, labels, cfg):
    from unlearnbench.core.diffusion import sample as draw

    return draw(model, labels, cfg)
