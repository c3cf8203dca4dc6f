"""Unlearning methods as plug-ins, and ``run()``, the one way to apply them.

A method is a registered function ``fn(model, data: UnlearnData, config) -> nn.Module`` with a
frozen config class; its registry entry's info holds ``summary``, ``reads`` (the sets it may
touch, from forget/retain/val/ood), ``config``, ``paper`` and, for methods known to be weak in
some setting, ``weak`` (the reason). ``run()`` deep-copies the model, seeds, optionally prunes
first (``prune``) and hardens the retain batches (``adv_retain``), hands the method a view of the
data where undeclared sets raise on use, times the call (the RTE) and checks the result.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.config import from_dict
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.runtime import resolve_device, seed_everything
from unlearnbench.unlearn.base import (
    METHODS,
    OOD_KEY,
    PRUNE_MASK_KEY,
    RETAIN_TRANSFORM_KEY,
    GuardedSet,
    UndeclaredReadError,
    declared_reads,
    guarded_view,
)
from unlearnbench.unlearn.loops import UnlearningDiverged

# Importing the method modules registers them (one plug-in per file).
from unlearnbench.unlearn import (  # noqa: E402,F401  isort: skip
    bad_teacher, boundary_shrink, diffusion, finetune, grad_ascent, influence, l1_sparse, omp, random_label,
    retrain, salun, scar, scar_self, scrub, ssd,
)

log = logging.getLogger(__name__)

__all__ = [
    "METHODS", "GuardedSet", "UndeclaredReadError", "UnlearnResult", "UnlearningDiverged", "build_config",
    "check_adv_retain", "default_adv_eps", "run",
]


@dataclass
class UnlearnResult:
    """The unlearned model (eval mode) and how it was made. ``seconds`` is the run time (RTE)."""

    model: nn.Module
    method: str
    config: Any
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


def build_config(method: str, config: dict[str, Any] | Any | None = None, seed: int = 0) -> Any:
    """The method's config from a dict (unknown keys rejected by name) or an instance, with ``seed``."""
    cls = METHODS.info(method)["config"]
    if isinstance(config, cls):
        config = dataclasses.asdict(config)
    elif config is not None and not isinstance(config, dict):
        raise ConfigError(f"The config for {method!r} must be a mapping of keys or a {cls.__name__}.")
    values = dict(config or {})
    if "seed" in values and int(values["seed"]) != seed:
        warnings.warn(
            f"config seed {values['seed']} is replaced by run(seed={seed}); pass the seed once", stacklevel=3
        )
    values["seed"] = seed
    return from_dict(cls, values)


def check_adv_retain(method: str, config: Any, attack: str | None = None) -> None:
    """``--adv-retain`` needs a method that trains on retain batches (its config has ``adv_eps``)
    and an attack that returns its strongest example for every point (pgd, fgsm, apgd)."""
    if "retain" not in declared_reads(method, config) or not hasattr(config, "adv_eps"):
        raise ConfigError(
            f"Method {method!r} does not train on the retain set, so --adv-retain cannot apply; "
            "use a method that does (e.g. finetune, salun, l1_sparse)."
        )
    if attack is not None:
        from unlearnbench.robust.adversarial import check_retain_attack

        check_retain_attack(attack)


def default_adv_eps(in_channels: int) -> float:
    """L∞ budget for adversarial retain batches: 8/255 for RGB images, 0.1 for digit-like grey ones."""
    return 8 / 255 if in_channels == 3 else 0.1


