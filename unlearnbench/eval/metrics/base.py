"""The metric registry and what a metric function receives (``EvalContext``).

A metric is ``fn(ctx) -> MetricOutput | dict[str, float]`` registered with
``@register_metric(name, direction=..., ...)``. Its *direction* is declared once here:

- ``higher``: larger is better (retain / test accuracy, robust accuracy, AUS);
- ``lower``: smaller is better (gaps, divergences, run time, U-LiRA);
- ``reference``: closest to the retrained reference is better (forget accuracy, UA, every MIA
  score: a perfect unlearner behaves like the model retrained without the forget set).

``needs`` names what the call must provide (``reference``, ``reference_model``, ``original``,
``rte``, ``lira_pool``, ``ulira_pool``, ``robustness``, ``classwise``); a default run skips a
metric whose needs are missing, an explicit request fails with a one-sentence error.
``requires`` lists metrics whose values this one reads (they are added to the run); ``stage``
orders the work: 0 = from predictions, 1 = derived from stage-0 values (UA, AUS), 2 = gaps to
the reference, 3 = the average gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.data import UnlearnData
from unlearnbench.core.registry import Registry
from unlearnbench.eval.paired import Outcomes
from unlearnbench.eval.predictions import Predictions

DIRECTIONS = ("higher", "lower", "reference")
NEEDS = ("reference", "reference_model", "original", "rte", "lira_pool", "ulira_pool", "robustness", "classwise")
SPLITS = ("forget", "retain", "val", "test", "test_retained", "test_forgotten")


@dataclass
class MetricOutput:
    """What a metric returns. ``counts``: how many points each value rests on, as
    ``n/<value key>`` for proportions (accuracies, UA, MIA-Efficacy, robust accuracy) and
    ``<attack prefix>/n_members`` / ``n_nonmembers`` for membership attacks (``Report.counts``);
    ``undefined``: value key -> why it is not a number (e.g. TPR at an FPR below 1/n_nonmembers)."""

    values: dict[str, float] = field(default_factory=dict)
    per_class: list[dict[str, Any]] = field(default_factory=list)  # rows of the per-class table
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # ROC points by name
    counts: dict[str, int] = field(default_factory=dict)
    undefined: dict[str, str] = field(default_factory=dict)
    # value key -> its variance estimated from the data the value was computed on (DeLong's for an
    # attack's AUC, from the scores): the interval then uses it instead of a counts-only formula
    variances: dict[str, float] = field(default_factory=dict)
    # value key -> per-example outcomes (eval.paired), for proportions that are means over examples:
    # the gap to the reference is then paired (same images) instead of treated as independent.
    outcomes: dict[str, Outcomes] = field(default_factory=dict)


def record_attack(out: MetricOutput, prefix: str, stats: Any, curve: bool = True) -> MetricOutput:
    """Write an ``eval.roc.AttackStats`` into ``out`` under ``prefix`` (e.g. ``mia/loss/forget_test``):
    the defined statistics as values, ``n_members`` / ``n_nonmembers`` as counts, DeLong's variance
    of the AUC (from the scores, for its interval) as a variance, the undefined
    low-FPR TPRs with their reason, and the ROC curve. Every membership attack goes through here."""
    out.values.update({f"{prefix}/{k}": v for k, v in stats.values().items()})
    out.counts.update({f"{prefix}/{k}": int(v) for k, v in stats.counts().items()})
    out.variances.update({f"{prefix}/{k}": float(v) for k, v in getattr(stats, "variances", dict)().items()})
    out.undefined.update({f"{prefix}/{k}": why for k, why in stats.undefined().items()})
    if curve:
        out.curves[prefix] = stats.curve()
    return out


MetricFn = Callable[["EvalContext"], "MetricOutput | dict[str, float]"]
METRICS: Registry[MetricFn] = Registry("metrics")


@dataclass(frozen=True)
class MetricSpec:
    """How the engine schedules a metric (kept out of the registry info, which ``ls`` shows)."""

    requires: tuple[str, ...] = ()
    stage: int = 0
    default: bool = True
    gap: bool = True


_SPECS: dict[str, MetricSpec] = {}


def metric_spec(name: str) -> MetricSpec:
    """The scheduling spec of a registered metric (defaults for metrics registered directly)."""
    return _SPECS.get(name, MetricSpec())


def metric_info(name: str) -> dict[str, Any]:
    """Registry info with ``direction`` (default ``reference``) and ``needs`` filled in."""
    info = dict(METRICS.info(name))
    info.setdefault("direction", "reference")
    info.setdefault("needs", ())
    return info


def register_metric(
    name: str,
    *,
    direction: str,
    summary: str,
    keys: str | None = None,
    needs: tuple[str, ...] = (),
    requires: tuple[str, ...] = (),
    stage: int = 0,
    default: bool = True,
    gap: bool = True,
    task: str = "classification",
) -> Callable[[MetricFn], MetricFn]:
    """Register a metric. ``gap``: whether ``gap/<key>`` is reported for its values;
    ``default``: whether it runs when no metric list is given; ``task``: the models it scores
    (``generation`` metrics read ``eval.generation.GenEvalContext``, not ``EvalContext``)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"metric {name!r}: direction must be one of {DIRECTIONS}")
    bad = [n for n in needs if n not in NEEDS]
    if bad:
        raise ValueError(f"metric {name!r}: unknown needs {bad}; valid: {NEEDS}")
    register = METRICS.register(name, summary=summary, direction=direction, needs=tuple(needs), keys=keys or name,
                                task=task)

    def deco(fn: MetricFn) -> MetricFn:
        register(fn)
        _SPECS[name] = MetricSpec(tuple(requires), stage, default, gap)
        return fn

    return deco


