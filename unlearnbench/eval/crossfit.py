"""Cross-fitted balanced accuracy of a threshold attack.

The "best balanced accuracy over all thresholds", max (1 + TPR - FPR) / 2, chooses its threshold
on the very points it scores, so it is at least 0.5 by construction and above 0.5 on pure noise
(about 0.53-0.55 for a few hundred points): "0.5 means indistinguishable" is then false.

Here the threshold is *chosen on one half and scored on the other*: members and non-members are
each split at random (seeded) into halves A and B; the threshold that maximises balanced accuracy
on A is applied to B and vice versa, and the two held-out balanced accuracies are averaged. On
scores that carry no signal its expectation is exactly 0.5 (it can fall below 0.5 on a draw); on
a real signal it estimates the balanced accuracy an attacker reaches on fresh points.
"""

from __future__ import annotations

import numpy as np


def best_threshold(member: np.ndarray, nonmember: np.ndarray) -> float:
    """The threshold ``t`` (rule: score > t means member) maximising TPR - FPR on these points.

    Candidates lie midway between consecutive distinct scores (plus +inf: nobody is a member,
    balanced accuracy 0.5). Ties go to the highest threshold.
    """
    m = np.sort(np.asarray(member, dtype=np.float64))
    n = np.sort(np.asarray(nonmember, dtype=np.float64))
    values = np.unique(np.r_[m, n])[::-1]  # descending distinct scores
    # Threshold just below values[i]: members with score >= values[i].
    tpr = (len(m) - np.searchsorted(m, values, side="left")) / len(m)
    fpr = (len(n) - np.searchsorted(n, values, side="left")) / len(n)
    gain = tpr - fpr
    i = int(np.argmax(gain))
    if gain[i] <= 0:
        return float("inf")
    below = values[i + 1] if i + 1 < len(values) else values[i] - 1.0
    return float((values[i] + below) / 2)


def balanced_accuracy_at(member: np.ndarray, nonmember: np.ndarray, threshold: float) -> float:
    """(TPR + TNR) / 2 of the rule "score > threshold means member"."""
    tpr = float(np.mean(np.asarray(member) > threshold))
    fpr = float(np.mean(np.asarray(nonmember) > threshold))
    return (1.0 + tpr - fpr) / 2


def cross_fit_halves(m_a: np.ndarray, n_a: np.ndarray, m_b: np.ndarray, n_b: np.ndarray) -> float:
    """Mean of: threshold from A scored on B, threshold from B scored on A."""
    return (balanced_accuracy_at(m_b, n_b, best_threshold(m_a, n_a))
            + balanced_accuracy_at(m_a, n_a, best_threshold(m_b, n_b))) / 2


def split_halves(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random partition of ``range(k)`` into two halves (sizes floor/ceil of k/2)."""
    perm = rng.permutation(k)
    return perm[: k // 2], perm[k // 2:]


def cross_fitted_balanced_accuracy(member: np.ndarray, nonmember: np.ndarray, seed: int = 0) -> float:
    """Balanced accuracy with the threshold chosen on held-out halves (see the module doc).

    NaN with fewer than 2 members or 2 non-members (a half would be empty).
    """
    # Sorted first: the halves are a seeded partition of the *multiset* of scores, so the value
    # does not depend on the order the points arrive in (a shuffled forget or test set gives the
    # same number, as every other metric does); the partition is still uniformly random.
    m = np.sort(np.asarray(member, dtype=np.float64).ravel())
    n = np.sort(np.asarray(nonmember, dtype=np.float64).ravel())
    if len(m) < 2 or len(n) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    ma, mb = split_halves(len(m), rng)
    na, nb = split_halves(len(n), rng)
    return cross_fit_halves(m[ma], n[na], m[mb], n[nb])