def _warm_up() -> None:
    """Pay one-time lazy imports outside the timed region.

    The first optimizer built in a process imports ``torch._dynamo`` (seconds); without this the
    first method timed in a process would carry that cost in its RTE.
    """
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    method: str | None,
    model: nn.Module,
    data: UnlearnData,
    config: dict[str, Any] | Any | None = None,
    *,
    preset: str | None = None,
    recipe: str | None = "auto",
    prune: float | None = None,
    adv_retain: str | None = None,
    seed: int = 0,
    device: str = "auto",
    check_utility: bool = True,
) -> UnlearnResult:
    """Unlearn ``data.forget`` from a copy of ``model`` with ``method``; ``model`` is never changed.

    The config starts from ``preset`` (a published protocol, ``ls presets``; ``method`` may then be
    None) or, with ``recipe="auto"``, from the recipe for the data's regime (``ls methods NAME``;
    :mod:`unlearnbench.unlearn.recipes`); ``recipe=None`` starts from the method's defaults.
    ``config`` keys override either. ``prune``: prune the copy's convolution weights to this
    sparsity first (OMP) and keep the pruned weights at zero throughout. ``adv_retain``: an attack
    name; every retain batch is replaced by adversarial examples against the current model (L∞,
    ``adv_eps`` from the config, default :func:`default_adv_eps`). ``check_utility``: compare the
    retain (a seeded sample) and test accuracy with the original's afterwards and warn when one
    fell more than 10 points. The timed part (``seconds``) is the method call only; preparing the
    OOD set, pruning and building the attack are reported in ``info``.
    """
    method, base, chosen, prune = _starting_config(method, data, config, preset, recipe, prune)
    entry = METHODS.entry(method)
    from unlearnbench.core.tasks import TASKS

    task = TASKS.get(str(entry.info.get("task", "classification")))
    data = _check_inputs(model, data, task.name)
    if task.classifier:
        from unlearnbench.core.foreign import normalized_for

        model = normalized_for(model, data.info)  # the data's mean/std (if given) become the first layer
    cfg = build_config(method, {**base, **_as_values(method, config)}, seed)
    reads = declared_reads(method, cfg, data.spec)
    if prune is not None:
        if not task.classifier:
            raise ConfigError(f"--prune (OMP of convolution weights before unlearning) applies to classifiers, "
                              f"not to the {task.name} method {method!r}.")
        if method == "prune":
            raise ConfigError("The prune method prunes by itself; set its sparsity with --set sparsity=S, not --prune.")
        if not 0 <= prune < 1:
            raise ConfigError(f"--prune is the pruned fraction of convolution weights, in [0, 1); got {prune}.")
    if adv_retain is not None:
        check_adv_retain(method, cfg, adv_retain)
    dev = resolve_device(device)
    seed_everything(seed)
    work = copy.deepcopy(model).to(dev)
    extras = dict(data.extras)
    info: dict[str, Any] = {"reads": reads, "device": str(dev), "weak": entry.info.get("weak")}

    if "ood" in reads and OOD_KEY not in extras:
        from unlearnbench.unlearn.ood import ood_set

        t0 = time.perf_counter()
        extras[OOD_KEY] = ood_set(cfg.ood, data.info, cfg.ood_size, seed=cfg.seed)
        info["ood_seconds"] = time.perf_counter() - t0
    masks = None
    if prune is not None:
        from unlearnbench.unlearn.prune import conv_sparsity, omp

        t0 = time.perf_counter()
        masks = omp(work, prune)
        extras[PRUNE_MASK_KEY] = masks
        info.update(prune=prune, prune_seconds=time.perf_counter() - t0, pruned_sparsity=conv_sparsity(work))
    if adv_retain is not None:
        # Imported here: robust is optional for plain unlearning.
        from unlearnbench.robust.adversarial import retain_attack
        from unlearnbench.robust.threat import ThreatModel

        eps = cfg.adv_eps if cfg.adv_eps is not None else default_adv_eps(data.info.in_channels)
        extras[RETAIN_TRANSFORM_KEY] = retain_attack(adv_retain, ThreatModel(norm="Linf", eps=eps),
                                                     steps=cfg.adv_steps, seed=seed)
        info.update(adv_retain=adv_retain, adv_eps=eps, adv_steps=cfg.adv_steps)

    view = guarded_view(dataclasses.replace(data, extras=extras), reads, method, dev)
    _warm_up()
    _sync(dev)
    from unlearnbench.unlearn.loops import hook_seconds

    hooked = hook_seconds()
    t0 = time.perf_counter()
    out = entry.obj(work, view, cfg)
    _sync(dev)
    seconds = time.perf_counter() - t0 - (hook_seconds() - hooked)  # per-epoch logging is not the method's time
    _validate(method, out, masks)
    out.eval()
    log.info("%s finished in %.2f s", method, seconds)
    info["recipe"] = chosen.name if chosen is not None else "given"
    if check_utility and task.classifier:  # accuracies: a generator's utility is its sample quality (eval.generation)
        note = _utility_note(method, model, out, data, chosen, seed, "retain" in reads)
        if note:
            info["utility_warning"] = note
            warnings.warn(note, stacklevel=3)
    return UnlearnResult(out, method, cfg, seconds, info)


