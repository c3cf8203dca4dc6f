"""DeLong's AUC variance from the scores and the interval built on it (issue 19 follow-up).

The variance is checked against a brute-force O(n m) implementation of DeLong, DeLong &
Clarke-Pearson (1988) written here from the definition (every member-non-member pair, ties one
half), the AUC against scikit-learn; coverage by simulation where members and non-members differ
in spread (2:1) *and* number (10:1), which the counts-only interval cannot see."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from unlearnbench.eval import intervals as iv
from unlearnbench.eval.metrics.base import MetricOutput, record_attack
from unlearnbench.eval.report import Report, value_interval
from unlearnbench.eval.roc import attack_stats


def brute_delong(m, n):
    """AUC and DeLong's variance from the pairwise kernel: O(len(m) len(n)), no ranks."""
    m, n = np.asarray(m, float), np.asarray(n, float)
    psi = (m[:, None] > n[None, :]) + 0.5 * (m[:, None] == n[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)  # per member: share outranked; per non-member: share outranking
    auc = psi.mean()
    s10 = sum((v - auc) ** 2 for v in v10) / (len(m) - 1) if len(m) > 1 else math.nan
    s01 = sum((v - auc) ** 2 for v in v01) / (len(n) - 1) if len(n) > 1 else math.nan
    return auc, s10 / len(m) + s01 / len(n)


# Few distinct values so that ties (within and across groups) and constant groups are common;
# extreme but finite floats as well.
scores = st.one_of(st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=40),
                   st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=1, max_size=40))


def test_delong_hand_example():
    # members 1, 2, 3 vs non-members 0, 2: V10 = (1/2, 3/4, 1), V01 = (1, 1/2), AUC 3/4;
    # var = var(V10) / 3 + var(V01) / 2 = 0.0625 / 3 + 0.125 / 2.
    auc, var = iv.delong([1.0, 2.0, 3.0], [0.0, 2.0])
    assert auc == pytest.approx(0.75, abs=1e-15)
    assert var == pytest.approx(0.0625 / 3 + 0.125 / 2, rel=1e-14)


@given(scores, scores)
def test_delong_against_brute_force_and_sklearn(m, n):
    auc, var = iv.delong(m, n)
    bauc, bvar = brute_delong(m, n)
    assert auc == pytest.approx(bauc, abs=1e-12)
    if len(set(m + n)) > 1:
        assert auc == pytest.approx(roc_auc_score(np.r_[np.ones(len(m)), np.zeros(len(n))], m + n), abs=1e-12)
    if math.isnan(bvar):
        assert math.isnan(var) and (len(m) == 1 or len(n) == 1)
    else:
        assert var == pytest.approx(bvar, rel=1e-9, abs=1e-15)
        assert var >= 0
    # swapping members and non-members mirrors the AUC and keeps the variance
    mauc, mvar = iv.delong(n, m)
    assert mauc == pytest.approx(1 - auc, abs=1e-12)
    assert (math.isnan(mvar) and math.isnan(var)) or mvar == pytest.approx(var, rel=1e-9, abs=1e-15)


def test_delong_batched_equals_row_by_row_and_constant_scores():
    rng = np.random.default_rng(0)
    m, n = rng.integers(0, 4, (5, 12)).astype(float), rng.integers(0, 4, (5, 7)).astype(float)
    auc, var = iv.delong(m, n)
    for i in range(5):
        assert (auc[i], var[i]) == pytest.approx(brute_delong(m[i], n[i]), rel=1e-12)
    assert iv.delong(np.full(6, 2.0), np.full(9, 2.0)) == (0.5, 0.0)  # all tied: degenerate, not NaN
    assert iv.delong([3.0, 4.0], [1.0, 2.0, 0.0]) == (1.0, 0.0)  # separated
    assert all(math.isnan(v) for v in iv.delong([], [1.0]))


def test_interval_by_hand_and_fallbacks():
    auc, var = 0.75, 0.0625 / 3 + 0.125 / 2
    half = iv.Z95 * math.sqrt(var) / (0.75 * 0.25)
    expit = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    lo, hi = iv.auc_interval_delong(auc, var, 3, 2)
    assert (lo, hi) == pytest.approx((expit(math.log(3) - half), expit(math.log(3) + half)), rel=1e-12)
    # degenerate DeLong variance (0, NaN, None) or AUC 0 / 1: the counts-only score interval
    assert iv.auc_interval_delong(1.0, 0.0, 5, 5) == iv.auc_interval(1.0, 5, 5)
    assert iv.auc_interval_delong(0.5, 0.0, 6, 9) == iv.auc_interval(0.5, 6, 9)
    assert iv.auc_interval_delong(0.6, math.nan, 1, 30) == iv.auc_interval(0.6, 1, 30)
    assert iv.auc_interval_delong(0.6, None, 10, 30) == iv.auc_interval(0.6, 10, 30)
    assert iv.auc_interval_delong(0.6, 0.01, 0, 30) is None
    assert iv.auc_interval_delong(math.nan, 0.01, 10, 30) is None


