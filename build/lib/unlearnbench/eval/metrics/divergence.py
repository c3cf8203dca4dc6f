"""Output divergence between the evaluated model and the retrained reference.

Per sample, on softmax outputs (natural log, float64), averaged over the split:

- ``div/kl/<split>`` = KL(p_ref || p_model) = sum_c p_ref,c (log p_ref,c - log p_model,c)
  (how well the model reproduces the reference's outputs);
- ``div/js/<split>`` = JS(p_ref, p_model) = 1/2 KL(p_ref || m) + 1/2 KL(p_model || m),
  m = (p_ref + p_model) / 2, in [0, ln 2]. This is the textbook JS; the Bad Teacher repo's
  ``JSDiv`` computes ``F.kl_div`` with swapped arguments and element-mean reduction instead.
"""

from __future__ import annotations

import math

import torch

from unlearnbench.eval.metrics.base import EvalContext, register_metric


def kl_js(logits_model: torch.Tensor, logits_ref: torch.Tensor) -> tuple[float, float]:
    lp = torch.log_softmax(logits_model.double(), 1)
    lq = torch.log_softmax(logits_ref.double(), 1)
    p, q = lp.exp(), lq.exp()
    kl = (q * (lq - lp)).sum(1)
    m = 0.5 * (p + q)
    lm = torch.log(m.clamp_min(1e-300))
    js = 0.5 * (p * (lp - lm)).sum(1) + 0.5 * (q * (lq - lm)).sum(1)
    # Rounding can leave tiny negatives; JS is bounded by ln 2.
    return float(kl.clamp_min(0).mean()), float(js.clamp(0, math.log(2)).mean())


@register_metric("divergence", direction="lower", gap=False, needs=("reference_model",),
                 keys="div/{kl,js}/{forget,test}",
                 summary="KL(ref || model) and JS divergence of softmax outputs on forget and test")
def divergence(ctx: EvalContext) -> dict[str, float]:
    out = {}
    for split in ("forget", "test"):
        mine, ref = ctx.preds(split), ctx.preds(split, "reference")
        if mine is None or ref is None:
            continue
        kl, js = kl_js(mine.logits, ref.logits)
        out[f"div/kl/{split}"] = kl
        out[f"div/js/{split}"] = js
    return out
