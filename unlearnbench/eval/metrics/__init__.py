"""The metric registry (``METRICS``) and the built-in metrics, one family per module.

Importing this package registers every built-in metric; third-party metrics plug in through
the ``unlearnbench.metrics`` entry-point group.
"""

from unlearnbench.eval.metrics import (  # noqa: F401  (registration side effects)
    accuracy,
    aus,
    divergence,
    gap,
    generation,
    lira,
    mia_svc,
    mia_threshold,
    robustness,
    rte,
    two_model_ulira,
    ulira,
)
from unlearnbench.eval.metrics.base import (  # noqa: E402
    DIRECTIONS,
    METRICS,
    EvalContext,
    MetricOutput,
    PredictionCache,
    register_metric,
)

__all__ = ["DIRECTIONS", "METRICS", "EvalContext", "MetricOutput", "PredictionCache", "register_metric"]
