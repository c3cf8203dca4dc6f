"""The public Python API: a user's own ``nn.Module`` and data in, numbers and a ``Report`` out.

Imported lazily by ``unlearnbench/__init__.py``; see ``docs/api.md``. Each function checks its
inputs first (the model is an ``nn.Module`` that takes the data's images and returns one logit
per class, the data is of a documented type) and answers a mistake with one sentence (a
``UserError``), then calls the same library functions the CLI uses.
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

__all__ = ["attack", "check_model", "evaluate", "load_model", "log_report", "robust_accuracy"]


def check_model(model: Any, data: UnlearnData | TensorSet, where: str) -> nn.Module:
    """``model`` if it is an ``nn.Module`` that maps the data's images to ``num_classes`` logits."""
    if not isinstance(model, nn.Module):
        raise ModelError(f"{where} takes a torch nn.Module as the model, not a {type(model).__name__}.")
    c, h, w = (int(d) for d in data.test.x.shape[1:]) if isinstance(data, UnlearnData) else (
        int(d) for d in data.x.shape[1:])
    k = data.num_classes if isinstance(data, UnlearnData) else None
    check_model_fits(model, c, h, w, k, f"The model ({type(model).__name__})")
    return model


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


def _threat(norm: str, eps: float) -> Any:
    from unlearnbench.robust.threat import ThreatModel

    return ThreatModel(norm=norm, eps=eps)


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

    tset = as_tensor_set(data, "robust_accuracy", split)
    check_model(model, tset, "robust_accuracy")
    if isinstance(data, UnlearnData):
        model = normalized_for(model, data.info)
    return _robust_accuracy(model, tset, attack, _threat(norm, eps), n=n, seed=seed, batch_size=batch_size,
                            config=dict(config) if config is not None else None)


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
    from unlearnbench.robust.attacks import run_attack

    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise DataError("attack takes float image tensors in [0, 1]; convert uint8 images with x.float() / 255.")
    if images.dim() != 4:
        raise DataError(f"attack takes images shaped (N, C, H, W), not {tuple(images.shape)}.")
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if not isinstance(model, nn.Module):
        raise ModelError(f"attack takes a torch nn.Module as the model, not a {type(model).__name__}.")
    c, h, w = images.shape[1:]
    check_model_fits(model, int(c), int(h), int(w), None, f"The model ({type(model).__name__})")
    out = run_attack(attack, model, images, labels, _threat(norm, eps), dict(config) if config is not None else None,
                     seed=seed, batch_size=batch_size)
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
