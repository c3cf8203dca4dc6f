"""LiRA (offline and online) against the evaluated model, with a ``lira`` shadow pool.

For each pair of ``mia_threshold`` (forget vs test, retain vs test) the model's logit-scaled
confidence of every sample is scored against that sample's Gaussians from the pool (see
``eval.lira`` for the exact estimator) and summarised as AUC, balanced accuracy and TPR at 1 % /
0.1 % FPR, with ``n_members`` / ``n_nonmembers`` (a TPR at an FPR below 1/n_nonmembers is
undefined and left out, see ``eval.metrics.base.record_attack``). Samples without IN (online) or OUT
observations in the pool are left out.
"""

from __future__ import annotations

import numpy as np

from unlearnbench.eval.lira import GaussianFit, usable
from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, record_attack, register_metric
from unlearnbench.eval.metrics.mia_threshold import pair_splits
from unlearnbench.eval.roc import attack_stats

_SOURCE = {"forget": "train", "retain": "train", "test": "test", "test_retained": "test", "test_forgotten": "test"}


@register_metric("lira", direction="reference", needs=("lira_pool",),
                 keys="mia/{lira_online,lira_offline}/{forget_test,retain_test}/{auc,bal_acc,tpr_at_fpr_*,n_members,n_nonmembers}",
                 summary="LiRA online/offline (per-example Gaussians from a shadow pool): AUC, TPR at low FPR")
def lira(ctx: EvalContext) -> MetricOutput:
    pool = ctx.pool("lira")
    pool.check_data(ctx.data)
    fit = pool.fit(getattr(ctx.options, "lira_variance", "auto"))
    out = MetricOutput()
    for pair, (mem_split, non_split) in pair_splits(ctx).items():
        mem, non = ctx.preds(mem_split), ctx.preds(non_split)
        if mem is None or non is None:
            continue
        pm = pool.positions(mem.idx, _SOURCE[mem_split])
        pn = pool.positions(non.idx, _SOURCE[non_split])
        for name, online in (("lira_online", True), ("lira_offline", False)):
            ok = usable(fit, online)
            st = attack_stats(_scores(fit, pm, mem.phi.numpy(), ok, online),
                              _scores(fit, pn, non.phi.numpy(), ok, online))
            record_attack(out, f"mia/{name}/{pair}", st)
    return out


def _scores(fit: GaussianFit, positions: np.ndarray, phi: np.ndarray, ok: np.ndarray, online: bool) -> np.ndarray:
    keep = ok[positions]
    sub = fit.subset(positions[keep])
    return sub.online(phi[keep]) if online else sub.offline(phi[keep])
