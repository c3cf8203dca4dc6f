"""95 % intervals against published values, closed forms worked by hand and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnbench.eval import intervals as iv
from unlearnbench.eval.report import Report, difference_interval, value_interval


def test_wilson_hand_computed_and_scipy():
    # 12 of 12 robust points (the old demo): p = 1, z² = 3.8415 -> lower = n / (n + z²) = 12 / 15.8415
    lo, hi = iv.wilson(1.0, 12)
    assert lo == pytest.approx(12 / (12 + iv.Z95 ** 2)) and hi == 1.0
    # 8 of 12: centre (p + z²/2n) / (1 + z²/n), half-width z/(1 + z²/n) sqrt(p(1-p)/n + z²/4n²)
    p, n, z2 = 8 / 12, 12, iv.Z95 ** 2
    centre = (p + z2 / 24) / (1 + z2 / 12)
    half = iv.Z95 / (1 + z2 / 12) * math.sqrt(p * (1 - p) / 12 + z2 / 576)
    assert iv.wilson(p, n) == pytest.approx((centre - half, centre + half))
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in ((0, 46), (3, 46), (440, 450), (1, 1), (873, 1000)):
        ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert iv.wilson(k / n, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert iv.wilson(0.5, 0) is None and iv.wilson(float("nan"), 10) is None


def test_newcombe_published_example():
    # Newcombe (1998), Stat. Med. 17:873, Table II example (a): 56/70 vs 48/80, method 10
    # gives 0.0524 to 0.3339.
    lo, hi = iv.newcombe(56 / 70, 70, 48 / 80, 80)
    assert lo == pytest.approx(0.0524, abs=5e-5) and hi == pytest.approx(0.3339, abs=5e-5)
    assert iv.excludes_zero((lo, hi)) is True
    # Example (b) 9/10 vs 3/10: 0.1705 to 0.8090.
    assert iv.newcombe(0.9, 10, 0.3, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    assert iv.excludes_zero(iv.newcombe(0.5, 20, 0.45, 20)) is False


def test_t_interval_and_welch_against_scipy():
    st = pytest.importorskip("scipy.stats")
    xs = [97.25, 97.0, 97.5]
    lo, hi = iv.t_interval(xs)
    ref = st.t.interval(0.95, 2, loc=np.mean(xs), scale=st.sem(xs))
    assert (lo, hi) == pytest.approx(ref)
    assert iv.t_interval([1.0]) is None
    a, b = [96.125, 95.5, 96.0], [97.25, 97.0, 97.5, 96.75]
    res = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert iv.welch(a, b) == pytest.approx((res.low, res.high))


def test_auc_interval_hanley_mcneil():
    # Hanley & McNeil (1982) worked formula: A = 0.8, 50 positives, 50 negatives:
    # Q1 = 0.8/1.2, Q2 = 1.28/1.8; SE² = (0.16 + 49 (Q1 - 0.64) + 49 (Q2 - 0.64)) / 2500
    q1, q2 = 0.8 / 1.2, 1.28 / 1.8
    se = math.sqrt((0.16 + 49 * (q1 - 0.64) + 49 * (q2 - 0.64)) / 2500)
    assert float(iv.hanley_mcneil_variance(0.8, 50, 50)) == pytest.approx(se**2)
    # Equal counts: Newcombe's symmetrised variance is Hanley-McNeil's.
    assert float(iv.auc_variance(0.8, 50, 50)) == pytest.approx(se**2)
    # The interval inverts that variance score-style: both bounds L satisfy (0.8 - L)² = z² V(L),
    # so the interval leans towards 0.5 compared with the Wald 0.8 ± z SE.
    lo, hi = iv.auc_interval(0.8, 50, 50)
    for bound in (lo, hi):
        assert (0.8 - bound) ** 2 == pytest.approx(iv.Z95**2 * iv.auc_variance(bound, 50, 50), rel=1e-9)
    assert lo < 0.8 - iv.Z95 * se and hi < 0.8 + iv.Z95 * se and 0.8 - lo > hi - 0.8  # shifted towards 0.5
    # A perfect AUC on 5 + 5 points is not certainty: the Wald interval was the point [1, 1].
    lo, hi = iv.auc_interval(1.0, 5, 5)
    assert hi == 1.0 and 0.5 < lo < 0.8


def test_report_intervals_counts_and_gap_noise():
    r = Report(
        values={"forget_acc": 0.0, "ua": 100.0, "test_acc": 90.0, "mia/loss/forget_test/auc": 0.6,
                "mia/loss/forget_test/tpr_at_fpr_0.01": 0.05, "avg_gap": 3.0},
        reference_values={"forget_acc": 0.0, "ua": 100.0, "test_acc": 96.0},
        counts={"n/forget_acc": 40, "n/ua": 40, "n/test_acc": 360, "mia/loss/forget_test/n_members": 40,
                "mia/loss/forget_test/n_nonmembers": 320},
    )
    assert r.n("test_acc") == 360 and r.n("mia/loss/forget_test/tpr_at_fpr_0.01") == 40 and r.n("avg_gap") is None
    lo, hi = r.interval("test_acc")
    w = iv.wilson(0.9, 360)
    assert (lo, hi) == pytest.approx((100 * w[0], 100 * w[1]))
    assert r.interval("mia/loss/forget_test/tpr_at_fpr_0.01") == pytest.approx(iv.wilson(0.05, 40))
    assert r.interval("mia/loss/forget_test/auc") == pytest.approx(iv.auc_interval(0.6, 40, 320))
    assert r.interval("avg_gap") is None
    # TA 90 vs 96 on 360 points each: Newcombe excludes 0; UA 100 vs 100 on 40: it does not.
    gap = r.gap_interval("test_acc")
    assert gap == pytest.approx(tuple(100 * v for v in iv.newcombe(0.9, 360, 0.96, 360)))
    assert r.beyond_noise("test_acc") is True and r.beyond_noise("ua") is False
    assert r.beyond_noise("avg_gap") is None
    # JSON round trip keeps the counts; a report from before counts existed reads back without them.
    back = Report.from_json(r.to_json())
    assert back.counts == r.counts and back.interval("test_acc") == pytest.approx((lo, hi))
    old = r.to_dict()
    for k in ("counts", "undefined", "reference_counts", "intervals"):
        old.pop(k)
    legacy = Report.from_dict(old)
    assert legacy.counts == {} and legacy.interval("test_acc") is None and legacy["test_acc"] == 90.0
    assert value_interval("test_acc", 90.0, {}) is None
    assert difference_interval("test_acc", 90.0, None, r.counts, {}) is None


def test_fmt_interval_defaults_to_two_decimals():
    # the docstring's promise (the report tables pass their own digits; other callers rely on the default)
    assert iv.fmt_interval((97.254, 98.987)) == "[97.25, 98.99]"
    assert iv.fmt_interval((0.5, 1.0), 0) == "[0, 1]"
    assert iv.fmt_interval(None) == ""