@given(scores, scores)
def test_interval_contains_estimate_stays_in_range_and_mirrors(m, n):
    auc, var = iv.delong(m, n)
    lo, hi = iv.auc_interval_delong(auc, var, len(m), len(n))
    assert 0.0 <= lo <= auc <= hi <= 1.0
    mauc, mvar = iv.delong(n, m)
    mlo, mhi = iv.auc_interval_delong(mauc, mvar, len(n), len(m))
    assert (mlo, mhi) == pytest.approx((1 - hi, 1 - lo), abs=1e-9)


def test_attacks_record_delong_and_the_report_uses_it():
    rng = np.random.default_rng(1)
    m, n = rng.normal(1, 2, 40), rng.normal(0, 1, 400)
    stats_ = attack_stats(m, n)
    auc, var = brute_delong(m, n)
    assert stats_.auc == pytest.approx(auc) and stats_.variances() == {"auc": pytest.approx(var, rel=1e-9)}
    out = record_attack(MetricOutput(), "mia/loss/forget_test", stats_)
    assert out.variances == {"mia/loss/forget_test/auc": pytest.approx(var, rel=1e-9)}
    r = Report(values=dict(out.values), counts=dict(out.counts), variances=dict(out.variances),
               reference_values={"mia/loss/forget_test/auc": 0.5}, reference_variances={"mia/loss/forget_test/auc": 0.002})
    key = "mia/loss/forget_test/auc"
    want = iv.auc_interval_delong(auc, var, 40, 400)
    assert r.interval(key) == pytest.approx(want) and r.interval(key) != pytest.approx(iv.auc_interval(auc, 40, 400))
    ref = iv.auc_interval_delong(0.5, 0.002, 40, 400)
    assert r.reference_interval(key) == pytest.approx(ref)
    assert r.gap_interval(key) == pytest.approx(iv.mover(auc, want, 0.5, ref))
    back = Report.from_json(r.to_json())
    assert back.variances == r.variances and back.interval(key) == pytest.approx(want)
    # a report written before variances existed falls back to the counts-only interval
    old = r.to_dict()
    old.pop("variances"), old.pop("reference_variances")
    assert Report.from_dict(old).interval(key) == pytest.approx(iv.auc_interval(auc, 40, 400))
    assert value_interval(key, auc, r.counts) == pytest.approx(iv.auc_interval(auc, 40, 400))


# -------------------------------------------------------------------------- coverage

DRAWS = 2000


def _coverage(sep: float, sd_pos: float, sd_neg: float, n_pos: int, n_neg: int, rng, delong: bool = True) -> float:
    # Binormal: members N(sep, sd_pos), non-members N(0, sd_neg); true AUC = Phi(sep / hypot(sds)).
    true = stats.norm.cdf(sep / math.hypot(sd_pos, sd_neg))
    auc, var = iv.delong(rng.normal(sep, sd_pos, (DRAWS, n_pos)), rng.normal(0, sd_neg, (DRAWS, n_neg)))
    if delong:
        bounds = (iv.auc_interval_delong(a, v, n_pos, n_neg) for a, v in zip(auc, var, strict=True))
    else:
        bounds = (iv.auc_interval(a, n_pos, n_neg) for a in auc)
    return float(np.mean([lo <= true <= hi for lo, hi in bounds]))


def test_coverage_unequal_spread_and_count_ci():
    rng = np.random.default_rng(19)
    # The wider group is the smaller one: the counts-only interval covered 87-89 % here (it is
    # too narrow), DeLong's >= 93 %; and the other way round.
    assert _coverage(1.5, 1.0, 2.0, 300, 30, rng, delong=False) < 0.91
    for sep, sd_pos, sd_neg, n_pos, n_neg in ((1.5, 1.0, 2.0, 300, 30), (1.5, 2.0, 1.0, 30, 300),
                                              (0.5, 2.0, 1.0, 300, 30), (1.5, 2.0, 1.0, 300, 30)):
        assert _coverage(sep, sd_pos, sd_neg, n_pos, n_neg, rng) >= 0.93, (sep, sd_pos, sd_neg, n_pos, n_neg)


@pytest.mark.deep
@pytest.mark.parametrize("sep", [0.0, 0.5, 1.5, 2.0])
@pytest.mark.parametrize("sd_pos,sd_neg", [(2.0, 1.0), (1.0, 2.0)])
@pytest.mark.parametrize("n_pos,n_neg", [(300, 30), (30, 300), (1000, 100), (100, 1000), (200, 20), (20, 200)])
def test_coverage_deep_unequal_spread_and_count(sep, sd_pos, sd_neg, n_pos, n_neg):
    # True AUC 0.5-0.81. Beyond that, with a small *and* wider group, DeLong also under-covers:
    # 20 wide non-members vs 200 members covered 91.6 % at AUC 0.87 and ~89 % at 0.91; see
    # auc_interval_delong.
    assert _coverage(sep, sd_pos, sd_neg, n_pos, n_neg, np.random.default_rng(n_pos + n_neg)) >= 0.93
