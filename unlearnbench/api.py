"""The public Python API, the front door: every command of the CLI calls these functions.

Two halves (see ``docs/api.md`` and ``docs/architecture.md``):

- **Models in memory** (a user's own ``nn.Module`` and data in, numbers and a ``Report`` out):
  ``evaluate``, ``robust_accuracy``, ``attack``, ``load_model``, ``log_report``. Each checks its
  inputs first, the same way: the model is an ``nn.Module`` that takes the data's images and
  returns one logit per class, the labels are integer classes it has logits for, the data is of a
  documented type; a mistake is one sentence (a ``UserError``).
- **Checkpoints and studies on disk** (what the commands run): ``check_train``/``train``,
  ``check_unlearn``/``run_unlearn``/``unlearn_checkpoint``, ``evaluate_checkpoint``,
  ``check_attack``/``attack_checkpoint``, ``load_study``/``run_study``, ``build_report``. A
  ``check_*`` function checks everything that needs no data and returns the checked request the
  run function takes, so a command fails before its expensive work and parses its input once.

Imported lazily by ``unlearnbench/__init__.py``; heavy modules are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.data import TensorSet, UnlearnData
from unlearnbench.core.data.user import as_tensor_set, check_unlearn_data
from unlearnbench.core.errors import ConfigError, DataError, ModelError
from unlearnbench.core.models import check_model_fits, create_model, is_foreign, normalized_for
from unlearnbench.eval.report import Report

__all__ = [
    "attack", "attack_checkpoint", "build_report", "check_attack", "check_model", "check_train", "check_unlearn",
    "evaluate", "evaluate_checkpoint", "evaluate_model", "import_model", "load_attack_target", "load_model", "load_study", "log_report", "robust_accuracy", "run_study",
    "run_unlearn", "train", "train_shadow_pool", "unlearn_checkpoint",
]


def check_model(model: Any, data: UnlearnData | TensorSet, where: str, num_classes: int | None = None) -> nn.Module:
    """``model`` if it is an ``nn.Module`` that maps the data's images to one logit per class and
    has a logit for every label of ``data`` (``num_classes`` of them when the data says how many)."""
    x, y = (data.test.x, None) if isinstance(data, UnlearnData) else (data.x, data.y)
    k = data.num_classes if isinstance(data, UnlearnData) else num_classes
    return _check_model_for(model, tuple(x.shape[1:]), y, where, k)


def _check_model_for(model: Any, image_shape: tuple, y: torch.Tensor | None, where: str,
                     num_classes: int | None) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ModelError(f"{where} takes a torch nn.Module as the model, not a {type(model).__name__}.")
    c, h, w = (int(d) for d in image_shape)
    classes = check_model_fits(model, c, h, w, num_classes, f"The model ({type(model).__name__})")
    _check_labels_fit(y, classes, where)
    return model


def _check_labels_fit(y: torch.Tensor | None, classes: int, where: str) -> None:
    """Labels the model has no logit for (``UnlearnData`` checked its own when it was built)."""
    if y is not None and len(y) and int(y.max()) >= classes:
        raise DataError(f"The {where} labels include {int(y.max())}, but the model returns {classes} logits "
                        f"(labels 0..{classes - 1}).")


def _companion(value: Any, role: str, data: UnlearnData) -> Any:
    if value is None or isinstance(value, (Report, Mapping)):
        return value
    if isinstance(value, nn.Module):
        return normalized_for(check_model(value, data, f"evaluate's {role}"), data.info)
    raise ModelError(f"evaluate's {role} must be a model, a Report or a dict of values, not {type(value).__name__}.")


def evaluate(
    model: nn.Module,
    data: UnlearnData,
    *,
    reference: nn.Module | Report | Mapping[str, float] | None = None,
    original: nn.Module | Report | Mapping[str, float] | None = None,
    metrics: Sequence[str] | None = None,
    robustness: Sequence[str] = (),
    norm: str = "Linf",
    eps: float = 8 / 255,
    robust_n: int | None = 1000,
    rte_seconds: float | None = None,
    seed: int = 0,
    name: str = "",
) -> Report:
    """Evaluate ``model`` on ``data``: accuracies per split, MIA scores, and (with ``reference``,
    the model retrained without the forget set) the gap to it; ``robustness`` names attacks.

    ``reference``/``original`` may be models, ``Report``s or dicts of values. The model is not
    modified; it is evaluated on its own device.
    """
    from unlearnbench.eval.engine import EvalConfig, Evaluator

    data = check_unlearn_data(data, "evaluate")
    model = normalized_for(check_model(model, data, "evaluate"), data.info)  # the data's mean/std, if any
    ref, orig = _companion(reference, "reference", data), _companion(original, "original", data)
    config = EvalConfig(metrics=tuple(metrics) if metrics is not None else None, robustness=tuple(robustness),
                        norm=norm, eps=eps, robust_n=robust_n, seed=seed)
    report = Evaluator.from_config(config).evaluate(
        model, data, reference=ref, original=orig, rte_seconds=rte_seconds, name=name,
        meta={"model": type(model).__name__, "kind": "evaluate"},
    )
    if orig is not None:
        _utility_check(report, orig, data)
    _normalization_check(report, orig if isinstance(orig, nn.Module) else model, data, model)
    return report


def _normalization_check(report: Report, model: nn.Module, data: UnlearnData, report_model: nn.Module) -> None:
    """A model (the original when given) near chance whose accuracy a usual normalisation restores:
    one warning naming it (and ``report.config["normalization_warning"]``)."""
    import warnings

    from unlearnbench.core.normcheck import mismatch_hint

    given = report.values.get("test_acc") if model is report_model else None  # already measured
    hint = mismatch_hint(model, data.test, data.info, data.num_classes, acc=given)
    if hint:
        report.config["normalization_warning"] = hint
        warnings.warn(hint, stacklevel=3)


def _utility_check(report: Report, original: Any, data: UnlearnData) -> None:
    """With an original: one warning (and ``report.config["utility_warning"]``) when retain or test
    accuracy fell more than 10 points below the original's."""
    import warnings

    from unlearnbench.unlearn.recipes import utility_drop

    if isinstance(original, nn.Module):
        from unlearnbench.core.train import accuracy

        before = {"retain_acc": accuracy(original, data.retain), "test_acc": accuracy(original, data.test)}
    else:
        values = original.values if isinstance(original, Report) else original
        before = {k: float(values[k]) for k in ("retain_acc", "test_acc") if k in values}
    note = utility_drop(str(report.meta.get("method") or "the unlearning"), before, report.values)
    if note:
        report.config["utility_warning"] = note
        warnings.warn(note, stacklevel=3)


