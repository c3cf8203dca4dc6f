"""Evaluation and attacks: models in memory (``evaluate``, ``robust_accuracy``, ``attack``,
``log_report``) and checkpoints on disk (``evaluate_checkpoint``, ``evaluate_model``,
``check_attack``/``load_attack_target``/``attack_checkpoint``). Each checks its inputs first, the
same way: the model is an ``nn.Module`` that takes the data's images and returns one logit per
class, the labels are integer classes it has logits for; a mistake is one sentence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.data import TensorSet, UnlearnData
from unlearnbench.core.data.user import as_tensor_set, check_unlearn_data
from unlearnbench.core.errors import DataError, ModelError
from unlearnbench.core.foreign import check_model_fits, normalized_for
from unlearnbench.eval.report import Report


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

