"""Library entry points for whole jobs (used by the CLI, studies and Ray workers alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from unlearnbench.core import provenance
from unlearnbench.core.checkpoint import Checkpoint
from unlearnbench.core.config import to_dict
from unlearnbench.core.data import DataSource, Splits, UnlearnData, fingerprint, prepare
from unlearnbench.core.models import create_model
from unlearnbench.core.protocol import forget_set_record
from unlearnbench.core.runtime import resolve_device, seed_everything
from unlearnbench.core.train import LossFn, TrainConfig, accuracy, fit


@dataclass
class TrainOutcome:
    model: nn.Module
    meta: dict[str, Any]
    history: list[dict] = field(default_factory=list)
    splits: Splits | None = None
    data: UnlearnData | None = None
    config: Any = None  # the TrainConfig used (adversarial training turns fit's clean selection off)
    adversarial: Any = None  # the adversarial-training config, when there is one


def checkpoint_meta(
    model_name: str, splits: Splits, *, exclude: str | None, val_fraction: float, extra: dict | None = None
) -> dict[str, Any]:
    info = splits.info
    return {
        "model": model_name,
        "dataset": info.name,
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "image_size": info.image_size,
        "split_seed": splits.split_seed,
        "val_fraction": val_fraction,
        "exclude": exclude,
        fingerprint.KEY: splits.fingerprint,
        **(extra or {}),
    }


def train_metrics(model: nn.Module, splits: Splits, train_set, result, data: UnlearnData | None) -> dict[str, Any]:
    """The accuracies a training checkpoint records (original, retrain, and their sparse variants)."""
    metrics = {
        "val_acc": accuracy(model, splits.val) if len(splits.val) else float("nan"),
        "test_acc": accuracy(model, splits.test),
        "train_acc": accuracy(model, train_set),
        "best_epoch": result.best_epoch,
        "train_seconds": result.seconds,
    }
    if data is not None:
        metrics["forget_acc"] = accuracy(model, data.forget)
        if data.test_retained is not None:
            metrics["test_retained_acc"] = accuracy(model, data.test_retained)
    return metrics


def train_model(
    dataset: str,
    model_name: str,
    config: TrainConfig,
    *,
    exclude: str | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    source: DataSource | None = None,
    loss_fn: LossFn | None = None,
    epoch_end=None,
    kind: str | None = None,
) -> TrainOutcome:
    """Train ``model_name`` on ``dataset`` (minus ``exclude``, for the retrained reference).

    The original model and the retrained reference go through this same function with the same
    ``split_seed``, so they differ only in the excluded samples.
    """
    device, splits, data, model, train_set = _setup(dataset, model_name, config, exclude, split_seed, val_fraction,
                                                    source, normalize=True)
    result = fit(model, train_set, splits.val, splits.info, config, loss_fn=loss_fn, epoch_end=epoch_end,
                 description=f"train {model_name} on {dataset}")
    metrics = train_metrics(model, splits, train_set, result, data)
    meta = _meta(model_name, splits, data, exclude, val_fraction, kind, config, metrics, device)
    return TrainOutcome(model, meta, result.history, splits, data)


def _setup(dataset: str, model_name: str, config: Any, exclude: str | None, split_seed: int, val_fraction: float,
           source: DataSource | None, normalize: bool):
    """What every training job starts from: device, split, forget set, a freshly seeded model and
    the set it trains on (the retain set for a retrained reference)."""
    device = resolve_device(config.device)
    splits, data = prepare(dataset, exclude, split_seed=split_seed, val_fraction=val_fraction, source=source, device=device)
    info = splits.info
    seed_everything(config.seed)  # the init depends on the training seed, not on global state
    stats = (info.mean, info.std) if normalize else ()
    model = create_model(model_name, info.num_classes, info.in_channels, info.image_size, *stats)
    train_set = data.retain if data is not None else splits.train
    return device, splits, data, model, train_set


def _meta(model_name: str, splits: Splits, data: UnlearnData | None, exclude: str | None, val_fraction: float,
          kind: str | None, config: Any, metrics: dict, device, **extra: Any) -> dict:
    """The checkpoint metadata of a trained original or retrained reference."""
    return checkpoint_meta(
        model_name, splits, exclude=exclude, val_fraction=val_fraction,
        extra={
            **extra,
            "kind": kind or ("retrain" if exclude else "original"),
            "train_config": to_dict(config),
            "metrics": metrics,
            "provenance": provenance.collect(device, config.seed),
            # Which samples the retrain left out, so a reference can be matched to a forget set.
            **({"forget_set": forget_set_record(data)} if data is not None else {}),
        },
    )


def check_compatible(ckpt: Checkpoint, splits: Splits) -> None:
    """A checkpoint must come from the same dataset, class count and split as the data."""
    from unlearnbench.core.errors import CheckpointError

    info = splits.info
    meta = ckpt.meta
    where = str(ckpt.path) if ckpt.path else "checkpoint"
    if meta["dataset"] != info.name:
        raise CheckpointError(f"Checkpoint {where} was trained on {meta['dataset']!r}, not {info.name!r}; pass the matching --dataset.")
    if int(meta["num_classes"]) != info.num_classes:
        raise CheckpointError(f"Checkpoint {where} has {meta['num_classes']} classes but {info.name!r} has {info.num_classes}.")
    if int(meta["split_seed"]) != splits.split_seed:
        raise CheckpointError(
            f"Checkpoint {where} used split_seed {meta['split_seed']}, not {splits.split_seed}; use the same split seed."
        )


def train_generator(
    dataset: str,
    model_name: str,
    config: Any,
    *,
    exclude: str | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    source: DataSource | None = None,
    kind: str | None = None,
) -> TrainOutcome:
    """Train a generation model (``core.diffusion``) on ``dataset`` minus ``exclude``: the original
    and its retrain reference, on the same split, with the same checkpoint metadata as classifiers
    (fingerprint, provenance, forget-set record) plus ``task: generation``."""
    from unlearnbench.core.diffusion import fit_diffusion

    device, splits, data, model, train_set = _setup(dataset, model_name, config, exclude, split_seed, val_fraction,
                                                    source, normalize=False)
    fit = fit_diffusion(model, train_set, splits.info, config, description=f"train {model_name} on {dataset}")
    metrics = {"train_seconds": fit.seconds, "final_loss": fit.history[-1]["train_loss"] if fit.history else float("nan")}
    meta = _meta(model_name, splits, data, exclude, val_fraction, kind, config, metrics, device, task="generation")
    return TrainOutcome(fit.model, meta, fit.history, splits, data)
