"""Attack statistics from member / non-member scores (higher score = "member").

Conventions (LiRA, Carlini et al. 2022, ``plot.py::sweep``):

- ``auc``: area under the ROC curve (ties count one half), in [0, 1];
- ``bal_acc``: the **cross-fitted** balanced accuracy (1 + TPR - FPR) / 2: the threshold is chosen
  on one random half of the points and scored on the other, both ways, seeded
  (``eval.crossfit``); 0.5 is chance, 1 perfect separation. LiRA's in-sample "best over all
  thresholds" is optimistic (0.53-0.55 on noise for a few hundred points);
- ``tpr_at_fpr_<a>``: the TPR of the last ROC point whose FPR is at most ``a``. With
  ``n_nonmembers`` non-members the smallest non-zero FPR is ``1 / n_nonmembers``; for ``a`` below
  that the only reachable point is FPR = 0, so "TPR at FPR a" is not measured at all: the value
  is **undefined** (absent from ``values()``, its reason in ``undefined()``), not a number.

Every attack records ``n_members`` and ``n_nonmembers`` (``counts()``) and DeLong's variance of
its AUC from the scores (``variances()``, ``eval.intervals.delong``), and ``record_attack`` in
``eval.metrics.base`` writes values, counts, variances, undefined reasons and the curve under one
prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from unlearnbench.eval.crossfit import cross_fitted_balanced_accuracy
from unlearnbench.eval.intervals import delong

LOW_FPRS = (0.01, 0.001)


def fpr_key(a: float) -> str:
    """``0.001`` -> ``tpr_at_fpr_0.001`` (MLflow-safe, no ``%`` or ``@``)."""
    return f"tpr_at_fpr_{a:g}"


@dataclass(frozen=True)
class AttackStats:
    auc: float
    bal_acc: float
    tpr_at_fpr: dict[float, float]
    n_members: int
    n_nonmembers: int
    fpr: list[float] = field(default_factory=list)  # thinned ROC curve for plots and reports
    tpr: list[float] = field(default_factory=list)
    # DeLong's variance of ``auc`` from the scores (``eval.intervals.delong``); NaN when unknown
    auc_variance: float = float("nan")

    def values(self) -> dict[str, float]:
        """The defined statistics (undefined low-FPR TPRs are left out, see ``undefined``)."""
        out = {"auc": self.auc, "bal_acc": self.bal_acc}
        out.update({fpr_key(a): t for a, t in self.tpr_at_fpr.items() if a not in self.undefined_fprs()})
        return out

    def variances(self) -> dict[str, float]:
        """``{"auc": DeLong's variance}`` when it could be computed from the scores (any finite
        value, 0 included: ``eval.intervals.auc_interval_delong`` decides what a 0 means)."""
        return {"auc": self.auc_variance} if np.isfinite(self.auc_variance) else {}

    def counts(self) -> dict[str, int]:
        return {"n_members": self.n_members, "n_nonmembers": self.n_nonmembers}

    def undefined_fprs(self) -> tuple[float, ...]:
        return tuple(a for a in self.tpr_at_fpr if undefined_reason(a, self.n_nonmembers) is not None)

    def undefined(self) -> dict[str, str]:
        """``tpr_at_fpr_<a>`` -> why it is not a number."""
        return {fpr_key(a): undefined_reason(a, self.n_nonmembers) for a in self.undefined_fprs()}  # type: ignore[misc]

    def curve(self) -> dict[str, list[float]]:
        """Thinned ROC points plus the counts (one-element lists), so a plot can shade the FPRs
        below 1/n_nonmembers that the curve cannot resolve."""
        return {"fpr": self.fpr, "tpr": self.tpr, "n_members": [self.n_members], "n_nonmembers": [self.n_nonmembers]}


def min_fpr(n_nonmembers: int) -> float:
    """The smallest non-zero FPR ``n_nonmembers`` non-members can resolve."""
    return 1.0 / n_nonmembers if n_nonmembers > 0 else float("inf")


def undefined_reason(fpr: float, n_nonmembers: int) -> str | None:
    """Why TPR at ``fpr`` cannot be measured with ``n_nonmembers`` non-members (None if it can)."""
    if n_nonmembers > 0 and fpr >= min_fpr(n_nonmembers) - 1e-12:
        return None
    if n_nonmembers <= 0:
        return "undefined: there are no non-members"
    return (f"undefined: FPR {fpr:g} is below 1/n_nonmembers = 1/{n_nonmembers} = {min_fpr(n_nonmembers):.2g}, "
            f"the smallest non-zero FPR {n_nonmembers} non-members can measure")


def attack_stats(
    member_scores: np.ndarray, nonmember_scores: np.ndarray, fprs: tuple[float, ...] = LOW_FPRS, seed: int = 0
) -> AttackStats:
    from sklearn.metrics import roc_auc_score, roc_curve

    m = np.asarray(member_scores, dtype=np.float64).ravel()
    n = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if len(m) == 0 or len(n) == 0:
        nan = float("nan")
        return AttackStats(nan, nan, {a: nan for a in fprs}, len(m), len(n))
    if not (np.isfinite(m).all() and np.isfinite(n).all()):
        raise ValueError("attack scores must be finite")
    y = np.r_[np.ones(len(m)), np.zeros(len(n))]
    s = np.r_[m, n]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    auc = float(roc_auc_score(y, s))
    auc_var = delong(m, n)[1]
    bal = cross_fitted_balanced_accuracy(m, n, seed)
    low = {}
    for a in fprs:
        ok = np.flatnonzero(fpr <= a + 1e-12)
        # Below 1/n_nonmembers only FPR = 0 is reachable: not a measurement of TPR at ``a``.
        low[a] = float(tpr[ok[-1]]) if undefined_reason(a, len(n)) is None else float("nan")
    tf, tt, _ = roc_curve(y, s, drop_intermediate=True)
    return AttackStats(auc, bal, low, len(m), len(n), _thin(tf), _thin(tt), auc_var)


def _thin(a: np.ndarray, max_points: int = 2000) -> list[float]:
    # Curves go into report JSON; keep them small but dense enough for a log-log plot.
    if len(a) > max_points:
        a = a[np.unique(np.r_[np.geomspace(1, len(a), max_points).astype(int) - 1, len(a) - 1])]
    return [round(float(v), 6) for v in a]

