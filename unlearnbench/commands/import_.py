"""``unlearnbench import``: a foreign model and its weights file → an unlearnbench checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnbench.commands._common import (
    DataRootOpt,
    DeviceOpt,
    DownloadOpt,
    QuietOpt,
    ThreadsOpt,
    app,
    check_outputs,
    console,
    handle_errors,
    setup_output,
)


@app.command("import")
@handle_errors
def import_(
    model: str = typer.Option(
        ..., "--model", "-m",
        help="torchvision:NAME (any torchvision classifier), timm:NAME (needs timm) or module.path:factory "
             "(your function or nn.Module class, imported from PYTHONPATH or the current folder; it gets "
             "num_classes, in_channels, image_size where it takes them).",
    ),
    weights: Path = typer.Option(
        ..., "--weights", "-w",
        help="Weights file: .safetensors, a state_dict, or a dict holding one under state_dict/model/net "
             "(module. and _orig_mod. prefixes are stripped; read with torch.load(weights_only=True)).",
    ),
    dataset: str = typer.Option(..., "--dataset", "-d", help="The dataset the model classifies (see `ls datasets`)."),
    out: Path = typer.Option(Path("runs/imported.pt"), "--out", "-o", help="Checkpoint to write."),
    normalize: str | None = typer.Option(
        None, "--normalize",
        help="Normalisation in front of the model: MEAN/STD per channel (0.49,0.48,0.45/0.25,0.24,0.26), "
             "one MEAN,STD pair for all channels (0.5,0.25), dataset (its own statistics) or imagenet. "
             "Without it the model receives [0, 1] images unchanged.",
    ),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the train/val and forget splits recorded for later commands."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Validation fraction recorded for later commands."),
    device: str = DeviceOpt,
    data_root: Path | None = DataRootOpt,
    download: bool = DownloadOpt,
    quiet: bool = QuietOpt,
    threads: int | None = ThreadsOpt,
) -> None:
    """Convert a model trained elsewhere into a checkpoint that evaluate, attack, unlearn and studies take."""
    setup_output(quiet, threads=threads)
    from unlearnbench import api
    from unlearnbench.api import save_checkpoint
    from unlearnbench.core.data import DATASETS, DataSource

    DATASETS.get(dataset)  # an unknown name fails before the file checks
    check_outputs(("--out", out, False), inputs=(weights,))
    outcome = api.import_model(model, weights, dataset, normalize=normalize, split_seed=split_seed,
                           val_fraction=val_fraction, source=DataSource.from_env(data_root, download), device=device)
    save_checkpoint(out, outcome.model, outcome.meta)
    meta = outcome.meta
    acc, n = meta["metrics"]["test_acc"], meta["metrics"]["n_test"]
    chance = 100.0 / meta["num_classes"]
    console.print(
        f"Saved {out}: {model} from {weights} (sha256 {meta['source']['sha256'][:12]}), "
        f"normalisation {meta['normalize']['source']}; test acc {acc:.2f}% (n={n}) on {dataset}."
    )
    if meta.get("normalization_hint"):
        console.print(f"Warning: {meta['normalization_hint']}", highlight=False, soft_wrap=True)
    elif acc <= 1.5 * chance:
        console.print(
            f"Note: {acc:.2f}% is near chance ({chance:.1f}%); if the model was trained on normalised images, "
            "pass --normalize (e.g. --normalize dataset)."
        )
