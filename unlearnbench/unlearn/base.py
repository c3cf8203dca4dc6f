"""The method registry, what a method may read, and the guarded data view that enforces it.

A method is ``fn(model, data: UnlearnData, config) -> nn.Module`` registered with
``@register_method(name, config=..., reads=..., paper=..., summary=...)``. ``reads`` lists the
sets it may touch, from ``forget``, ``retain``, ``val`` and ``ood`` (out-of-distribution images,
``data.extras["ood"]``). A config class may narrow or widen that per setting with a
``reads(self[, spec]) -> tuple[str, ...]`` method (SCAR's ``stats_source``; with a ``spec``
parameter it also gets the forget spec). ``run()`` hands the method a view of the data where every set it did not declare is a :class:`GuardedSet` that raises on any
use, so a "retain-free" claim is checked, not trusted. Test sets are always guarded: no method
may look at them.

Hooks from ``run()`` travel in ``data.extras`` (read them with :func:`hooks`): the fixed pruning
mask of ``--prune`` and the adversarial retain transform of ``--adv-retain``.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.config import check, check_training  # noqa: F401  (re-exported for the method files)
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.registry import Registry

MethodFn = Callable[[nn.Module, UnlearnData, Any], nn.Module]
METHODS: Registry[MethodFn] = Registry("methods")

# "test" exists only for reproduction switches that copy a reference's use of the test set (SCAR's
# stop_on: test); a method's default config must never declare it.
READABLE = ("forget", "retain", "val", "ood", "test")
# Keys of UnlearnData.extras that run() fills in.
OOD_KEY = "ood"
PRUNE_MASK_KEY = "prune_mask"
RETAIN_TRANSFORM_KEY = "retain_transform"

Mask = dict[str, torch.Tensor]  # parameter name -> bool tensor, True = may change
RetainTransform = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class ConfigType(type):
    """Metaclass of method configs: ``str(cls)`` is the bare class name.

    ``unlearnbench ls methods`` prints registry info values with ``str()``; the ``config`` entry
    would otherwise show as ``<class 'unlearnbench.unlearn....'>``. ``repr`` is unchanged.
    """

    def __str__(cls) -> str:
        return cls.__name__


class UndeclaredReadError(RuntimeError):
    """A method touched a data set it does not declare in ``reads`` (a bug in the method)."""


def register_method(
    name: str,
    *,
    config: type,
    reads: tuple[str, ...],
    paper: str,
    summary: str,
    weak: str | None = None,
    task: str = "classification",
) -> Callable[[MethodFn], MethodFn]:
    """Register a method. ``weak`` names why it is known to be weak (shown by ``ls methods``);
    ``task`` the kind of model it unlearns (``classification`` or ``generation``, as the model
    registry's ``task``): ``run()`` refuses a model of another task."""
    bad = [r for r in reads if r not in READABLE]
    if bad:
        raise ValueError(f"method {name!r} declares unknown sets {bad}; use {READABLE}")
    info: dict[str, Any] = {"summary": summary, "reads": tuple(reads), "config": config, "paper": paper,
                            "task": task}
    if weak:
        info["weak"] = weak
    return METHODS.register(name, **info)


def method_task(name: str) -> str:
    """The task method ``name`` serves (plug-ins registered without one are classification methods)."""
    return str(METHODS.info(name).get("task", "classification"))


def methods_for(task: str) -> list[str]:
    """Registered method names serving ``task``."""
    return [n for n in METHODS.names() if method_task(n) == task]


def declared_reads(name: str, config: Any, spec: Any = None) -> tuple[str, ...]:
    """The sets method ``name`` reads under ``config`` (the config may refine the static list).

    A config's ``reads`` may take the forget ``spec`` (SCAR reads ``val`` for random forgetting
    only); ``spec=None`` means unknown.
    """
    refine = getattr(config, "reads", None)
    if callable(refine):
        takes_spec = "spec" in inspect.signature(refine).parameters
        reads = tuple(refine(spec) if takes_spec else refine())
    else:
        reads = tuple(METHODS.info(name)["reads"])
    bad = [r for r in reads if r not in READABLE]
    if bad:
        raise ValueError(f"method {name!r} declares unknown sets {bad}; use {READABLE}")
    return reads


class GuardedSet:
    """Stands in for a set the method did not declare; any use (attribute, len, iter) raises."""

    __slots__ = ("_what", "_method")

    def __init__(self, what: str, method: str) -> None:
        object.__setattr__(self, "_what", what)
        object.__setattr__(self, "_method", method)

    def _fail(self) -> UndeclaredReadError:
        return UndeclaredReadError(
            f"method {self._method!r} used the {self._what} set, which it does not declare in its reads"
        )

    def __getattr__(self, attr: str) -> Any:
        raise self._fail()

    def __len__(self) -> int:
        raise self._fail()

    def __iter__(self):
        raise self._fail()

    def __repr__(self) -> str:
        return f"<guarded {self._what} set>"


def guarded_view(data: UnlearnData, reads: tuple[str, ...], method: str, device: torch.device) -> UnlearnData:
    """``data`` with undeclared sets replaced by guards and declared ones moved to ``device``.

    Only declared sets are touched here, so a raising set handed in by a caller stays untouched
    when the method does not declare it.
    """

    def pick(what: str, value: Any) -> Any:
        if value is None:
            return None
        return value.to(device) if what in reads else GuardedSet(what, method)

    extras = dict(data.extras)
    if OOD_KEY in extras:
        extras[OOD_KEY] = pick("ood", extras[OOD_KEY])
    return dataclasses.replace(
        data,
        forget=pick("forget", data.forget),
        retain=pick("retain", data.retain),
        val=pick("val", data.val),
        test=pick("test", data.test),
        test_retained=pick("test", data.test_retained),
        test_forgotten=pick("test", data.test_forgotten),
        extras=extras,
    )


@dataclass(frozen=True)
class Hooks:
    """What ``run()`` asks every method to honour (both may be None)."""

    mask: Mask | None  # fixed pruning mask: False entries must stay unchanged (they are zero)
    retain_transform: RetainTransform | None  # applied to every retain batch before the loss


def hooks(data: UnlearnData) -> Hooks:
    return Hooks(data.extras.get(PRUNE_MASK_KEY), data.extras.get(RETAIN_TRANSFORM_KEY))


def combine_masks(*masks: Mask | None) -> Mask | None:
    """Elementwise AND of masks (a parameter absent from a mask is fully trainable there)."""
    present = [m for m in masks if m]
    if not present:
        return None
    out: Mask = {}
    for m in present:
        for name, t in m.items():
            out[name] = t if name not in out else out[name] & t
    return out


def reinitialize(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` with freshly initialised weights (same architecture, same buffers).

    Mirrors ``core.models``' initialisation (Kaiming fan-out for convolutions, BN γ=1, β=0,
    PyTorch defaults elsewhere). Initialised on the CPU under a forked RNG so the same seed gives
    the same weights on every device and the caller's random stream is untouched.
    """
    device = next(model.parameters()).device
    fresh = copy.deepcopy(model).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.reset_parameters()  # also resets the running statistics
            elif hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return fresh.to(device)