class PredictionCache:
    """Each (model, split) is predicted once; test_retained / test_forgotten are slices of test."""

    def __init__(self, batch_size: int = 1024, amp: bool = False) -> None:
        self.batch_size = batch_size
        self.amp = amp
        self.seconds = 0.0
        self._store: dict[tuple[int, str], tuple[nn.Module, Predictions | None]] = {}

    def get(self, model: nn.Module, data: UnlearnData, split: str) -> Predictions | None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        key = (id(model), split)
        if key in self._store:
            return self._store[key][1]
        if split in ("test_retained", "test_forgotten"):
            sub = getattr(data, split)
            test = self.get(model, data, "test")
            preds = None
            if sub is not None and test is not None and len(sub):
                preds = test.select(torch.isin(test.idx, sub.idx.cpu()), split)
        else:
            tset = getattr(data, split)
            preds = None
            if tset is not None and len(tset):
                t0 = time.perf_counter()
                preds = Predictions.of(model, tset, self.batch_size, self.amp)
                self.seconds += time.perf_counter() - t0
        # Keep the model alive with its entry so id() cannot be reused by another model.
        self._store[key] = (model, preds)
        return preds

    def adopt(self, other: PredictionCache, model: nn.Module) -> None:
        """Take ``other``'s predictions of ``model`` (same data): they are not computed again."""
        for key, entry in other._store.items():
            if key[0] == id(model) and entry[0] is model:
                self._store.setdefault(key, entry)


@dataclass
class EvalContext:
    """Everything a metric may read. ``values`` fills up as metrics run (in stage order)."""

    model: nn.Module
    data: UnlearnData
    options: Any  # eval.engine.EvalConfig
    cache: PredictionCache
    reference_model: nn.Module | None = None
    reference_values: dict[str, float] | None = None
    original_model: nn.Module | None = None
    original_values: dict[str, float] | None = None
    rte_seconds: float | None = None
    pools: tuple[Any, ...] = ()  # eval.shadow.ShadowPool
    threat: Any = None  # robust.threat.ThreatModel
    values: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # value key -> metric name
    counts: dict[str, int] = field(default_factory=dict)  # see MetricOutput.counts
    undefined: dict[str, str] = field(default_factory=dict)  # value key -> why it is not a number
    variances: dict[str, float] = field(default_factory=dict)  # see MetricOutput.variances
    outcomes: dict[str, Outcomes] = field(default_factory=dict)  # see MetricOutput.outcomes
    reference_outcomes: dict[str, Outcomes] | None = None  # the reference's, when known

    def preds(self, split: str, who: str = "model") -> Predictions | None:
        model = {"model": self.model, "reference": self.reference_model, "original": self.original_model}[who]
        if model is None:
            return None
        return self.cache.get(model, self.data, split)

    @property
    def classwise(self) -> bool:
        return bool(self.data.spec.classwise)

    @property
    def ta_split(self) -> str:
        """The papers' "TA": the test set without the forgotten class(es) for class-wise specs."""
        return "test_retained" if self.classwise and self.data.test_retained is not None else "test"

    def pool(self, kind: str) -> Any:
        return next((p for p in self.pools if p.kind == kind), None)

    def has(self, need: str) -> bool:
        return {
            "reference": self.reference_model is not None or self.reference_values is not None,
            "reference_model": self.reference_model is not None,
            "original": self.original_model is not None or self.original_values is not None,
            "rte": self.rte_seconds is not None,
            "lira_pool": self.pool("lira") is not None,
            "ulira_pool": self.pool("ulira") is not None,
            "robustness": bool(getattr(self.options, "robustness", ())),
            "classwise": self.classwise and self.data.test_retained is not None,
        }[need]
