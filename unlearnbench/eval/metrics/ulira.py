"""U-LiRA (Hayes et al., 2024): can a per-example attacker tell an unlearned model from a model
retrained without the forget examples?

With a ``ulira`` shadow pool (see ``eval.shadow``: model pairs over varied forget sets drawn
from the candidates of the pool's forget spec) this reports:

- ``mia/ulira/targets/{acc, auc}`` with ``_lo`` / ``_hi`` 95 % intervals: the U-LiRA protocol
  (Student-t over the target pairs, given the pool's shadows); ``_fit_lo`` / ``_fit_hi``: the
  pool's recorded two-stage bootstrap over shadow pairs (refit) and target pairs (``n_boot``
  draws), the interval for claims about the method.
  Every model of the pool is a target once (half unlearned, half retrained), attacked on each
  example of its forget set with per-example Gaussians from the other pairs; "unlearned" when
  the log likelihood ratio is positive. About 0.5 = the method's output cannot be told from
  retraining; ``n_targets``, ``n_members`` (decisions on unlearned targets) and
  ``n_nonmembers`` (on retrained targets) say what the numbers rest on. These describe the
  pool's method and config, not the evaluated checkpoint.
- ``mia/ulira/forget/called_unlearned``: the share of the evaluated model's forget examples the
  same attack (the whole pool as shadows) calls "unlearned"; ``mia/ulira/reference/...`` is the
  same for the retrained reference, when one is given. The pool's models forget half of the candidates each, so for a model that forgot a
  set of another size this is indicative only.

The cheap two-model variant (one unlearned vs one retrained model) is ``two_model_ulira``.
"""

from __future__ import annotations

import numpy as np

from unlearnbench.eval.lira import usable
from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, register_metric


@register_metric("ulira", direction="lower", needs=("ulira_pool",), gap=False,
                 keys="mia/ulira/targets/{acc,auc}[_lo,_hi,_fit_lo,_fit_hi], mia/ulira/{forget,reference}/called_unlearned",
                 summary="U-LiRA protocol over the pool's targets (half unlearned, half retrained): accuracy/AUC, 95 % CI")
def ulira(ctx: EvalContext) -> MetricOutput:
    pool = ctx.pool("ulira")
    pool.check_data(ctx.data)
    variance = getattr(ctx.options, "lira_variance", "auto")
    out = MetricOutput()
    res = pool.targets(variance)
    out.values.update({f"mia/ulira/targets/{k}": v for k, v in res.values().items()})
    out.counts.update({f"mia/ulira/targets/{k}": int(v) for k, v in res.counts().items()})
    hold = (pool.manifest.get("holdout") or {}).get("ulira") or {}
    if variance == "auto" and "auc_fit_lo" in hold:  # the pool's recorded two-stage bootstrap (shadows + targets)
        out.values.update({f"mia/ulira/targets/{k}": float(hold[k])
                           for k in ("acc_fit_lo", "acc_fit_hi", "auc_fit_lo", "auc_fit_hi")})
        out.counts["mia/ulira/targets/n_boot"] = int(hold["n_boot"])
    fit = pool.fit(variance)
    for who, prefix in (("model", "mia/ulira/forget"), ("reference", "mia/ulira/reference")):
        preds = ctx.preds("forget", who)
        if preds is None:
            continue
        pos = pool.positions(preds.idx, "forget")
        ok = usable(fit, True)[pos]
        if ok.any():
            score = fit.subset(pos[ok]).online(preds.phi.numpy()[ok])
            out.values[f"{prefix}/called_unlearned"] = float(np.mean(score > 0))
            out.counts[f"{prefix}/n_examples"] = int(ok.sum())
    return out
