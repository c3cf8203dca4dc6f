"""A foreign model as an unlearnbench checkpoint (the library side of ``unlearnbench import``).

:func:`import_model` builds the model named by a spec (``torchvision:NAME``, ``timm:NAME``,
``module.path:factory``) for a dataset's class count and image shape, puts the normalisation in
front of it, loads someone else's weights file strictly and returns the model with checkpoint
metadata: the factory, the normalisation, the source file's sha256, and the test accuracy as a
sanity check. ``evaluate``, ``attack``, ``unlearn`` and studies then take the checkpoint like one
from ``train``. Nothing is written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch.nn as nn

from unlearnbench.core import provenance
from unlearnbench.core.checkpoint import load_foreign_weights, read_state_dict
from unlearnbench.core.data import DATASETS, DataSource, Splits, prepare
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.foreign import is_foreign
from unlearnbench.core.jobs import checkpoint_meta
from unlearnbench.core.models import check_model_spec, create_model
from unlearnbench.core.runtime import resolve_device
from unlearnbench.core.train import accuracy

# Named statistics for --normalize (ImageNet's, for models trained the torchvision way).
NAMED_STATS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


@dataclass
class ImportOutcome:
    model: nn.Module
    meta: dict[str, Any]
    splits: Splits


def parse_normalize(text: str | None, splits_info: Any) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """(mean, std, source) for ``--normalize``: none, ``dataset``, ``imagenet``, ``M1,M2,M3/S1,S2,S3``,
    or comma-separated ``MEAN,STD`` (one pair for every channel, or the C means then the C stds).

    Without it the model receives the [0, 1] images unchanged (mean 0, std 1). One mean and one
    std apply to every channel.
    """
    c = splits_info.in_channels
    if text is None or text.strip().lower() == "none":
        return (0.0,) * c, (1.0,) * c, "none"
    key = text.strip().lower()
    if key == "dataset":
        return tuple(splits_info.mean), tuple(splits_info.std), "dataset"
    if key in NAMED_STATS:
        mean, std = NAMED_STATS[key]
    else:
        means, slash, stds = text.partition("/")
        try:
            mean = tuple(float(v) for v in means.split(",") if v.strip())
            std = tuple(float(v) for v in stds.split(",") if v.strip())
        except ValueError:
            mean = std = ()
        if not slash and len(mean) in (2, 2 * c):  # MEAN,STD or the C means then the C stds
            mean, std = mean[: len(mean) // 2], mean[len(mean) // 2 :]
        if not mean or not std:
            raise ConfigError(
                f"Bad --normalize {text!r}: write MEAN/STD per channel (0.49,0.48,0.45/0.25,0.24,0.26), "
                "one MEAN,STD pair for every channel, dataset, imagenet or none."
            )
        key = "given"
    mean = mean * c if len(mean) == 1 else mean
    std = std * c if len(std) == 1 else std
    if len(mean) != c or len(std) != c:
        raise ConfigError(f"--normalize gives {len(mean)} means and {len(std)} stds, but the images have {c} channels.")
    if any(s <= 0 for s in std):
        raise ConfigError(f"--normalize standard deviations must be positive; got {std}.")
    return tuple(mean), tuple(std), key


def import_model(
    spec: str,
    weights: str | Path,
    dataset: str,
    *,
    normalize: str | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    source: DataSource | None = None,
    device: str = "auto",
) -> ImportOutcome:
    """Build ``spec`` for ``dataset``, load ``weights`` into it, and describe it as a checkpoint.

    Checked before any data is read: the spec resolves and the weights file holds a state dict.
    """
    check_model_spec(spec)
    state, origin = read_state_dict(weights)
    shape = DATASETS.info(dataset).get("shape")
    if shape is not None:
        # The dataset's class count and image shape are known without reading it: a file that
        # does not fit fails now, not after the data is decoded (CIFAR-10: ~20 s).
        k, c, size = shape
        parse_normalize(normalize, SimpleNamespace(in_channels=c, mean=(0.0,) * c, std=(1.0,) * c))  # syntax first
        load_foreign_weights(create_model(spec, k, c, size), state, str(weights))
    dev = resolve_device(device)
    splits, _ = prepare(dataset, None, split_seed=split_seed, val_fraction=val_fraction, source=source, device=dev)
    info = splits.info
    mean, std, stats_source = parse_normalize(normalize, info)
    if not is_foreign(spec) and stats_source != "none":
        raise ConfigError(f"{spec!r} is a registered model with its own normalisation; drop --normalize.")
    model = create_model(spec, info.num_classes, info.in_channels, info.image_size, mean, std)
    load_foreign_weights(model, state, str(weights))
    model = model.to(dev).eval()
    metrics = {"test_acc": accuracy(model, splits.test), "n_test": len(splits.test)}
    from unlearnbench.core.normcheck import mismatch_hint

    hint = mismatch_hint(model, splits.test, info, info.num_classes, acc=metrics["test_acc"])
    meta = checkpoint_meta(
        spec, splits, exclude=None, val_fraction=val_fraction,
        extra={
            "kind": "imported",
            "factory": spec,
            "normalize": {"mean": list(mean), "std": list(std), "source": stats_source},
            "source": origin,
            "metrics": metrics,
            **({"normalization_hint": hint} if hint else {}),
            "provenance": provenance.collect(dev, 0),
        },
    )
    return ImportOutcome(model, meta, splits)
