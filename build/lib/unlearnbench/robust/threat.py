"""Threat models (norm + radius) and the configs of the registered attacks.

Every attack config is a frozen ``@configclass`` with a ``seed``; build one from a dict (YAML, ``--set``)
with :func:`unlearnbench.core.config.from_dict`, which rejects unknown keys by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from unlearnbench.core.config import configclass, parse_fraction
from unlearnbench.core.errors import ConfigError

Norm = Literal["Linf", "L2"]
NORMS: tuple[str, ...] = ("Linf", "L2")

# The thresholds of the RobustBench protocol, offered as defaults per norm.
DEFAULT_EPS = {"Linf": 8 / 255, "L2": 0.5}


def parse_eps(text: str | float) -> float:
    """``"8/255"`` → 0.0313…, ``"0.5"`` → 0.5; a clear ConfigError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        try:
            value = parse_fraction(str(text))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"Bad eps {text!r}: write a number such as 0.03 or a fraction such as 8/255.") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"Bad eps {text!r}: it must be a positive number.")
    return value


def _canonical_norm(norm: str) -> str:
    aliases = {"linf": "Linf", "inf": "Linf", "l_inf": "Linf", "l2": "L2", "2": "L2"}
    key = str(norm).strip().lower()
    if key not in aliases:
        raise ConfigError(f"Unknown norm {norm!r}; use Linf or L2.")
    return aliases[key]


@dataclass(frozen=True)
class ThreatModel:
    """An Lp ball of radius ``eps`` around each image in [0, 1] pixel space (``eps`` may be "8/255")."""

    norm: Norm = "Linf"
    eps: float = 8 / 255

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", _canonical_norm(self.norm))
        object.__setattr__(self, "eps", parse_eps(self.eps))
        if self.norm == "Linf" and self.eps >= 1:
            raise ConfigError(f"An Linf eps of {self.eps} covers the whole [0, 1] image range; use a value below 1 such as 8/255.")

    @classmethod
    def parse(cls, norm: str = "Linf", eps: str | float | None = None) -> ThreatModel:
        norm = _canonical_norm(norm)
        return cls(norm, parse_eps(eps) if eps is not None else DEFAULT_EPS[norm])

    @property
    def label(self) -> str:
        """Human text: ``Linf 8/255`` when eps is a multiple of 1/255, else ``L2 0.5``."""
        k = self.eps * 255
        if self.norm == "Linf" and abs(k - round(k)) < 1e-6:
            return f"Linf {round(k)}/255"
        return f"{self.norm} {self.eps:g}"

    def to_dict(self) -> dict:
        return {"norm": self.norm, "eps": self.eps}


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}.")


# ----------------------------------------------------------------------------- attack configs


@configclass
class FGSMConfig:
    """Fast gradient sign method (one step of size eps)."""

    seed: int = 0


@configclass
class PGDConfig:
    """Projected gradient descent; ``alpha`` defaults to 2.5·eps/steps (Madry et al.)."""

    steps: int = 10
    alpha: float | None = None
    random_start: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError("steps must be at least 1.")
        if self.alpha is not None:
            _positive("alpha", self.alpha)


@configclass
class CWConfig:
    """Carlini–Wagner L2 (torchattacks: one c, no binary search); points beyond eps count as robust."""

    c: float = 1.0
    kappa: float = 0.0
    steps: int = 100
    lr: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError("steps must be at least 1.")
        _positive("c", self.c)
        _positive("lr", self.lr)


@configclass
class DeepFoolConfig:
    """DeepFool (L2, minimal perturbation); points beyond eps count as robust."""

    steps: int = 50
    overshoot: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError("steps must be at least 1.")


