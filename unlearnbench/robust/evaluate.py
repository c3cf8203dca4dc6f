"""Clean and robust accuracy of a model on a labelled set, under one attack and threat model.

Definition (AutoAttack / RobustBench): robust accuracy = % of the evaluated points that the model
classifies correctly on the clean image *and* on the attack's adversarial image; clean mistakes are
non-robust. (ART's ``adversarial_accuracy`` divides by the clean-correct points instead; multiply
by clean accuracy to compare.)
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.data import TensorSet
from unlearnbench.core.data.user import as_tensor_set
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.io import atomic_write
from unlearnbench.core.runtime import model_device
from unlearnbench.robust.attacks import eval_mode, run_attack
from unlearnbench.robust.threat import ThreatModel

log = logging.getLogger(__name__)


@dataclass
class RobustResult:
    clean_acc: float  # percent of the n points
    robust_acc: float  # percent of the n points
    n: int
    stages: dict[str, int]  # "clean" and robust points after each stage (one stage for single attacks)
    seconds: float
    attack: str = ""
    threat: ThreatModel | None = None
    config: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    idx: torch.Tensor | None = None  # ``TensorSet.idx`` of the evaluated points
    positions: torch.Tensor | None = None  # their positions in the evaluated set
    robust: torch.Tensor | None = None  # bool per point
    clean: torch.Tensor | None = None  # bool per point: classified correctly on the clean image
    x_adv: torch.Tensor | None = None  # only with return_adv=True
    y: torch.Tensor | None = None

    def _lines(self) -> list[str]:
        threat = f" ({self.threat.label})" if self.threat is not None and hasattr(self.threat, "label") else ""
        out = [f"RobustResult {self.attack}{threat}, n={self.n}, {self.seconds:.1f} s"]
        for name, pct in (("clean", self.clean_acc), ("robust", self.robust_acc)):
            lo, hi = wilson(pct / 100, self.n) if self.n else (float("nan"), float("nan"))
            out.append(f"  {name:<7s} {pct:6.2f}%  [{100 * lo:.2f}, {100 * hi:.2f}] (95 % Wilson)")
        if len(self.stages) > 1:
            out.append("  robust points after each stage: " + " -> ".join(
                f"{stage} {count}" + (f" ({self.stage_seconds[stage]:.1f} s)" if stage in self.stage_seconds else "")
                for stage, count in self.stages.items()))
        return out

    def __repr__(self) -> str:
        return "\n".join(self._lines())

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(repr(self)) + "</pre>"

    def metrics(self, split: str) -> dict[str, float]:
        """MLflow metrics: ``clean/<split>``, ``robust/<split>/<attack>`` and per-stage counts."""
        key = f"robust/{split}/{self.attack}"
        out = {f"clean/{split}": self.clean_acc, key: self.robust_acc, f"{key}/n": float(self.n),
               f"{key}/seconds": self.seconds}
        for stage, count in self.stages.items():
            out[f"{key}/n_robust_after_{stage}"] = float(count)
        return out


def select_points(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    """Positions of the evaluated points: all of them, or ``n`` drawn with ``seed`` (sorted).

    A seeded random subset (not the first ``n``) because forget/retain sets may be ordered by
    class; the same seed gives the same points for every model, so comparisons are paired.
    """
    if n is None or n >= n_total:
        return torch.arange(n_total)
    if n < 1:
        raise ConfigError(f"n must be at least 1, got {n}.")
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=gen)[:n].sort().values


def robust_accuracy(
    model: nn.Module,
    data: TensorSet,
    attack: str,
    threat: ThreatModel,
    *,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    config: dict | Any | None = None,
    return_adv: bool = False,
) -> RobustResult:
    """Clean and robust accuracy (percent) of ``model`` on ``data`` under ``attack``.

    ``n`` limits the evaluation to a seeded random subset; ``config`` overrides the attack's
    config keys (see ``unlearnbench ls attacks``). The model is not modified (modes restored,
    global RNG untouched).
    """
    data = as_tensor_set(data, "robust_accuracy")  # (x, y) pairs and datasets too; others: one sentence
    if len(data) == 0:
        raise ConfigError(f"The set {data.name or '(unnamed)'!r} is empty; there is nothing to attack.")
    start = time.perf_counter()
    device = model_device(model)
    pos = select_points(len(data), n, seed)
    sub = data.select(pos.to(data.y.device))
    x = sub.x.to(device).float().div_(255)
    y = sub.y.to(device)
    out = run_attack(attack, model, x, y, threat, config, seed=seed, batch_size=batch_size)
    with torch.no_grad(), eval_mode(model):
        clean = torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]) == y
        adv_ok = torch.cat([model(out.x_adv[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]) == y
    robust = out.robust if out.robust is not None else clean & adv_ok
    if out.robust is not None and not torch.equal(robust, clean & adv_ok):
        # A deterministic model gives the same verdict twice; a randomised one may not.
        log.info("%s: %d points change verdict when their adversarial image is re-evaluated",
                 attack, int((robust != (clean & adv_ok)).sum()))
    n_eval = len(y)
    stages = dict(out.stages) if out.stages else {"clean": int(clean.sum()), attack: int(robust.sum())}
    from unlearnbench.core.config import to_dict
    from unlearnbench.robust.attacks import build_config

    cfg = build_config(attack, config, seed=seed)
    result = RobustResult(
        clean_acc=100.0 * float(clean.float().mean()),
        robust_acc=100.0 * float(robust.float().mean()),
        n=n_eval,
        stages=stages,
        seconds=time.perf_counter() - start,
        attack=attack,
        threat=threat,
        config=to_dict(cfg),
        stage_seconds=dict(out.info.get("stage_seconds", {})),
        idx=sub.idx.cpu(),
        positions=pos,
        robust=robust.cpu(),
        clean=clean.cpu(),
    )
    if return_adv:
        result.x_adv = out.x_adv.cpu()
        result.y = y.cpu()
    log.info("%s on %s (%s, n=%d): clean %.2f%%, robust %.2f%% in %.1f s", attack, data.name, threat.label, n_eval,
             result.clean_acc, result.robust_acc, result.seconds)
    return result


def save_adversarial(path: str | Path, result: RobustResult, extra: dict | None = None) -> Path:
    """Write adversarial examples atomically; load with ``torch.load(path, weights_only=True)``."""
    if result.x_adv is None:
        raise ValueError("the result holds no adversarial examples; call robust_accuracy(..., return_adv=True)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "unlearnbench-adversarial-v1",
        "x_adv": result.x_adv.float(),
        "y": result.y,
        "idx": result.idx,
        "robust": result.robust,
        "attack": result.attack,
        "norm": result.threat.norm if result.threat else "",
        "eps": result.threat.eps if result.threat else 0.0,
        "clean_acc": result.clean_acc,
        "robust_acc": result.robust_acc,
        **(extra or {}),
    }
    with atomic_write(path) as fh:
        torch.save(payload, fh)
    return path


def wilson(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` on ``n`` points (robust may not import eval's)."""
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))