def robust_accuracy(
    model: nn.Module,
    data: Any,
    attack: str = "autoattack",
    *,
    norm: str = "Linf",
    eps: float = 8 / 255,
    n: int | None = None,
    split: str = "test",
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    batch_size: int = 256,
) -> Any:
    """Clean and robust accuracy (percent, over ``n`` seeded points or all) under ``attack``.

    ``data``: an ``UnlearnData`` (``split`` picks the set), an ``(images, labels)`` pair (uint8 or
    floats in [0, 1]) or a ``Dataset`` yielding ``(image, label)``. Returns a ``RobustResult``
    (``clean_acc``, ``robust_acc``, ``n``, per-stage counts).
    """
    from unlearnbench.robust.evaluate import robust_accuracy as _robust_accuracy
    from unlearnbench.robust.jobs import check_attack_request

    # The same option checks as `unlearnbench attack` (split, n, batch size, norm, eps, config keys).
    request = check_attack_request(attack, config=config, norm=norm, eps=eps, split=split, n=n, seed=seed,
                                   batch_size=batch_size)
    tset = as_tensor_set(data, "robust_accuracy", split)
    check_model(model, tset, "robust_accuracy", data.num_classes if isinstance(data, UnlearnData) else None)
    if isinstance(data, UnlearnData):
        model = normalized_for(model, data.info)
    return _robust_accuracy(model, tset, attack, request.threat, n=request.n, seed=seed, batch_size=batch_size,
                            config=request.config)


