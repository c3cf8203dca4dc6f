"""DUCK's Adaptive Unlearning Score (Cotogni et al.; ``src/main.py: AUS`` of the DUCK / SCAR repos).

With accuracies as fractions in [0, 1]:

    AUS = (1 - (A_or - A_t)) / (1 + Delta)

- random / index forgetting (their "HR"): A_t = test accuracy of the unlearned model,
  A_f = its forget-set (training images) accuracy, Delta = |A_f - A_t|;
- class-wise forgetting ("CR"): A_t = accuracy on the test images of the retained classes,
  A_f = accuracy on the test images of the forgotten classes, Delta = |A_f|;
- A_or = the original model's accuracy on the same test images as A_t. (The repos hard-code a
  per-dataset constant measured on the original model; measuring it on the same split keeps
  "AUS = 1 means no accuracy loss and Delta = 0".)

AUS can exceed 1 when the unlearned model beats the original on A_t.
"""

from __future__ import annotations

from unlearnbench.eval.metrics.base import EvalContext, register_metric


def adaptive_unlearning_score(a_or: float, a_t: float, a_f: float, classwise: bool) -> float:
    """AUS from fractions in [0, 1]."""
    delta = abs(a_f) if classwise else abs(a_f - a_t)
    return (1.0 - (a_or - a_t)) / (1.0 + delta)


@register_metric("aus", direction="higher", needs=("original",), stage=1,
                 requires=("test_acc", "forget_acc", "test_retained_acc", "test_forgotten_acc"),
                 summary="DUCK's Adaptive Unlearning Score (1 = no accuracy loss, forgetting on target)")
def aus(ctx: EvalContext) -> dict[str, float]:
    cw = ctx.has("classwise")
    t_key, f_key = ("test_retained_acc", "test_forgotten_acc") if cw else ("test_acc", "forget_acc")
    if t_key not in ctx.values or f_key not in ctx.values:
        return {}
    if ctx.original_model is not None:
        a_or = ctx.preds(t_key[: -len("_acc")], "original").accuracy
    else:
        a_or = (ctx.original_values or {}).get(t_key)
        if a_or is None:
            return {}
    return {"aus": adaptive_unlearning_score(a_or / 100, ctx.values[t_key] / 100, ctx.values[f_key] / 100, cw)}
