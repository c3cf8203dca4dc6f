"""Run-time efficiency: the wall-clock seconds of the unlearning call (the papers report
minutes on a stated GPU; the device is in the report's provenance)."""

from __future__ import annotations

from unlearnbench.eval.metrics.base import EvalContext, register_metric


@register_metric("rte", direction="lower", gap=False, needs=("rte",), keys="rte_seconds",
                 summary="run-time efficiency: seconds the unlearning method ran")
def rte(ctx: EvalContext) -> dict[str, float]:
    return {"rte_seconds": float(ctx.rte_seconds)}