def attack(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str = "pgd",
    *,
    norm: str = "Linf",
    eps: float = 8 / 255,
    seed: int = 0,
    config: Mapping[str, Any] | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Adversarial images for ``images`` (floats in [0, 1], ``(N, C, H, W)``) and their ``labels``,
    within ``eps`` in ``norm`` and in [0, 1], on the model's device (like torchattacks'
    ``atk(images, labels)``). See ``unlearnbench ls attacks`` for the names."""
    from unlearnbench.core.data.user import as_labels
    from unlearnbench.robust.attacks import run_attack
    from unlearnbench.robust.jobs import check_attack_request

    request = check_attack_request(attack, config=config, norm=norm, eps=eps, n=None, seed=seed,
                                   batch_size=batch_size)
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise DataError("attack takes float image tensors in [0, 1]; convert uint8 images with x.float() / 255.")
    if images.dim() != 4:
        raise DataError(f"attack takes images shaped (N, C, H, W), not {tuple(images.shape)}.")
    # The labels and the model are checked as evaluate() checks them (UnlearnData.from_tensors).
    y = as_labels(labels, len(images), "attack").to(images.device)
    _check_model_for(model, tuple(images.shape[1:]), y, "attack", None)
    out = run_attack(attack, model, images, y, request.threat, request.config, seed=seed, batch_size=batch_size)
    return out.x_adv


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


def log_report(
    report: Report,
    *,
    uri: str | None = None,
    experiment: str = "unlearnbench",
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """Log ``report`` to MLflow in one call (values as metrics, config as params, tags, the
    report JSON and per-class CSV as artifacts); returns the run id. ``uri`` defaults to
    ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db`` in the current folder."""
    from unlearnbench.eval import tracking

    if not isinstance(report, Report):
        raise DataError(f"log_report takes a Report (from unlearnbench.evaluate), not a {type(report).__name__}.")
    tracking.setup(uri, experiment)
    return tracking.log_report(report, run_name=run_name, extra_tags=tags, extra_params=params)


# ----------------------------------------------------------------------------- checkpoints on disk
# What the commands run. Each ``check_*`` checks everything that needs no data (names, config keys,
# values, the checkpoint's own metadata) and returns the checked request its run function takes.


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


def check_unlearn(checkpoint: Any, method: str, forget: Any, *, config: Mapping[str, Any] | None = None,
                  prune: float | None = None, adv_retain: str | None = None, seed: int = 0,
                  dataset: str | None = None, preset: str | None = None) -> Any:
    """Check an unlearning request without reading data; returns the ``UnlearnRequest`` (checkpoint,
    built method config, parsed forget spec) that :func:`run_unlearn` takes. ``checkpoint`` is a
    path or a loaded ``Checkpoint``; ``forget`` a spec text or a parsed ``ForgetSpec``."""
    from unlearnbench.core.checkpoint import Checkpoint, load_checkpoint
    from unlearnbench.unlearn.jobs import check_request

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    return check_request(ckpt, method, forget, config=dict(config or {}), prune=prune, adv_retain=adv_retain,
                         seed=seed, dataset=dataset, preset=preset)


def run_unlearn(request: Any, *, device: str = "auto", source: Any = None, reference: Any = None,
                allow_data_mismatch: bool = False, allow_reference_mismatch: bool = False,
                record_epochs: bool = False) -> Any:
    """Run a checked request: the data loaded and split once, checked against the checkpoint (and
    the ``reference`` checkpoint), the method run. Returns the ``UnlearnOutcome`` (model, metadata of
    the checkpoint to write, the data, the original); nothing is written."""
    from unlearnbench.unlearn.jobs import run_request

    return run_request(request, device=device, source=source, reference=reference,
                       allow_data_mismatch=allow_data_mismatch, allow_reference_mismatch=allow_reference_mismatch,
                       record_epochs=record_epochs)


def unlearn_checkpoint(checkpoint: Any, method: str, forget: Any, *, config: Mapping[str, Any] | None = None,
                       prune: float | None = None, adv_retain: str | None = None, seed: int = 0,
                       device: str = "auto", source: Any = None, reference: Any = None, **allow: bool) -> Any:
    """:func:`check_unlearn` then :func:`run_unlearn` in one call."""
    request = check_unlearn(checkpoint, method, forget, config=config, prune=prune, adv_retain=adv_retain, seed=seed)
    return run_unlearn(request, device=device, source=source, reference=reference, **allow)


def evaluate_checkpoint(checkpoint: str | Path, **kwargs: Any) -> Report:
    """Evaluate a checkpoint on the data it was trained on (dataset, split seed and forget spec
    from its metadata unless overridden): ``reference``/``original`` checkpoints or report JSONs,
    ``evaluator`` (one ``Evaluator`` shared by several checkpoints predicts the companions once),
    ``device``, ``source``, ``rte_seconds``, ``allow_*_mismatch``; see ``eval.jobs``."""
    from unlearnbench.eval.jobs import evaluate_checkpoint as _evaluate_checkpoint

    return _evaluate_checkpoint(checkpoint, **kwargs)


def evaluate_model(model: nn.Module, data: UnlearnData, **kwargs: Any) -> Report:
    """Evaluate a model fresh from :func:`run_unlearn` on the outcome's own data (``reference``,
    ``original``, ``rte_seconds``, ``config``, ``meta``); see ``eval.jobs.evaluate_model``."""
    from unlearnbench.eval.jobs import evaluate_model as _evaluate_model

    return _evaluate_model(model, data, **kwargs)


def check_attack(attack: str, **kwargs: Any) -> Any:
    """Check an attack request without reading data (attack name and config keys, ``split``, ``n``,
    ``batch_size``, ``norm``, ``eps``): the same checks :func:`robust_accuracy` runs. Returns the
    ``AttackRequest`` :func:`attack_checkpoint` takes."""
    from unlearnbench.robust.jobs import check_attack_request

    return check_attack_request(attack, **kwargs)


def load_attack_target(checkpoint: Any, request: Any, *, forget: str | None = None, device: str = "auto") -> Any:
    """The checkpoint's model, its weights checked, and the forget spec a forget/retain split needs,
    before any data is read (``robust.jobs.load_target``)."""
    from unlearnbench.robust.jobs import load_target

    return load_target(checkpoint, request, forget=forget, device=device)


def attack_checkpoint(target: Any, request: Any, **kwargs: Any) -> Any:
    """Clean and robust accuracy of a checkpoint (a path or a :func:`load_attack_target`) on one
    split of the data it was trained on (``forget``, ``device``, ``source``, ``allow_data_mismatch``,
    ``return_adv``); see ``robust.jobs``."""
    from unlearnbench.robust.jobs import attack_checkpoint as _attack_checkpoint

    return _attack_checkpoint(target, request, **kwargs)


def load_study(path_or_name: str | Path, **overrides: Any) -> Any:
    """A study (YAML file or shipped name), checked in full before anything trains."""
    from unlearnbench.study import load_study as _load_study

    return _load_study(path_or_name, **overrides)


def run_study(config: Any, **kwargs: Any) -> Any:
    """Run or resume a study (``tracking_uri``, ``executor``, ``work_dir``, ``source``, ``new``,
    ``study_file``, ``on_event``); see ``study.run``."""
    from unlearnbench.study import run_study as _run_study

    return _run_study(config, **kwargs)


def build_report(experiment: str, out: str | Path = "reports", **kwargs: Any) -> Any:
    """Write the HTML and Markdown report of an experiment's runs (``tracking_uri``,
    ``parent_run_id``, ``tolerance``, ``log_to_mlflow``); see ``reports.render``."""
    from unlearnbench.reports import build_report as _build_report

    return _build_report(experiment, out, **kwargs)


def import_model(model: str, weights: str | Path, dataset: str, **kwargs: Any) -> Any:
    """A model trained elsewhere (a model spec plus its weights) as a checkpoint's model and
    metadata, its test accuracy measured (``normalize``, ``split_seed``, ``val_fraction``,
    ``source``, ``device``); see ``core.importer``. Nothing is written."""
    from unlearnbench.core.data import DATASETS
    from unlearnbench.core.importer import import_model as _import_model

    DATASETS.get(dataset)
    return _import_model(model, weights, dataset, **kwargs)


def train_shadow_pool(out: str | Path, **kwargs: Any) -> Any:
    """Train (or resume) a LiRA / U-LiRA shadow-model pool in ``out``; see ``eval.shadow.train_pool``."""
    from unlearnbench.eval.shadow import train_pool

    return train_pool(out, **kwargs)