@configclass
class APGDConfig:
    """Auto-PGD with AutoAttack's budget (100 iterations, rho 0.75)."""

    steps: int = 100
    n_restarts: int = 1
    loss: Literal["ce", "dlr"] = "ce"
    eot_iter: int = 1
    rho: float = 0.75
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.n_restarts < 1 or self.eot_iter < 1:
            raise ConfigError("steps, n_restarts and eot_iter must be at least 1.")
        if not 0 < self.rho < 1:
            raise ConfigError("rho must lie in (0, 1).")


@configclass
class APGDTConfig:
    """Targeted Auto-PGD on the DLR loss over the top ``n_target_classes`` classes (AutoAttack: 9)."""

    steps: int = 100
    n_restarts: int = 1
    n_target_classes: int = 9
    rho: float = 0.75
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.n_restarts < 1 or self.n_target_classes < 1:
            raise ConfigError("steps, n_restarts and n_target_classes must be at least 1.")
        if not 0 < self.rho < 1:
            raise ConfigError("rho must lie in (0, 1).")


@configclass
class FABConfig:
    """FAB; ``targeted`` runs FAB-T over the top ``n_target_classes`` classes as in AutoAttack."""

    steps: int = 100
    n_restarts: int = 1
    targeted: bool = True
    n_target_classes: int = 9
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.n_restarts < 1 or self.n_target_classes < 1:
            raise ConfigError("steps, n_restarts and n_target_classes must be at least 1.")


@configclass
class SquareConfig:
    """Square Attack (score-based black box) with AutoAttack's schedule (``resc_schedule=False``)."""

    n_queries: int = 5000
    n_restarts: int = 1
    p_init: float = 0.8
    resc_schedule: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_queries < 1 or self.n_restarts < 1:
            raise ConfigError("n_queries and n_restarts must be at least 1.")
        if not 0 < self.p_init <= 1:
            raise ConfigError("p_init must lie in (0, 1].")


STANDARD_BUDGET = {"apgd_steps": 100, "fab_steps": 100, "square_queries": 5000, "n_target_classes": 9}


@configclass
class AutoAttackConfig:
    """Standard AutoAttack (Croce & Hein 2020) or its ``rand`` version for randomised models.

    The defaults are the original budget; lowering them gives a *weaker* attack that must not be
    reported as AutoAttack. ``chunk`` is the number of points that share one random stream: the
    ``bs`` of the reference implementation, 250 in its scripts and in RobustBench, so numbers
    match it point for point whatever the evaluation batch size. ``max_batch`` is how many points
    are attacked together (0 = automatic: four chunks). Results do not depend on ``max_batch``.
    """

    version: Literal["standard", "rand"] = "standard"
    apgd_steps: int = 100
    fab_steps: int = 100
    square_queries: int = 5000
    n_target_classes: int = 9
    eot_iter: int = 20  # only for version=rand
    chunk: int = 250  # the reference's batch size (its random starts depend on it)
    max_batch: int = 0
    checks: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.apgd_steps, self.fab_steps, self.square_queries, self.n_target_classes, self.eot_iter) < 1:
            raise ConfigError("apgd_steps, fab_steps, square_queries, n_target_classes and eot_iter must be at least 1.")
        if self.chunk < 1:
            raise ConfigError("chunk must be at least 1 (the reference's batch size is 250).")
        if self.max_batch < 0:
            raise ConfigError("max_batch must be 0 (automatic) or positive.")

    @property
    def budget_changes(self) -> dict[str, int]:
        """Budget keys that differ from the original AutoAttack (empty for the real thing)."""
        return {k: getattr(self, k) for k, v in STANDARD_BUDGET.items() if getattr(self, k) != v}


@configclass
class RandAutoAttackConfig(AutoAttackConfig):
    """AutoAttack's ``rand`` version (APGD-CE + APGD-DLR with EOT) for randomised models."""

    version: Literal["rand"] = "rand"


@configclass
class FastAutoAttackConfig:
    """torchattacks' own AutoAttack (10-step APGD/APGD-T/FAB, rescaled Square schedule): weaker."""

    version: Literal["standard", "plus", "rand"] = "standard"
    seed: int = 0
