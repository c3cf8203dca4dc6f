"""The attack registry and the one safe way to run an attack.

Each plug-in (one file each) registers ``fn(model, x, y, threat, config, batch_size) -> AttackOutput``
with info ``summary``, ``norms`` (threat norms it supports), ``config`` (its config class),
``kind`` and ``paper``. ``run_attack`` wraps every call with what torchattacks does not guarantee:

- inputs checked to be float images in [0, 1] (torchattacks 3.5 silently accepts anything);
- the model attacked in eval mode and every module's mode restored afterwards; parameters are
  taken out of autograd meanwhile (no weight gradients computed, ``.grad`` untouched);
- the global RNG untouched: APGD/APGD-T/FAB/Square re-seed it on every call, so each attack runs
  inside ``torch.random.fork_rng`` (CPU + the CUDA device in use) seeded with the config's seed;
- outputs inside the threat model, touching as little as possible: a row inside the eps-ball and
  [0, 1] is returned bit for bit; a row outside by float rounding only is projected back; a row
  far outside is reset to the clean image for minimum-norm attacks (CW, DeepFool, FAB: such a
  point is not an adversarial example under the threat model), and is an error for every other
  attack (a bounded attack that leaves the ball is broken; counting the point robust would hide
  it). Ensembles that judge their own points (AutoAttack) project before judging, so the images
  returned are exactly the images their verdicts were computed on.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.config import from_dict
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.registry import Registry
from unlearnbench.core.runtime import eval_mode, model_device  # eval_mode: re-exported for the attacks
from unlearnbench.robust import checks
from unlearnbench.robust.projection import project_to_threat, threat_violations
from unlearnbench.robust.threat import ThreatModel


@dataclass
class AttackOutput:
    x_adv: torch.Tensor
    stages: dict[str, int] = field(default_factory=dict)  # ensembles: robust points after each stage
    robust: torch.Tensor | None = None  # ensembles: their own per-point verdict
    info: dict[str, Any] = field(default_factory=dict)


AttackFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, ThreatModel, Any, int], AttackOutput]
ATTACKS: Registry[AttackFn] = Registry("attacks")


@contextlib.contextmanager
def frozen_params(model: nn.Module) -> Iterator[nn.Module]:
    """Parameters out of autograd inside (attacks need input gradients only; torchattacks' FAB,
    CW and DeepFool call ``backward()``, which would otherwise fill and cost ``.grad`` of every
    weight); ``requires_grad`` and ``.grad`` restored on exit."""
    saved = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    for p, _, _ in saved:
        p.requires_grad_(False)
        p.grad = None
    try:
        yield model
    finally:
        for p, flag, grad in saved:
            p.requires_grad_(flag)
            p.grad = grad


@contextlib.contextmanager
def isolated_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Seed inside, global CPU (and CUDA device) generator state unchanged outside."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class AttackContractError(RuntimeError):
    """An attack returned images far outside the threat model it was asked to respect (a bug)."""


def check_available(name: str) -> None:
    """Unknown attack names and a missing torchattacks fail here, before any work."""
    from unlearnbench.core.requirements import require

    for module in ATTACKS.info(name).get("needs", ("torchattacks",)):
        require(module, f"The {name} attack")


def build_config(name: str, config: dict | Any | None = None, *, seed: int | None = None) -> Any:
    """The attack's config from a dict (unknown keys rejected) or an instance; ``seed`` fills in."""
    check_available(name)
    cls = ATTACKS.info(name)["config"]
    if isinstance(config, cls):
        return config
    data = dict(config or {})
    if seed is not None:
        data.setdefault("seed", seed)
    return from_dict(cls, data)


def run_attack(
    name: str,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    config: dict | Any | None = None,
    *,
    seed: int = 0,
    batch_size: int = 256,
    checks_on: bool = True,
    raw: bool = False,
) -> AttackOutput:
    """Run attack ``name`` on images ``x`` (floats in [0, 1]) with labels ``y``.

    Returns adversarial images on the model's device, inside ``threat`` and [0, 1] (see the module
    docstring for what is touched). ``raw=True`` returns the attack's own output untouched, for
    tests of the attacks themselves. Deterministic for a given seed; leaves the model's modes and
    the global RNG as they were. Raises ``AttackContractError`` when an attack that is not a
    minimum-norm attack returns points far outside the threat model.
    """
    entry = ATTACKS.entry(name)
    if threat.norm not in entry.info["norms"]:
        raise ConfigError(
            f"Attack {name!r} supports {' and '.join(entry.info['norms'])} threat models, not {threat.norm}; "
            + ("use pgdl2 for L2." if name in ("pgd", "fgsm") else "choose another attack (see `unlearnbench ls attacks`).")
        )
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1.")
    cfg = build_config(name, config, seed=seed)
    device = model_device(model)
    checks.check_inputs(x, y, getattr(model, "num_classes", None))
    x = x.detach().to(device=device, dtype=torch.float32)
    y = y.detach().to(device=device, dtype=torch.int64)
    if checks_on:
        checks.check_model_mode(model)
    with eval_mode(model), frozen_params(model), isolated_rng(device, cfg.seed):
        if checks_on:
            probe = x[: min(len(x), batch_size)]
            checks.check_logits(model, probe)
            if entry.info.get("kind") == "ensemble" and getattr(cfg, "version", "standard") != "rand":
                checks.check_randomized(model, probe, y[: len(probe)])
                checks.check_dynamic(model, probe)
        out = entry.obj(model, x, y, threat, cfg, batch_size)
    if raw:
        return out
    if entry.info.get("kind") != "minimum-norm":
        _, beyond = threat_violations(x, out.x_adv.detach().to(x.dtype), threat)
        if bool(beyond.any()):
            raise AttackContractError(
                f"Attack {name!r} returned {int(beyond.sum())} of {len(x)} points outside the {threat.label} ball or "
                "[0, 1]; this is a bug in the attack, and its robust accuracy would be wrong."
            )
    if out.robust is None:
        out.x_adv = project_to_threat(x, out.x_adv, threat)
    else:
        # An ensemble that judged its own points has fitted them before judging (robust.aa):
        # touching them again could move a row by a rounding error away from its verdict.
        out.x_adv = out.x_adv.detach().to(x.dtype)
    return out


def per_batch(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              batch_size: int, description: str) -> torch.Tensor:
    """Run a torchattacks-style ``attack(x, y)`` batch by batch with a progress bar."""
    from unlearnbench.core.progress import task

    outs = []
    with task(description, len(x)) as bar:
        for i in range(0, len(x), batch_size):
            outs.append(attack(x[i : i + batch_size], y[i : i + batch_size]).detach())
            bar.advance(min(batch_size, len(x) - i))
    return torch.cat(outs)


def default_alpha(threat: ThreatModel, steps: int, alpha: float | None) -> float:
    """Madry et al.'s step size 2.5·eps/steps unless given (eps/4 for 10 steps)."""
    return alpha if alpha is not None else 2.5 * threat.eps / steps


for _plugin in ("fgsm", "pgd", "pgdl2", "cw", "deepfool", "apgd", "apgdt", "fab", "square", "autoattack",
                "autoattack_fast"):
    importlib.import_module(f"{__name__}.{_plugin}")

__all__ = ["ATTACKS", "AttackContractError", "AttackOutput", "run_attack", "project_to_threat", "threat_violations",
           "eval_mode", "frozen_params", "isolated_rng", "build_config"]
