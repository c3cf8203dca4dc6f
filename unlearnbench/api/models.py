"""Data and models: a model from a file (``load_model``), a model trained elsewhere
(``import_model``), an original or reference trained here (``check_train``/``train``) and a
LiRA shadow-model pool (``train_shadow_pool``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn

from unlearnbench.core.errors import ConfigError
from unlearnbench.core.foreign import is_foreign
from unlearnbench.core.models import create_model


def load_model(
    source: str | Path,
    weights: str | Path | None = None,
    *,
    num_classes: int | None = None,
    in_channels: int = 3,
    image_size: int = 32,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    device: str = "cpu",
) -> nn.Module:
    """A model from a file: an unlearnbench checkpoint (``load_model("runs/original.pt")``), or
    a model spec plus foreign weights (``load_model("torchvision:resnet18", "resnet.pth",
    num_classes=10)``; a plain ``state_dict`` or one under ``state_dict``/``model``/``net``,
    ``module.``/``_orig_mod.`` prefixes stripped). ``mean``/``std`` put a normalisation in front
    of a foreign model (it receives [0, 1] images otherwise). Returned in eval mode."""
    from unlearnbench.core.checkpoint import load_checkpoint, load_foreign_weights, read_state_dict
    from unlearnbench.core.runtime import resolve_device

    dev = resolve_device(device)
    spec = str(source)
    if weights is None and (Path(spec).is_file() or spec.endswith((".pt", ".pth", ".ckpt"))):
        return load_checkpoint(spec).build(dev)
    if num_classes is None:
        raise ConfigError(f"load_model({spec!r}, ...) needs num_classes to build the model.")
    if (mean is None) != (std is None):
        raise ConfigError("Give both mean and std for the normalisation, or neither.")
    model = create_model(spec, num_classes, in_channels, image_size, _per_channel(mean, in_channels),
                         _per_channel(std, in_channels))
    if weights is not None:
        state, _ = read_state_dict(weights)
        if is_foreign(spec):
            load_foreign_weights(model, state, str(weights))
        else:
            from unlearnbench.core.checkpoint import load_weights

            load_weights(model, state, str(weights))
    return model.to(dev).eval()


def _per_channel(value: float | Sequence[float] | None, channels: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    return (float(value),) * channels if isinstance(value, (int, float)) else tuple(float(v) for v in value)


def check_train(dataset: str, model: str) -> None:
    """An unknown dataset or model (a registered name, ``torchvision:NAME`` or ``module.path:factory``)."""
    from unlearnbench.core.data import DATASETS
    from unlearnbench.core.models import check_model_spec

    DATASETS.get(dataset)
    check_model_spec(model)


def check_prune(prune: float | None, rewind_epoch: int, epochs: int, *, exclude: str | None = None,
                adversarial: str | None = None) -> None:
    """Unlearn-Sparse's sparse original (``prune``): a fraction in (0, 1), a rewind epoch inside the run."""
    if prune is None:
        return
    if not 0 < prune < 1:
        raise ConfigError(f"--prune is the pruned fraction of convolution weights, in (0, 1); got {prune}.")
    if exclude is not None or adversarial is not None:
        raise ConfigError("--prune trains a sparse original; for its Retrain reference run "
                          "`unlearnbench unlearn retrain --prune S` on the sparse checkpoint.")
    if not 1 <= rewind_epoch < epochs:
        raise ConfigError(f"--rewind-epoch must lie in [1, {epochs}) for {epochs} training epochs.")


def train(
    dataset: str,
    model: str,
    config: Any,
    *,
    recipe: str = "",
    exclude: str | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    source: Any = None,
    adversarial: str | None = None,
    adv_norm: str = "Linf",
    adv_eps: str | float | None = None,
    adv_steps: int = 10,
    prune: float | None = None,
    rewind_epoch: int = 8,
) -> Any:
    """Train an original model (``exclude``: the model retrained without that forget spec, the
    reference), optionally adversarially (``adversarial``: pgd_at, trades, ...) or as
    Unlearn-Sparse's sparse original (``prune``: dense run, OMP, rewind to ``rewind_epoch``, retrain
    with the mask fixed). ``config`` is a ``TrainConfig``. Returns the ``core.jobs.TrainOutcome``
    with ``config`` (the training config used) and ``adversarial`` (its config, or None) added;
    nothing is written."""
    from unlearnbench.core.jobs import train_model

    check_train(dataset, model)
    check_prune(prune, rewind_epoch, config.epochs, exclude=exclude, adversarial=adversarial)
    at = None
    if adversarial is not None:
        # Robust training selects its own weights (best held-out PGD accuracy), not fit's best clean val.
        from unlearnbench.robust.train import adversarial_hooks

        at, config = adversarial_hooks(adversarial, adv_norm, adv_eps, adv_steps, config, dataset, split_seed,
                                       val_fraction, source)
    snap = None
    if prune is not None:
        from unlearnbench.unlearn.prune import EpochSnapshot

        snap = EpochSnapshot(rewind_epoch, config.epochs)
    outcome = train_model(dataset, model, config, exclude=exclude, split_seed=split_seed, val_fraction=val_fraction,
                          source=source, loss_fn=at.loss_fn if at else None, epoch_end=at.epoch_end if at else snap)
    if snap is not None:
        _make_sparse(outcome, config, snap, prune, rewind_epoch)
    if recipe:
        outcome.meta["recipe"] = recipe
    if at is not None:
        outcome.meta["adversarial"] = at.summary()
    outcome.config, outcome.adversarial = config, (at.cfg if at is not None else None)
    return outcome


def _make_sparse(outcome: Any, cfg: Any, snap: Any, sparsity: float, rewind_epoch: int) -> None:
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


def import_model(model: str, weights: str | Path, dataset: str, **kwargs: Any) -> Any:
    """A model trained elsewhere (a model spec plus its weights) as a checkpoint's model and
    metadata, its test accuracy measured (``normalize``, ``split_seed``, ``val_fraction``,
    ``source``, ``device``); see ``core.importer``. Nothing is written."""
    from unlearnbench.core.data import DATASETS
    from unlearnbench.core.importer import import_model as _import_model

    DATASETS.get(dataset)
    return _import_model(model, weights, dataset, **kwargs)


def train_shadow_pool(out: str | Path, **kwargs: Any) -> Any:
    """Train (or resume) a LiRA / U-LiRA shadow-model pool in ``out``; see ``eval.shadow_train.train_pool``."""
    from unlearnbench.eval.shadow_train import train_pool

    return train_pool(out, **kwargs)

