"""Models from elsewhere and the checks every model passes: the input-normalising first layer
(:class:`Normalize`, and :class:`Normalized` around a model that expects normalised input),
foreign models (``torchvision:NAME``, ``timm:NAME``, a user's ``module.path:factory``: built with
the data's number of classes behind :class:`Normalized`), and :func:`check_model_fits`, a forward
pass on a batch of the data's shape before any work. Split from ``core.models`` by concern: the
registered architectures, which build on this module, stay there."""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from unlearnbench.core.errors import ConfigError, ModelError, UnknownNameError
from unlearnbench.core.runtime import eval_mode


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with buffers, so checkpoints carry the statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Normalized(nn.Module):
    """``model(normalize(x))``: a model that expects normalised input, fed [0, 1] images.

    The statistics are buffers, so a checkpoint of the wrapper carries them
    (``normalize.mean``/``normalize.std``, the model's tensors under ``model.``).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


def _stats(values: float | Sequence[float], what: str) -> tuple[float, ...]:
    if isinstance(values, torch.Tensor):
        values = values.flatten().tolist()
    seq = (values,) if isinstance(values, (int, float)) else values
    try:
        out = tuple(float(v) for v in seq)
    except (TypeError, ValueError):
        raise ConfigError(f"The normalisation {what} must be numbers, one per channel; got {values!r}.") from None
    if not out:
        raise ConfigError(f"The normalisation {what} is empty; give one number per channel.")
    return out


def with_normalization(model: nn.Module, mean: float | Sequence[float], std: float | Sequence[float]) -> Normalized:
    """Wrap ``model`` so it takes [0, 1] images and normalises them itself: ``(x - mean) / std``.

    Use it for a model trained on normalised inputs; attacks then perturb the raw images, as
    AutoAttack and RobustBench expect. One number applies to every channel.
    """
    if not isinstance(model, nn.Module):
        raise ModelError(f"with_normalization takes an nn.Module, not {type(model).__name__}.")
    m, s = _stats(mean, "mean"), _stats(std, "std")
    if len(m) != len(s):
        raise ConfigError(f"The normalisation has {len(m)} means but {len(s)} standard deviations; give one of each per channel.")
    if any(v <= 0 for v in s):
        raise ConfigError(f"Normalisation standard deviations must be positive; got {s}.")
    return Normalized(model, m, s)


def normalized_for(model: nn.Module, info: object) -> nn.Module:
    """``model`` behind the normalisation its data carries (``DatasetInfo.normalization``), on the
    model's device; unchanged when the data carries none or the model already applies exactly it."""
    stats = getattr(info, "normalization", None)
    if stats is None:
        return model
    mean, std = stats
    if isinstance(model, Normalized):
        have = (tuple(model.normalize.mean.flatten().tolist()), tuple(model.normalize.std.flatten().tolist()))
        if all(abs(a - b) < 1e-6 for a, b in zip((*have[0], *have[1]), (*mean, *std), strict=False)):
            return model
    device = next((t.device for t in (*model.parameters(), *model.buffers())), None)
    wrapped = with_normalization(model, mean, std)
    return wrapped.to(device) if device is not None else wrapped


_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
FOREIGN_HELP = "torchvision:NAME, timm:NAME or module.path:factory"


def is_foreign(spec: str) -> bool:
    """A model spec outside the registry: it names its source before a colon."""
    return ":" in spec


def _torchvision_builder(name: str) -> Callable[..., nn.Module]:
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)  # the classification builders only
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(
            f"torchvision has no classification model {name!r}.{hint} Valid names: {', '.join(names)}."
        )
    return tvm.get_model_builder(name)


def _timm():
    try:
        import timm
    except ImportError:
        raise ModelError("timm:NAME models need the timm package; install it with `pip install timm`.") from None
    return timm


def _factory(spec: str) -> Callable[..., nn.Module]:
    """Import ``module.path:factory`` from PYTHONPATH or the current folder."""
    if not _SPEC.match(spec):
        raise ConfigError(f"Model {spec!r} is neither a registered model nor {FOREIGN_HELP}.")
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:  # `python -m` puts the current folder on the path; the console script does not
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ModelError(
                f"Cannot import module {module_name!r} for --model {spec}: it is neither on PYTHONPATH "
                "nor in the current folder."
            ) from None
        raise ModelError(f"Importing module {module_name!r} for --model {spec} failed: {exc}.") from None
    except Exception as exc:  # the user's module may raise anything on import
        raise ModelError(f"Importing module {module_name!r} for --model {spec} failed: {_first_line(exc)}.") from None
    finally:
        if added:
            sys.path.remove(cwd)
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"Module {module_name!r} has no {attr!r} for --model {spec}.")
        obj = getattr(obj, part)
    # Only Python functions and nn.Module classes: a checkpoint names its factory, and loading it
    # must not call arbitrary built-ins (os.abort, sys.exit) that a crafted checkpoint could name.
    if not (inspect.isfunction(obj) or (inspect.isclass(obj) and issubclass(obj, nn.Module))):
        raise ModelError(f"{spec} is not a model factory: give a Python function or an nn.Module class.")
    return obj  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _call_factory(fn: Callable[..., nn.Module], spec: str, **kwargs: int) -> nn.Module:
    """Pass ``num_classes``/``in_channels``/``image_size`` to the factory where it takes them."""
    try:
        params = inspect.signature(fn).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        given = {k: v for k, v in kwargs.items() if takes_all or k in params}
    except (TypeError, ValueError):
        given = {"num_classes": kwargs["num_classes"]}
    try:
        model = fn(**given)
    except Exception as exc:
        raise ModelError(f"Model factory {spec} failed: {_first_line(exc)}.") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"Model factory {spec} returned {type(model).__name__}, not an nn.Module.")
    return model


