"""Cross-fitted balanced accuracy: 0.5 on a no-signal control, high on a real signal."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnbench.eval.crossfit import (
    balanced_accuracy_at,
    best_threshold,
    cross_fit_halves,
    cross_fitted_balanced_accuracy,
    split_halves,
)
from unlearnbench.eval.roc import attack_stats


def _brute_best(m, n):
    """Independent: try every threshold between sorted scores, keep the best in-sample TPR - FPR."""
    cands = np.r_[np.inf, np.sort(np.r_[m, n]) - 1e-9]
    return max(np.mean(m > t) - np.mean(n > t) for t in cands)


def test_threshold_and_halves_by_hand():
    # A: members 3, 4; non-members 1, 3.5 -> best rule "> 2": TPR 1, FPR 0.5 (gain 0.5), ties
    # with "> 3.75" (TPR 0.5, FPR 0): the highest threshold wins -> midway between 4 and 3.5
    m_a, n_a = np.array([3.0, 4.0]), np.array([1.0, 3.5])
    assert best_threshold(m_a, n_a) == pytest.approx(3.75)
    # B: members 2, 5; non-members 0, 4.5 -> threshold 3.75 gives TPR 0.5, FPR 0.5 -> 0.5
    m_b, n_b = np.array([2.0, 5.0]), np.array([0.0, 4.5])
    assert balanced_accuracy_at(m_b, n_b, 3.75) == 0.5
    # B's best: "> 4.75" (TPR .5, FPR 0) ties "> 1" (TPR 1, FPR .5): highest -> 4.75; on A: TPR 0, FPR 0
    assert best_threshold(m_b, n_b) == pytest.approx(4.75)
    assert cross_fit_halves(m_a, n_a, m_b, n_b) == pytest.approx((0.5 + 0.5) / 2)
    # the in-sample best never falls below 0.5; a no-gain sample gives +inf (nobody is a member)
    assert best_threshold(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == np.inf


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(30):
        m = np.round(rng.normal(0.5, 1, rng.integers(2, 30)), 1)  # rounded: ties between scores
        n = np.round(rng.normal(0, 1, rng.integers(2, 30)), 1)
        t = best_threshold(m, n)
        assert np.mean(m > t) - np.mean(n > t) == pytest.approx(max(0.0, _brute_best(m, n)))


def test_split_halves_partition():
    a, b = split_halves(11, np.random.default_rng(0))
    assert len(a) == 5 and len(b) == 6 and sorted(np.r_[a, b].tolist()) == list(range(11))


def test_no_signal_control_has_an_interval_containing_half():
    """200 seeded draws of member and non-member scores from the same distribution (200 each).
    The in-sample best balanced accuracy is biased upwards (the bug); the cross-fitted one is not."""
    rng = np.random.default_rng(0)
    crossed, in_sample = [], []
    for i in range(200):
        m, n = rng.normal(size=200), rng.normal(size=200)
        crossed.append(cross_fitted_balanced_accuracy(m, n, seed=i))
        in_sample.append((1 + _brute_best(m, n)) / 2)
    crossed, in_sample = np.array(crossed), np.array(in_sample)
    half = 1.96 * crossed.std(ddof=1) / np.sqrt(len(crossed))
    assert crossed.mean() - half <= 0.5 <= crossed.mean() + half, (crossed.mean(), half)
    assert in_sample.min() >= 0.5 and in_sample.mean() > 0.52  # what LiRA's in-sample max reports
    assert (crossed < 0.5).any()  # a held-out score can fall below chance


def test_strong_signal_still_scores_high_and_attack_stats_uses_it():
    rng = np.random.default_rng(2)
    m, n = rng.normal(3, 1, 2000), rng.normal(0, 1, 2000)
    # Bayes balanced accuracy of N(3,1) vs N(0,1): Phi(1.5) = 0.9332
    assert cross_fitted_balanced_accuracy(m, n, seed=0) == pytest.approx(0.9332, abs=0.015)
    st = attack_stats(m, n, seed=5)
    assert st.bal_acc == cross_fitted_balanced_accuracy(m, n, seed=5)
    assert np.isnan(cross_fitted_balanced_accuracy(m[:1], n, seed=0))
    assert np.isnan(cross_fitted_balanced_accuracy(m, n[:1], seed=0))
    # two of each is the smallest defined case: one per half, perfectly separated -> exactly 1
    assert cross_fitted_balanced_accuracy(np.array([3.0, 4.0]), np.array([0.0, 1.0]), seed=0) == 1.0


def test_held_out_rule_is_strictly_above_the_threshold():
    # A point exactly on the threshold is not a member: TPR 0, FPR 0 -> 0.5 (">=" would say 1.0)
    assert balanced_accuracy_at(np.array([1.0]), np.array([0.0]), 1.0) == 0.5
    # ... on both sides: a non-member on the threshold is not called a member either (FPR 0, not 1/2)
    assert balanced_accuracy_at(np.array([2.0]), np.array([1.0, 1.5]), 1.5) == 1.0
