"""MIA-Efficacy exactly as SalUn / Unlearn-Sparse (``evaluation/SVC_MIA.py``), plus its entropy
and modified-entropy variants with the modified entropy computed correctly.

Protocol of ``SVC_MIA_forget_efficacy``:

- shadow members (label 1): the **first** ``|T|`` samples of the retain set in dataset order
  (``Subset(retain, range(len(test)))``), where ``T`` is the test set the papers report TA on
  (the test set without the forgotten classes for class-wise specs);
- shadow non-members (label 0): all of ``T``;
- attack: ``sklearn.svm.SVC(C=3, gamma="auto", kernel="rbf")`` fitted on one 1-D feature, no
  scaling, no class weights (``gamma="auto"`` = 1 for one feature);
- score: ``100 * (1 - mean(clf.predict(forget features)))``, the percentage of the forget set
  predicted non-member. The papers' "MIA" is the ``confidence`` (true-class softmax) version.

Speed without changing the result: duplicated (feature, label) pairs are merged into one
training point whose ``sample_weight`` is its multiplicity (the SVC dual with k copies bounded by
C each is the dual with one point bounded by kC), and the forget set is predicted once per
distinct value. Softmax confidences saturate at exactly 1.0 in float32, so well-trained models
produce many duplicates and the fit gets an order of magnitude faster.
"""

from __future__ import annotations

import logging

import numpy as np

from unlearnbench.eval.metrics.base import EvalContext, register_metric

log = logging.getLogger(__name__)


def svc_attack(members: np.ndarray, nonmembers: np.ndarray, target: np.ndarray, dedup: bool = True) -> float:
    """Fraction of ``target`` that an SVC(C=3, rbf, gamma='auto') trained on members (1) vs
    non-members (0) predicts as non-member."""
    from sklearn.svm import SVC

    x = np.r_[np.asarray(members, np.float64).ravel(), np.asarray(nonmembers, np.float64).ravel()]
    y = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    t = np.asarray(target, np.float64).ravel()
    if len(t) == 0:
        return float("nan")
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    if dedup:
        pairs, counts = np.unique(np.stack([x, y], 1), axis=0, return_counts=True)
        clf.fit(pairs[:, :1], pairs[:, 1], sample_weight=counts.astype(np.float64))
        values, inverse = np.unique(t, return_inverse=True)
        pred = clf.predict(values[:, None])[inverse.ravel()]
    else:
        clf.fit(x[:, None], y)
        pred = clf.predict(t[:, None])
    return float(1.0 - pred.mean())


def _svc_metric(key: str, feature: str):
    def metric(ctx: EvalContext) -> dict[str, float]:
        forget, retain, test = ctx.preds("forget"), ctx.preds("retain"), ctx.preds(ctx.ta_split)
        if forget is None or retain is None or test is None:
            return {}
        n = len(test)
        if len(retain) < n:
            log.warning("retain set (%d) is smaller than the test set (%d): all of it serves as members",
                        len(retain), n)
        members = getattr(retain, feature)[:n].numpy()
        value = svc_attack(members, getattr(test, feature).numpy(), getattr(forget, feature).numpy(),
                           dedup=getattr(ctx.options, "svc_dedup", True))
        return {key: 100.0 * value}

    metric.__name__ = key
    return metric


_VARIANTS = {
    "mia_efficacy": ("confidence", "SalUn/Unlearn-Sparse MIA-Efficacy: % of forget predicted non-member by "
                                   "SVC(C=3, rbf) on the true-class probability"),
    "mia_entropy": ("entropy", "MIA-Efficacy with the softmax entropy as the SVC feature (%)"),
    "mia_m_entropy": ("m_entropy", "MIA-Efficacy with the (correct) modified entropy as the SVC feature (%)"),
}

for _key, (_feature, _summary) in _VARIANTS.items():
    register_metric(_key, direction="reference", summary=_summary)(_svc_metric(_key, _feature))