def build_foreign(
    spec: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Normalized:
    """A foreign model with ``num_classes`` outputs and random weights, behind :class:`Normalized`.

    ``torchvision:NAME`` calls the builder with ``weights=None, num_classes=...``; ``timm:NAME``
    ``timm.create_model(NAME, pretrained=False, num_classes=..., in_chans=...)``; a user factory
    gets ``num_classes``, ``in_channels`` and ``image_size`` where its signature takes them. The
    result is checked on a batch of blank images of the data's shape.
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}.")
    source, _, name = spec.partition(":")
    if source == "torchvision":
        builder = _torchvision_builder(name)
        model = _call_factory(builder, spec, num_classes=num_classes)
    elif source == "timm":
        timm = _timm()
        try:
            model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
        except Exception as exc:
            raise ModelError(f"timm could not build {name!r}: {_first_line(exc)}.") from None
    else:
        model = _call_factory(_factory(spec), spec, num_classes=num_classes, in_channels=in_channels,
                              image_size=image_size)
    mean = tuple(mean) if mean is not None else (0.0,) * in_channels
    std = tuple(std) if std is not None else (1.0,) * in_channels
    if len(mean) != in_channels or len(std) != in_channels:
        raise ConfigError(f"mean/std need {in_channels} values (one per channel).")
    wrapped = Normalized(model, mean, std)
    check_model_fits(wrapped, in_channels, image_size, image_size, num_classes, spec)
    return wrapped


def check_foreign_spec(spec: str) -> None:
    """Fail before any work on a foreign spec whose library, module or builder is missing (nothing is built)."""
    source, _, name = spec.partition(":")
    if source == "torchvision":
        _torchvision_builder(name)
    elif source == "timm":
        _timm()
    else:
        _factory(spec)


def nonfinite_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity."""
    return [name for name, t in named
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.device.type != "meta"
            and not bool(torch.isfinite(t).all())]


def check_weights(model: nn.Module, what: str = "The model") -> None:
    """Weights that hold values, and finite ones: a model on PyTorch's ``meta`` device (shapes only)
    or with NaN/inf weights would be evaluated, attacked and reported as if it were a model."""
    named = list(model.state_dict().items())
    if any(t.device.type == "meta" for _, t in named if isinstance(t, torch.Tensor)):
        raise ModelError(f"{what} is on the meta device (shapes only, no weight values); load its weights "
                         "(load_state_dict(..., assign=True) or to_empty() then load) before using it.")
    bad = nonfinite_tensors(named)
    if bad:
        raise ModelError(f"{what} has non-finite weights (NaN or infinity) in {len(bad)} tensor(s), first {bad[0]}; "
                         "it is not a usable model (a diverged training?).")


def check_model_fits(
    model: nn.Module, channels: int, height: int, width: int, num_classes: int | None, what: str = "The model",
    device: torch.device | str | None = None,
) -> int:
    """One forward pass of two blank images: a model that cannot take the data's images, or does
    not return ``(N, num_classes)`` logits, fails here in one sentence instead of deep inside a run.
    Returns the number of logits (classes) it does return. A model without weight values (meta
    device) or with NaN/inf weights fails first."""
    check_weights(model, what)
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else "cpu"
    try:
        with torch.no_grad(), eval_mode(model):  # each module's own mode restored (frozen BN stays frozen)
            out = model(torch.zeros(2, channels, height, width, device=device))
    except Exception as exc:
        hint = " (torchvision and timm models take 3-channel images)" if channels != 3 and what.startswith(("torchvision", "timm")) else ""
        raise ModelError(f"{what} cannot take {channels}x{height}x{width} images{hint}: {_first_line(exc)}.") from None
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"{what} returns {type(out).__name__}, not a tensor of logits.")
    if out.dim() != 2 or out.shape[0] != 2 or (num_classes is not None and out.shape[1] != num_classes):
        want = f"(N, {num_classes})" if num_classes is not None else "(N, classes)"
        raise ModelError(f"{what} returns logits of shape {tuple(out.shape)} for 2 images, not {want}.")
    return int(out.shape[1])
