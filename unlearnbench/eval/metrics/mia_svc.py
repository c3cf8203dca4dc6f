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

Solvers (``EvalConfig.svc_solver``), all for the same SVC problem:

- ``lowrank`` (default): duplicated (feature, label) pairs are merged into one training point whose
  weight is its multiplicity (the SVC dual with k copies bounded by C each is the dual with one
  point bounded by kC), and the merged problem is solved by ``eval.svm1d``: the Gaussian kernel on
  one feature has a small numerical rank, so after a checked pivoted-Cholesky factorisation an
  interior-point method solves the dual in O(n r²) per iteration instead of libsvm's O(n) kernel
  columns per SMO step. It lands closer to the optimum than libsvm's default tolerance
  (``tol=1e-3``), so on a large set an occasional forget point right at the decision boundary can
  be classified as libsvm with a tighter ``tol`` classifies it. If the factor would need more than
  ``svm1d.MAX_RANK`` columns or the solver does not converge, ``libsvm`` runs instead.
- ``libsvm``: the same merging, fitted by scikit-learn.
- ``sklearn``: scikit-learn on the raw points, the papers' code verbatim.
"""

from __future__ import annotations

import logging

import numpy as np

from unlearnbench.eval import svm1d
from unlearnbench.eval.metrics.base import EvalContext, register_metric

log = logging.getLogger(__name__)


SOLVERS = ("lowrank", "libsvm", "sklearn")


def svc_attack(members: np.ndarray, nonmembers: np.ndarray, target: np.ndarray, solver: str = "lowrank") -> float:
    """Fraction of ``target`` that an SVC(C=3, rbf, gamma='auto') trained on members (1) vs
    non-members (0) predicts as non-member."""
    from sklearn.svm import SVC

    x = np.r_[np.asarray(members, np.float64).ravel(), np.asarray(nonmembers, np.float64).ravel()]
    y = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    t = np.asarray(target, np.float64).ravel()
    if len(t) == 0:
        return float("nan")
    if solver == "sklearn":
        return float(1.0 - SVC(C=3, gamma="auto", kernel="rbf").fit(x[:, None], y).predict(t[:, None]).mean())
    if solver not in SOLVERS:
        raise ValueError(f"unknown SVC solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    pairs, counts = np.unique(np.stack([x, y], 1), axis=0, return_counts=True)
    weights = counts.astype(np.float64)
    values, inverse = np.unique(t, return_inverse=True)
    model = None
    if solver == "lowrank":
        # gamma='auto' is 1 / n_features = 1 for one feature
        model = svm1d.fit(pairs[:, 0], pairs[:, 1], C=3.0, gamma=1.0, sample_weight=weights, points=values)
        if model is None:
            log.info("MIA SVC: kernel rank too high or no convergence in the low-rank solver; using libsvm")
    if model is None:
        model = SVC(C=3, gamma="auto", kernel="rbf").fit(pairs[:, :1], pairs[:, 1], sample_weight=weights)
    pred = model.predict(values[:, None])  # both models take a column of feature values
    return float(1.0 - pred[inverse.ravel()].mean())


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
                           solver=getattr(ctx.options, "svc_solver", "lowrank"))
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
