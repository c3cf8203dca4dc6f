"""The evaluation engine: one forward pass per split, every requested metric, one ``Report``.

``Evaluator(...).evaluate(model, data, reference=..., original=..., rte_seconds=...)``:

1. decides which metrics run (the defaults, or the ones named, plus what they ``require``);
   default metrics whose inputs are missing are skipped (listed in ``Report.skipped``), named
   ones fail with one sentence; ``gap`` always runs when a reference is given, ``robustness``
   when attacks are;
2. if a retrained *model* is given as reference, evaluates it with the same metrics (those that
   do not themselves need a reference) to get the reference values; a reference ``Report`` (or
   a dict of values) is used as is, so a study evaluates its retrained model once;
3. runs the metrics in stage order on shared, cached predictions (``PredictionCache``): each
   (model, split) is predicted exactly once, test_retained / test_forgotten are slices of test;
4. returns a ``Report`` with values, the n behind each of them (``counts``), the values that are
   undefined and why, per-class table, ROC curves, config, provenance, timings.

This module never imports mlflow; ``eval.tracking.log_report`` logs a report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch.nn as nn

from unlearnbench.core import provenance
from unlearnbench.core.config import configclass, to_dict
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.errors import ConfigError, UserError
from unlearnbench.core.runtime import model_device
from unlearnbench.eval.inputs import dataset_inputs
from unlearnbench.eval.metrics import METRICS, EvalContext, MetricOutput, PredictionCache
from unlearnbench.eval.metrics.base import metric_info, metric_spec
from unlearnbench.eval.report import PER_CLASS_COLUMNS, Report

log = logging.getLogger(__name__)

# What a missing need means, phrased for the one-sentence error.
_NEED_TEXT = {
    "reference": "a retrained reference (--reference CKPT or a reference report)",
    "reference_model": "a retrained reference model, not only its report (--reference CKPT)",
    "original": "the original model (--original CKPT)",
    "rte": "the unlearning run time (rte_seconds)",
    "lira_pool": "a LiRA shadow pool (--shadow-pool DIR from `unlearnbench shadow train`)",
    "ulira_pool": "a U-LiRA shadow pool (--shadow-pool DIR from `unlearnbench shadow train --ulira-method ...`)",
    "robustness": "robustness attacks (--robustness pgd,autoattack)",
    "classwise": "a class-wise forget spec (class:C or subclass:S/F)",
}
# Metrics computed on the reference itself must not need a reference (or the run's extras).
_NOT_ON_REFERENCE = {"reference", "reference_model", "original", "rte", "ulira_pool"}


@configclass
class EvalConfig:
    """How to evaluate (recorded in every report and flattened into MLflow params)."""

    metrics: tuple[str, ...] | None = None  # None: every default metric whose inputs are present
    robustness: tuple[str, ...] = ()  # attack names (see `unlearnbench ls attacks`)
    norm: Literal["Linf", "L2"] = "Linf"
    eps: float = 8 / 255
    robust_n: int | None = 1000  # points per split for robustness (None: all)
    seed: int = 0
    batch_size: int = 1024
    amp: bool = False  # bf16 autocast for predictions (CUDA only); fp32 by default for fidelity
    # MIA-Efficacy SVC solver (metrics/mia_svc.py): "lowrank" (fast), "libsvm" (scikit-learn on merged
    # duplicates) or "sklearn" (the papers' code verbatim); the same SVC problem in every case.
    svc_solver: Literal["lowrank", "libsvm", "sklearn"] = "lowrank"
    lira_variance: Literal["auto", "per_example", "global"] = "auto"

    def __post_init__(self) -> None:
        if self.metrics is not None:
            if not self.metrics:
                raise ConfigError("metrics is empty; name at least one metric or leave it unset for the defaults.")
            for name in self.metrics:
                METRICS.get(name)  # unknown names: one sentence with "did you mean"
                task = METRICS.info(name).get("task", "classification")
                if task != "classification":
                    raise ConfigError(f"Metric {name!r} scores {task} models; it does not apply to a classifier.")
        if self.eps <= 0:
            raise ConfigError("eps must be positive (e.g. 8/255).")
        if self.robust_n is not None and self.robust_n < 1:
            raise ConfigError("robust_n must be at least 1 (or unset for every point).")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1.")
        # Checked here, before any prediction: the solver and the LiRA fit would only refuse them later.
        for key, valid in (("svc_solver", ("lowrank", "libsvm", "sklearn")), ("lira_variance", ("auto", "per_example", "global"))):
            if getattr(self, key) not in valid:
                raise ConfigError(f"{key} must be one of {', '.join(valid)}, not {getattr(self, key)!r}.")


class Evaluator:
    """Evaluate unlearned (or any) models on an ``UnlearnData``; see the module docstring."""

    def __init__(
        self,
        metrics: Sequence[str] | None = None,
        robustness: Sequence[str] = (),
        threat: Any = None,
        robust_n: int | None = 1000,
        seed: int = 0,
        *,
        shadow_pool: Any = None,
        batch_size: int = 1024,
        amp: bool = False,
        svc_solver: str = "lowrank",
        lira_variance: str = "auto",
    ) -> None:
        norm = getattr(threat, "norm", "Linf")
        eps = getattr(threat, "eps", 8 / 255)
        self.config = EvalConfig(
            metrics=tuple(metrics) if metrics is not None else None, robustness=tuple(robustness), norm=norm,
            eps=eps, robust_n=robust_n, seed=seed, batch_size=batch_size, amp=amp, svc_solver=svc_solver,
            lira_variance=lira_variance,
        )
        self.threat = threat
        if self.config.robustness:
            self.threat = self._threat(threat)
        self.pools = tuple(_load_pools(shadow_pool))
        # Reference / original models seen by this evaluator, per data: their predictions and
        # the reference's values, so evaluating several models against one reference predicts
        # and evaluates it once. Keys hold the model itself (its id stays valid).
        # (model, predictions, (values, outcomes) or None)
        self._companions: dict[tuple[int, tuple[str, ...]], tuple[nn.Module, PredictionCache, tuple | None]] = {}
        self.companion_hits = 0
        # Reference / original models built from checkpoint files, by file hash (eval.jobs).
        self.companion_models: dict[str, Any] = {}

    @classmethod
    def from_config(cls, config: EvalConfig, shadow_pool: Any = None) -> Evaluator:
        threat = _make_threat(config.norm, config.eps) if config.robustness else None
        return cls(
            config.metrics, config.robustness, threat, config.robust_n, config.seed, shadow_pool=shadow_pool,
            batch_size=config.batch_size, amp=config.amp, svc_solver=config.svc_solver,
            lira_variance=config.lira_variance,
        )

    def _threat(self, threat: Any) -> Any:
        try:
            from unlearnbench.robust.attacks import check_available
        except ImportError:
            raise UserError("Robustness metrics need the unlearnbench.robust package, which is not installed.") from None
        for name in self.config.robustness:
            check_available(name)
        return threat if threat is not None else _make_threat(self.config.norm, self.config.eps)

    # -- planning -------------------------------------------------------------------------------

    def plan(self, ctx: EvalContext) -> tuple[list[str], dict[str, str]]:
        """Metric names in run order, and the default metrics skipped for missing inputs."""
        explicit = self.config.metrics is not None
        names = list(self.config.metrics) if explicit else [n for n in METRICS.names() if metric_spec(n).default]
        if self.config.robustness and "robustness" not in names:
            names.append("robustness")
        if ctx.has("reference") and "gap" not in names:
            names.append("gap")  # with a reference, every gap-able value gets its gap/<key>
        selected: list[str] = []
        skipped: dict[str, str] = {}

        def add(name: str, strict: bool) -> None:
            if name in selected or name in skipped:
                return
            missing = [n for n in metric_info(name)["needs"] if not ctx.has(n)]
            if missing:
                if strict:
                    raise ConfigError(f"Metric {name!r} needs {_NEED_TEXT[missing[0]]}.")
                skipped[name] = "needs " + ", ".join(missing)
                return
            for req in metric_spec(name).requires:
                add(req, False)
            selected.append(name)

        for name in names:
            add(name, explicit)
        selected.sort(key=lambda n: metric_spec(n).stage)
        return selected, skipped

    # -- running --------------------------------------------------------------------------------

    def evaluate(
        self,
        model: nn.Module,
        data: UnlearnData,
        *,
        reference: nn.Module | Report | Mapping[str, float] | None = None,
        original: nn.Module | Report | Mapping[str, float] | None = None,
        rte_seconds: float | None = None,
        config: Mapping[str, Any] | None = None,
        name: str = "",
        meta: Mapping[str, Any] | None = None,
    ) -> Report:
        """Evaluate ``model`` (never modified) and return a ``Report``."""
        from unlearnbench.core.data.user import check_unlearn_data

        data = check_unlearn_data(data, "Evaluator.evaluate")
        start = time.perf_counter()
        cache = PredictionCache(self.config.batch_size, self.config.amp)
        ref_model, ref_values = _split_ref(reference)
        ref_counts = dict(reference.counts) if isinstance(reference, Report) else {}
        ref_variances = dict(reference.variances) if isinstance(reference, Report) else {}
        ref_outcomes = dict(reference.outcomes) if isinstance(reference, Report) else None
        orig_model, orig_values = _split_ref(original)
        inputs = dataset_inputs(data)
        data_key = tuple(f"{e['context']}:{e['digest']}" for e in inputs)
        ref_memo = self._adopt(cache, ref_model, data_key)
        self._adopt(cache, orig_model, data_key)
        ctx = EvalContext(
            model=model, data=data, options=self.config, cache=cache, reference_model=ref_model,
            reference_values=ref_values, original_model=orig_model, original_values=orig_values,
            rte_seconds=rte_seconds, pools=self.pools, threat=self.threat, reference_outcomes=ref_outcomes,
        )
        plan, skipped = self.plan(ctx)
        timings: dict[str, float] = {}
        if ref_model is not None and ref_memo is not None:
            ctx.reference_values = dict(ref_memo[0])
            ctx.reference_outcomes = dict(ref_memo[1])
        elif ref_model is not None:
            t0 = time.perf_counter()
            ref_ctx = EvalContext(model=ref_model, data=data, options=self.config, cache=cache, pools=self.pools,
                                  threat=self.threat)
            ref_plan = [n for n in plan if not set(metric_info(n)["needs"]) & _NOT_ON_REFERENCE
                        and metric_spec(n).stage <= 1]
            self._run(ref_ctx, ref_plan, {})
            ctx.reference_values = dict(ref_ctx.values)
            ctx.reference_outcomes = dict(ref_ctx.outcomes)
            ref_counts = dict(ref_ctx.counts)
            ref_variances = dict(ref_ctx.variances)
            timings["reference"] = time.perf_counter() - t0
        per_class: list[dict[str, Any]] = []
        curves: dict[str, dict[str, list[float]]] = {}
        self._run(ctx, plan, timings, per_class, curves)
        self._remember(cache, ref_model, data_key,
                       None if ctx.reference_values is None else (ctx.reference_values, ctx.reference_outcomes or {}))
        self._remember(cache, orig_model, data_key, None)
        directions = {k: metric_info(m)["direction"] for k, m in ctx.sources.items()}
        timings["predictions"] = cache.seconds
        timings["total"] = time.perf_counter() - start
        meta_out = {"dataset": data.info.name, "forget": str(data.spec), "seed": self.config.seed,
                    "inputs": inputs, **(meta or {})}
        eval_cfg = to_dict(self.config)
        if self.threat is not None:
            eval_cfg.update(norm=getattr(self.threat, "norm", eval_cfg["norm"]), eps=getattr(self.threat, "eps", eval_cfg["eps"]))
        eval_cfg["shadow_pools"] = [str(p.path) for p in self.pools]
        report_config = {**dict(config or {}), "eval": eval_cfg, "split_seed": data.split_seed}
        return Report(
            values=ctx.values,
            per_class=pd.DataFrame(per_class, columns=_columns(per_class)),
            curves=curves,
            config=report_config,
            provenance=provenance.collect(model_device(model), self.config.seed),
            timings=timings,
            name=name,
            meta=meta_out,
            directions=directions,
            reference_values=dict(ctx.reference_values or {}),
            skipped=skipped,
            counts=dict(ctx.counts),
            undefined=dict(ctx.undefined),
            reference_counts=ref_counts,
            outcomes=dict(ctx.outcomes),
            variances=dict(ctx.variances),
            reference_variances=ref_variances,
        )

    def _run(self, ctx: EvalContext, plan: list[str], timings: dict[str, float],
             per_class: list | None = None, curves: dict | None = None) -> None:
        for name in plan:
            t0 = time.perf_counter()
            result = METRICS.get(name)(ctx)
            if not isinstance(result, MetricOutput):
                result = MetricOutput(values=dict(result))
            for key, value in result.values.items():
                if key in ctx.values:
                    raise ValueError(f"metric {name!r} reports {key!r}, already reported by {ctx.sources[key]!r}")
                ctx.values[key] = float(value)
                ctx.sources[key] = name
            ctx.counts.update({k: int(v) for k, v in result.counts.items()})
            ctx.undefined.update(result.undefined)
            ctx.variances.update({k: float(v) for k, v in result.variances.items()})
            ctx.outcomes.update(result.outcomes)
            if per_class is not None:
                per_class.extend(result.per_class)
            if curves is not None:
                curves.update(result.curves)
            timings[name] = time.perf_counter() - t0
            log.debug("metric %s took %.2f s", name, timings[name])

    def _adopt(self, cache: PredictionCache, model: nn.Module | None, data_key: tuple[str, ...]) -> tuple | None:
        """Reuse a companion model's predictions on the same data; returns its (values, outcomes) if known."""
        memo = self._companions.get((id(model), data_key)) if model is not None else None
        if memo is None:
            return None
        self.companion_hits += 1
        cache.adopt(memo[1], model)
        return memo[2]

    def _remember(self, cache: PredictionCache, model: nn.Module | None, data_key: tuple[str, ...],
                  values: tuple | None) -> None:
        if model is None:
            return
        kept = PredictionCache(self.config.batch_size, self.config.amp)
        kept.adopt(cache, model)
        old = self._companions.get((id(model), data_key))
        self._companions[(id(model), data_key)] = (model, kept, values if values is not None else (old[2] if old else None))


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols = list(PER_CLASS_COLUMNS)
    for r in rows:
        cols += [c for c in r if c not in cols]
    return cols


def _split_ref(ref: Any) -> tuple[nn.Module | None, dict[str, float] | None]:
    if ref is None:
        return None, None
    if isinstance(ref, nn.Module):
        return ref, None
    if isinstance(ref, Report):
        return None, dict(ref.values)
    if isinstance(ref, Mapping):
        return None, {k: float(v) for k, v in ref.items()}
    raise TypeError(f"reference/original must be a model, a Report or a dict of values, not {type(ref).__name__}")


def _make_threat(norm: str, eps: float) -> Any:
    from unlearnbench.robust.threat import ThreatModel

    return ThreatModel(norm=norm, eps=eps)


def _load_pools(spec: Any) -> list[Any]:
    from unlearnbench.eval.shadow import ShadowPool

    if spec is None:
        return []
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    pools = [p if isinstance(p, ShadowPool) else ShadowPool.load(Path(p)) for p in items]
    kinds = [p.kind for p in pools]
    if len(set(kinds)) != len(kinds):
        raise UserError("Pass at most one LiRA pool and one U-LiRA pool (--shadow-pool).")
    return pools