def _as_values(method: str, config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    cls = METHODS.info(method)["config"]
    raise ConfigError(f"The config for {method!r} must be a mapping of keys or a {cls.__name__}.")


def _starting_config(method: str | None, data: Any, config: Any, preset: str | None, recipe: str | None,
                     prune: float | None) -> tuple[str, dict[str, Any], Any, float | None]:
    """(method, base config, the recipe chosen or None, prune) — what the CLI's --preset does."""
    from unlearnbench.unlearn.recipes import MethodRecipe, recipe_for

    if preset is not None:
        from unlearnbench.unlearn.presets import PRESETS

        p = PRESETS.get(preset)
        if method is not None and method != p.method:
            raise ConfigError(f"Preset {preset!r} uses method {p.method!r}, not {method!r}; drop one of them.")
        chosen = MethodRecipe(p.method, "other", p.name, dict(p.config))
        return p.method, dict(p.config), chosen, (prune if prune is not None else p.prune)
    if method is None:
        raise ConfigError("Name a method (see `unlearnbench ls methods`) or a preset.")
    if recipe not in ("auto", None):
        raise ConfigError(f"recipe must be 'auto' (chosen by the data's regime) or None (the defaults), not {recipe!r}.")
    if recipe is None or dataclasses.is_dataclass(config):  # a whole config instance: nothing to fill in
        return method, {}, None, prune
    from unlearnbench.core.tasks import TASKS
    from unlearnbench.unlearn.base import method_task

    if not TASKS.get(method_task(method)).classifier:  # recipes are tuned per classifier regime
        return method, {}, None, prune
    if not isinstance(data, UnlearnData):
        return method, {}, None, prune  # _check_inputs says what is wrong with it
    c, h = int(data.test.x.shape[1]), int(data.test.x.shape[2])
    chosen = recipe_for(method, c, h, data.num_classes, data.spec.classwise)
    if not chosen.fits:
        warnings.warn(f"{method} has no recipe for {c}x{h}x{h} images; its defaults were tuned on 8x8 digits. "
                      "Check the accuracies afterwards, or pass a preset or config.", stacklevel=4)
    return method, dict(chosen.config), chosen, prune


def _utility_note(method: str, original: nn.Module, unlearned: nn.Module, data: UnlearnData, chosen: Any,
                  seed: int, retain_allowed: bool) -> str | None:
    """The utility line, from the test set and (for methods that read it) a retain sample: a
    retain-free method's run never touches the retain set, not even to check it."""
    from unlearnbench.core.data import TensorSet
    from unlearnbench.core.train import accuracy
    from unlearnbench.unlearn.recipes import utility_drop

    before = {"test_acc": accuracy(original, data.test)}
    after = {"test_acc": accuracy(unlearned, data.test)}
    if retain_allowed:
        retain = data.retain
        n = len(data.test)
        if len(retain) > n:  # a seeded sample of the test set's size keeps the check cheap
            g = torch.Generator().manual_seed(seed)
            pick = torch.randperm(len(retain), generator=g)[:n].to(retain.x.device)
            retain = TensorSet(retain.x[pick], retain.y[pick], retain.idx[pick], name=retain.name)
        before["retain_acc"], after["retain_acc"] = accuracy(original, retain), accuracy(unlearned, retain)
    name = chosen.name if chosen is not None else "given"
    return utility_drop(method, before, after, name, chosen.fits if chosen is not None else True)


def _check_inputs(model: Any, data: Any, task: str = "classification") -> UnlearnData:
    """A user's model and data (any nn.Module; an UnlearnData): one sentence if they do not fit
    the method's task (a classifier's logits, or a generator's classes and image shape)."""
    from unlearnbench.core.data.user import check_unlearn_data
    from unlearnbench.core.errors import ModelError
    from unlearnbench.core.tasks import TASKS

    data = check_unlearn_data(data, "unlearn")
    if not isinstance(model, nn.Module):
        raise ModelError(f"unlearn takes a torch nn.Module as the model, not a {type(model).__name__}.")
    c, h, w = (int(d) for d in data.test.x.shape[1:])  # the test set: no method-declared read to record
    TASKS.get(task).check_model(model, c, h, w, data.num_classes, f"The model ({type(model).__name__})")
    return data


class _CallableModule(types.ModuleType):
    """``unlearnbench.unlearn(method, model, data, ...)`` is :func:`run`: the package is the API's
    ``unlearn`` too, so the name means the same whichever of the two was imported first."""

    def __call__(self, *args: Any, **kwargs: Any) -> UnlearnResult:
        return run(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule


def _validate(method: str, model: Any, masks: dict[str, torch.Tensor] | None) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"method {method!r} returned {type(model).__name__}, not an nn.Module")
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UnlearningDiverged(
                f"Method {method!r} produced non-finite values in {name}; lower its learning rate (--set lr=...)."
            )
    if masks is not None:
        from unlearnbench.unlearn.prune import pruned_nonzero

        moved = pruned_nonzero(model, masks)
        if moved:
            raise RuntimeError(f"method {method!r} changed {moved} pruned weights; it must honour the prune mask")
