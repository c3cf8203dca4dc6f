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

Counts: ``n/<key>`` = the forget set's size (the score is a proportion of it),
``<key>/n_members`` and ``<key>/n_nonmembers`` = the SVC's shadow members and non-members. For
``mia_efficacy`` the fitted SVC's decision value is also scored as a membership score on the
forget set against the ``forget_test`` pair's non-members (test, or test_forgotten for class-wise
specs): the ROC curve ``mia/svc_confidence/forget_test`` with the SVC's own operating point
(``op_fpr``, ``op_tpr``; op_tpr = 1 - MIA-Efficacy / 100), drawn beside the threshold attacks.
For random forgetting those non-members are the SVC's own training negatives (in-sample).

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
from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, register_metric
from unlearnbench.eval.metrics.mia_threshold import pair_splits
from unlearnbench.eval.paired import Outcomes
from unlearnbench.eval.roc import attack_stats

log = logging.getLogger(__name__)


SOLVERS = ("lowrank", "libsvm", "sklearn")


def _svc_decision(members: np.ndarray, nonmembers: np.ndarray, target: np.ndarray, solver: str):
    """Fit the SVC on members (1) vs non-members (0) and return (decision values at the distinct
    target values, index of each target into them)."""
    from sklearn.svm import SVC

    x = np.r_[np.asarray(members, np.float64).ravel(), np.asarray(nonmembers, np.float64).ravel()]
    y = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    t = np.asarray(target, np.float64).ravel()
    if solver not in ("lowrank", "libsvm"):  # `sklearn` (raw points) is handled by svc_attack
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
    # Both models take a column of feature values; label 1 (member) where the decision is > 0.
    return model.decision_function(values[:, None]).ravel(), inverse.ravel()


def svc_verdicts(members: np.ndarray, nonmembers: np.ndarray, target: np.ndarray, solver: str = "lowrank") -> np.ndarray:
    """Per ``target`` point: True where an SVC(C=3, rbf, gamma='auto') trained on members (1) vs
    non-members (0) predicts non-member (the event MIA-Efficacy counts)."""
    t = np.asarray(target, np.float64).ravel()
    if len(t) == 0:
        return np.zeros(0, bool)
    if solver == "sklearn":  # the papers' code verbatim
        from sklearn.svm import SVC

        x = np.r_[np.asarray(members, np.float64).ravel(), np.asarray(nonmembers, np.float64).ravel()]
        y = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
        return SVC(C=3, gamma="auto", kernel="rbf").fit(x[:, None], y).predict(t[:, None]) == 0
    decision, inverse = _svc_decision(members, nonmembers, target, solver)
    return ~(decision > 0)[inverse]


def svc_attack(members: np.ndarray, nonmembers: np.ndarray, target: np.ndarray, solver: str = "lowrank") -> float:
    """Fraction of ``target`` that an SVC(C=3, rbf, gamma='auto') trained on members (1) vs
    non-members (0) predicts as non-member."""
    verdicts = svc_verdicts(members, nonmembers, target, solver)
    return float(verdicts.mean()) if len(verdicts) else float("nan")


def svc_roc(members: np.ndarray, nonmembers: np.ndarray, positives: np.ndarray, negatives: np.ndarray,
            solver: str = "lowrank"):
    """ROC of the fitted SVC's decision value as a membership score, ``positives`` (the forget
    set) against ``negatives`` (unseen images): an ``eval.roc.AttackStats`` plus the SVC's own
    operating point (FPR, TPR) at decision 0, where TPR = 1 - MIA-Efficacy / 100."""
    pos, neg = np.asarray(positives, np.float64).ravel(), np.asarray(negatives, np.float64).ravel()
    # The papers' `sklearn` path on raw points is slow; libsvm on merged points solves the same SVC.
    decision, inverse = _svc_decision(members, nonmembers, np.r_[pos, neg], "libsvm" if solver == "sklearn" else solver)
    scores = decision[inverse]
    st = attack_stats(scores[: len(pos)], scores[len(pos):])
    return st, (float(np.mean(scores[len(pos):] > 0)), float(np.mean(scores[: len(pos)] > 0)))


def _svc_metric(key: str, feature: str):
    def metric(ctx: EvalContext) -> MetricOutput:
        forget, retain, test = ctx.preds("forget"), ctx.preds("retain"), ctx.preds(ctx.ta_split)
        if forget is None or retain is None or test is None:
            return MetricOutput()
        n = len(test)
        if len(retain) < n:
            log.warning("retain set (%d) is smaller than the test set (%d): all of it serves as members",
                        len(retain), n)
        members = getattr(retain, feature)[:n].numpy()
        solver = getattr(ctx.options, "svc_solver", "lowrank")
        verdicts = svc_verdicts(members, getattr(test, feature).numpy(), getattr(forget, feature).numpy(), solver=solver)
        value = float(verdicts.mean()) if len(verdicts) else float("nan")
        out = MetricOutput(values={key: 100.0 * value}, counts={
            f"n/{key}": len(forget),  # the score is a proportion of the forget set
            f"{key}/n_members": len(members),  # the SVC's shadow members (retain) ...
            f"{key}/n_nonmembers": n,  # ... and shadow non-members (the TA test set)
        }, outcomes={key: Outcomes.of(verdicts, forget.idx)})  # per forget image: the gap is paired
        if key == "mia_efficacy":
            # The same SVC's decision value as a score: forget set vs the forget_test pair's
            # non-members, drawn beside the threshold attacks' ROC (``mia/svc_confidence/...``).
            non = ctx.preds(pair_splits(ctx)["forget_test"][1])
            if non is not None and len(non):
                st, (op_fpr, op_tpr) = svc_roc(members, getattr(test, feature).numpy(), getattr(forget, feature).numpy(),
                                               getattr(non, feature).numpy(), solver)
                curve = {**st.curve(), "op_fpr": [op_fpr], "op_tpr": [op_tpr]}
                out.curves[f"mia/svc_{feature}/forget_test"] = curve
                out.counts[f"mia/svc_{feature}/forget_test/n_members"] = st.n_members
                out.counts[f"mia/svc_{feature}/forget_test/n_nonmembers"] = st.n_nonmembers
        return out

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
