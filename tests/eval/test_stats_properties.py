"""Properties of the statistics over generated inputs, and coverage by simulation (issue 19, item 2).

Generated counts run from 0 to n, tiny to very large, unequal between groups; scores tie, are
constant, have unequal spreads and extreme but finite values. Coverage: a 95 % interval must
contain the true value in at least 93 % of 2,000 simulated draws (vectorised with numpy; the
wider grids are ``deep``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

from unlearnbench.eval import intervals as iv
from unlearnbench.eval.lira import fit_gaussians
from unlearnbench.eval.report import Report
from unlearnbench.eval.roc import attack_stats

ns = st.integers(1, 10**9)
small_ns = st.integers(1, 60)


@st.composite
def count_and_n(draw, n_strategy=st.one_of(small_ns, ns)):
    n = draw(n_strategy)
    k = draw(st.one_of(st.just(0), st.just(n), st.integers(0, n)))
    return k, n


# -------------------------------------------------------------------------- Wilson


@given(count_and_n())
def test_wilson_contains_estimate_stays_in_range_and_mirrors(kn):
    k, n = kn
    p = k / n
    lo, hi = iv.wilson(p, n)
    assert 0.0 <= lo <= p <= hi <= 1.0
    assert (lo == 0.0) == (k == 0) or lo < 1e-12  # only p = 0 reaches 0 (up to rounding at huge n)
    assert (hi == 1.0) == (k == n) or 1 - hi < 1e-12
    assert hi > lo  # never empty, even at p = 0 or 1
    mlo, mhi = iv.wilson(1 - p, n)
    assert (mlo, mhi) == pytest.approx((1 - hi, 1 - lo), abs=1e-12)


@given(count_and_n(small_ns), st.integers(2, 50))
def test_wilson_narrows_as_n_grows(kn, factor):
    k, n = kn
    lo, hi = iv.wilson(k / n, n)
    lo2, hi2 = iv.wilson(k / n, n * factor)
    assert hi2 - lo2 < hi - lo


# -------------------------------------------------------------------------- Newcombe (unpaired)


@given(count_and_n(), count_and_n())
def test_newcombe_contains_difference_range_and_swap(a, b):
    (k1, n1), (k2, n2) = a, b
    p1, p2 = k1 / n1, k2 / n2
    lo, hi = iv.newcombe(p1, n1, p2, n2)
    assert -1.0 <= lo <= p1 - p2 <= hi <= 1.0
    lo2, hi2 = iv.newcombe(p2, n2, p1, n1)
    assert (lo2, hi2) == pytest.approx((-hi, -lo), abs=1e-12)
    if k1 * n2 == k2 * n1:  # equal proportions: never "beyond the noise"
        assert iv.excludes_zero((lo, hi)) is False


# -------------------------------------------------------------------------- Hanley-McNeil


@st.composite
def auc_and_counts(draw):
    # An empirical AUC is a multiple of 1 / (2 n_pos n_neg) (ties count one half).
    n_pos, n_neg = draw(st.integers(1, 10**5)), draw(st.integers(1, 10**5))
    k = draw(st.one_of(st.just(0), st.just(2 * n_pos * n_neg), st.integers(0, 2 * n_pos * n_neg)))
    return k / (2 * n_pos * n_neg), n_pos, n_neg


@given(auc_and_counts())
def test_auc_interval_contains_range_mirror_and_narrows(case):
    auc, n_pos, n_neg = case
    lo, hi = iv.auc_interval(auc, n_pos, n_neg)
    assert hi > lo  # never a single point, even at AUC 0 or 1
    assert 0.0 <= lo <= auc <= hi <= 1.0
    # Swapping members and non-members maps AUC to 1 - AUC and mirrors the interval exactly
    # (Q1 and Q2 trade places with the counts).
    mlo, mhi = iv.auc_interval(1 - auc, n_neg, n_pos)
    assert (mlo, mhi) == pytest.approx((1 - hi, 1 - lo), abs=1e-9)
    lo4, hi4 = iv.auc_interval(auc, 4 * n_pos, 4 * n_neg)
    assert hi4 - lo4 < hi - lo


# -------------------------------------------------------------------------- t, Welch


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=2, max_size=12), finite, st.floats(0.01, 100))
def test_t_interval_contains_mean_and_is_equivariant(xs, shift, scale):
    lo, hi = iv.t_interval(xs)
    mean = float(np.mean(xs))
    assert lo <= mean + 1e-9 * (1 + abs(mean)) and mean - 1e-9 * (1 + abs(mean)) <= hi
    assert (hi - mean) == pytest.approx(mean - lo, rel=1e-6, abs=1e-6)
    lo2, hi2 = iv.t_interval([scale * x + shift for x in xs])
    assert lo2 == pytest.approx(scale * lo + shift, rel=1e-6, abs=1e-3)
    assert hi2 == pytest.approx(scale * hi + shift, rel=1e-6, abs=1e-3)
    if len(set(xs)) == 1:
        assert hi - lo == pytest.approx(0.0, abs=1e-9)


@given(st.lists(finite, min_size=2, max_size=8), st.lists(finite, min_size=2, max_size=8))
def test_welch_swap_negates(a, b):
    lo, hi = iv.welch(a, b)
    lo2, hi2 = iv.welch(b, a)
    assert (lo2, hi2) == pytest.approx((-hi, -lo), rel=1e-9, abs=1e-6)
    d = float(np.mean(a) - np.mean(b))
    assert lo - 1e-6 * (1 + abs(d)) <= d <= hi + 1e-6 * (1 + abs(d))


# -------------------------------------------------------------------------- beyond the noise


@given(count_and_n(st.integers(1, 5000)), count_and_n(st.integers(1, 5000)))
def test_beyond_noise_is_never_set_when_the_interval_touches_zero(a, b):
    (k1, n1), (k2, n2) = a, b
    r = Report(values={"test_acc": 100 * k1 / n1}, reference_values={"test_acc": 100 * k2 / n2},
               counts={"n/test_acc": n1}, reference_counts={"n/test_acc": n2})
    lo, hi = r.gap_interval("test_acc")
    assert lo <= 100 * (k1 / n1 - k2 / n2) + 1e-9 and 100 * (k1 / n1 - k2 / n2) - 1e-9 <= hi
    assert r.beyond_noise("test_acc") is (lo > 0 or hi < 0)


@given(st.integers(0, 3000), st.integers(0, 40), st.integers(0, 40), st.integers(0, 300))
def test_paired_beyond_noise_never_beside_an_interval_touching_zero(a, b, c, d):
    n = a + b + c + d
    assume(n > 0)
    r = Report(values={"test_acc": 100 * (a + b) / n}, reference_values={"test_acc": 100 * (a + c) / n},
               counts={"n/test_acc": n, "n/test_acc/model_only": b, "n/test_acc/reference_only": c})
    lo, hi = r.gap_interval("test_acc")
    assert r.gap_paired("test_acc")
    if lo <= 0 <= hi:
        assert r.beyond_noise("test_acc") is False
    if r.beyond_noise("test_acc"):
        assert iv.mcnemar_p(b, c) < 0.05


# -------------------------------------------------------------------------- ROC


scores = st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-1e300, 1e300, allow_nan=False)),
                  min_size=1, max_size=40)


@given(scores, scores)
def test_attack_stats_swap_ties_and_ranges(m, n):
    m, n = np.asarray(m), np.asarray(n)
    s = attack_stats(m, n, fprs=(0.01, 0.1, 0.5))
    swapped = attack_stats(n, m, fprs=(0.01,))
    assert s.auc + swapped.auc == pytest.approx(1.0, abs=1e-12)
    assert 0 <= s.auc <= 1
    defined = [s.tpr_at_fpr[a] for a in (0.01, 0.1, 0.5) if not math.isnan(s.tpr_at_fpr[a])]
    assert all(0 <= t <= 1 for t in defined) and defined == sorted(defined)  # non-decreasing in the FPR
    # Only the order of the scores matters: ranks give the same statistics.
    ranks = stats.rankdata(np.r_[m, n])
    r = attack_stats(ranks[: len(m)], ranks[len(m):], fprs=(0.01, 0.1, 0.5))
    assert r.auc == pytest.approx(s.auc, abs=1e-12)
    assert [r.tpr_at_fpr[a] for a in (0.1, 0.5)] == pytest.approx([s.tpr_at_fpr[a] for a in (0.1, 0.5)],
                                                                  nan_ok=True)


@given(st.integers(1, 50), st.integers(1, 300), st.floats(-1e9, 1e9))
def test_constant_scores_are_chance(n_m, n_n, value):
    s = attack_stats(np.full(n_m, value), np.full(n_n, value), fprs=(0.5,))
    assert s.auc == 0.5
    if n_n >= 2:
        assert s.tpr_at_fpr[0.5] == 0.0  # the only points are (0, 0) and (1, 1)


# -------------------------------------------------------------------------- LiRA fits


@given(st.integers(0, 2**31 - 1), st.floats(-1e3, 1e3), st.sampled_from(["per_example", "global"]))
def test_lira_fit_is_shift_equivariant_and_swapping_sides_negates(seed, shift, variance):
    rng = np.random.default_rng(seed)
    models, examples = 8, 5
    mask = np.zeros((models, examples), bool)
    for j in range(examples):
        mask[rng.permutation(models)[:4], j] = True
    phi = rng.normal(0, 1, (models, examples)) * np.where(mask, 0.5, 3.0) + np.where(mask, 1.0, -1.0)
    fit = fit_gaussians(phi, mask, variance=variance)
    moved = fit_gaussians(phi + shift, mask, variance=variance)
    np.testing.assert_allclose(moved.mu_in, fit.mu_in + shift, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(moved.sd_out, fit.sd_out, rtol=1e-6, atol=1e-9)
    target = rng.normal(0, 2, examples)
    np.testing.assert_allclose(moved.online(target + shift), fit.online(target), rtol=1e-6, atol=1e-6)
    swapped = fit_gaussians(phi, ~mask, variance=variance)
    np.testing.assert_allclose(swapped.online(target), -fit.online(target), rtol=1e-9, atol=1e-9)
    assert (fit.sd_in > 0).all() and (fit.sd_out > 0).all()


# -------------------------------------------------------------------------- coverage by simulation

DRAWS = 2000


def _coverage_wilson(p: float, n: int, rng) -> float:
    k = rng.binomial(n, p, DRAWS)
    ok = [lo <= p <= hi for lo, hi in (iv.wilson(x / n, n) for x in k)]
    return float(np.mean(ok))


def _coverage_newcombe(p1, n1, p2, n2, rng) -> float:
    k1, k2 = rng.binomial(n1, p1, DRAWS), rng.binomial(n2, p2, DRAWS)
    d = p1 - p2
    return float(np.mean([lo <= d <= hi for lo, hi in (iv.newcombe(a / n1, n1, b / n2, n2) for a, b in zip(k1, k2, strict=True))]))


def _coverage_paired(cells, n, rng) -> float:
    tables = rng.multinomial(n, cells, DRAWS)
    d = cells[1] - cells[2]
    return float(np.mean([lo <= d <= hi for lo, hi in (iv.newcombe_paired(*map(int, t)) for t in tables)]))


def _coverage_auc(sep: float, n_pos: int, n_neg: int, rng) -> float:
    # Binormal scores: members N(sep, 1), non-members N(0, 1); true AUC = Phi(sep / sqrt 2).
    true = stats.norm.cdf(sep / math.sqrt(2))
    m = rng.normal(sep, 1, (DRAWS, n_pos))
    x = rng.normal(0, 1, (DRAWS, n_neg))
    ranks = stats.rankdata(np.c_[m, x], axis=1)[:, :n_pos].sum(1)
    auc = (ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)  # Mann-Whitney U / (n_pos n_neg)
    return float(np.mean([lo <= true <= hi for lo, hi in (iv.auc_interval(a, n_pos, n_neg) for a in auc)]))


def test_coverage_ci():
    rng = np.random.default_rng(2026)
    for p, n in ((0.9, 45), (0.5, 100), (0.96, 4500), (0.05, 180)):
        assert _coverage_wilson(p, n, rng) >= 0.93, (p, n)
    for p1, n1, p2, n2 in ((0.96, 4500, 0.955, 4500), (0.8, 60, 0.7, 300)):
        assert _coverage_newcombe(p1, n1, p2, n2, rng) >= 0.93
    # Paired: both right / model only / reference only / both wrong on the same images.
    assert _coverage_paired([0.955, 0.009, 0.005, 0.031], 4500, rng) >= 0.93
    assert _coverage_paired([0.6, 0.1, 0.05, 0.25], 80, rng) >= 0.93
    assert _coverage_auc(1.0, 30, 300, rng) >= 0.93
    assert _coverage_auc(0.0, 45, 450, rng) >= 0.93
    # AUC 0.98 on 20 + 20 points: the Wald form of Hanley-McNeil covered 83 % here; AUC 0.92 on
    # 300 members and 30 non-members: Hanley-McNeil's own (unsymmetrised) variance covered 82 %.
    assert _coverage_auc(3.0, 20, 20, rng) >= 0.93
    assert _coverage_auc(2.0, 300, 30, rng) >= 0.93


@pytest.mark.deep
@pytest.mark.parametrize("p", [0.02, 0.1, 0.3, 0.5, 0.8, 0.95, 0.99])
@pytest.mark.parametrize("n", [30, 100, 450, 4500])
def test_coverage_deep_wilson_and_newcombe(p, n):
    rng = np.random.default_rng(int(1000 * p) + n)
    if n * min(p, 1 - p) >= 3:  # Wilson dips below 93 % only with a handful of expected events
        assert _coverage_wilson(p, n, rng) >= 0.93
    q = min(0.99, p + 0.03)
    if n * min(p, 1 - p, q, 1 - q) >= 3:
        assert _coverage_newcombe(p, n, q, 2 * n, rng) >= 0.93


@pytest.mark.deep
@pytest.mark.parametrize("cells", [[0.955, 0.009, 0.005, 0.031], [0.5, 0.1, 0.1, 0.3], [0.85, 0.05, 0.02, 0.08],
                                   [0.3, 0.02, 0.02, 0.66]])
@pytest.mark.parametrize("n", [100, 1000, 4500])
def test_coverage_deep_paired(cells, n):
    assert _coverage_paired(cells, n, np.random.default_rng(n)) >= 0.93


@pytest.mark.deep
@pytest.mark.parametrize("sep", [0.0, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("n_pos,n_neg", [(10, 10), (30, 30), (30, 300), (300, 30), (100, 1000), (1000, 100)])
def test_coverage_deep_auc(sep, n_pos, n_neg):
    # Equal spreads; see auc_interval's docstring for unequal spreads and counts together.
    assert _coverage_auc(sep, n_pos, n_neg, np.random.default_rng(n_pos + n_neg)) >= 0.93
