"""Every published statistic against an independent implementation (issue 19, item 1).

statsmodels for proportions and their intervals, a brute-force threshold enumeration for ROC
statistics, the Hanley-McNeil formula written out by hand, scipy.stats for LiRA's Gaussians and
the t quantiles, a per-point loop for robust accuracy and a few lines of pandas for the gaps.
Each reference here is written without calling the function under test.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from unlearnbench.eval import intervals as iv
from unlearnbench.eval.lira import fit_gaussians
from unlearnbench.eval.metrics.gap import average_gap, gap_values
from unlearnbench.eval.roc import attack_stats
from unlearnbench.eval.shadow import lira_holdout, ulira_targets
from unlearnbench.study.expected import STD_FLOOR, compare

# -------------------------------------------------------------------------- proportions

COUNTS = [(0, 1), (1, 1), (0, 46), (3, 46), (46, 46), (440, 450), (1, 4500), (4499, 4500), (873, 1000),
          (5, 7), (12, 12), (50_000, 100_000), (3, 10_000_000)]


@pytest.mark.parametrize("k,n", COUNTS)
def test_wilson_against_statsmodels(k, n):
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert iv.wilson(k / n, n) == pytest.approx((lo, hi), abs=1e-12)


PAIRS = [((56, 70), (48, 80)), ((9, 10), (3, 10)), ((0, 46), (0, 40)), ((46, 46), (0, 40)), ((1, 3), (2, 1000)),
         ((4338, 4500), (4318, 4500)), ((0, 1), (1, 1)), ((990, 1000), (10, 12)), ((7, 50), (7, 50))]


@pytest.mark.parametrize("a,b", PAIRS)
def test_newcombe_against_statsmodels(a, b):
    (k1, n1), (k2, n2) = a, b
    lo, hi = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=0.05)
    assert iv.newcombe(k1 / n1, n1, k2 / n2, n2) == pytest.approx((lo, hi), abs=1e-12)


# -------------------------------------------------------------------------- t intervals, Welch


@pytest.mark.parametrize("xs", [[97.25, 97.0, 97.5], [1.0, 2.0], [5.0, 5.0, 5.0, 5.1], list(range(30)),
                                [1e-9, 3e-9, -2e-9], [94.26, 94.3, 94.21, 94.28, 94.25]])
def test_t_interval_against_scipy(xs):
    ref = stats.t.interval(0.95, len(xs) - 1, loc=np.mean(xs), scale=stats.sem(xs))
    assert iv.t_interval(xs) == pytest.approx(ref, rel=1e-12, abs=1e-12)
    assert iv.t_quantile(len(xs) - 1) == pytest.approx(stats.t.ppf(0.975, len(xs) - 1), rel=1e-14)


@pytest.mark.parametrize("a,b", [([1.0, 2.0], [3.0, 5.0, 4.0]), ([96.1, 95.5, 96.0, 95.9], [97.2, 97.0]),
                                 ([0.0, 0.1, 0.05], [10.0, 30.0, 20.0, 25.0, 15.0])])
def test_welch_against_scipy_both_orders(a, b):
    for x, y in ((a, b), (b, a)):
        res = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
        assert iv.welch(x, y) == pytest.approx((res.low, res.high), rel=1e-12)
    assert iv.welch_from_stats(1.0, 0.0, 3, 1.0, 0.0, 5) == (0.0, 0.0)
    # Tiny but non-zero spreads (found by Hypothesis): the df's squares underflowed to 0 / 0 near
    # 1e-100 and the variances themselves to 0 near 1e-170 (a zero-width interval). Welch's
    # interval scales with the data.
    lo, hi = iv.welch([1.0, 3.0, 2.0], [0.0, 1.0])
    for tiny in (1e-100, 1e-170, 1e-300):
        got = iv.welch([tiny, 3 * tiny, 2 * tiny], [0.0, tiny])
        assert got == pytest.approx((lo * tiny, hi * tiny), rel=1e-9)
        assert iv.t_interval([tiny, 3 * tiny]) == pytest.approx(tuple(v * tiny for v in iv.t_interval([1.0, 3.0])),
                                                                rel=1e-9)
    assert iv.welch([1.0], b) is None and iv.welch(a, [1.0]) is None


# -------------------------------------------------------------------------- Hanley-McNeil


def _score_bounds_by_quartic(auc: float, m: int, n: int) -> tuple[float, float]:
    """The roots of (AUC - A)² (2 - A)(1 + A) m n = z² [variance numerator at A] (2 - A)(1 + A),
    a quartic in A, written out with numpy polynomials: the smallest root in [0, AUC] and the
    largest in [AUC, 1] are the score interval's bounds."""
    P = np.polynomial.Polynomial
    A = P([0, 1])
    z2 = stats.norm.ppf(0.975) ** 2
    two_minus, one_plus = 2 - A, 1 + A
    k = (m + n) / 2 - 1  # Newcombe's N* - 1 in place of both m - 1 and n - 1
    # V(A) (2 - A)(1 + A) m n = A(1-A)(2-A)(1+A) + k(A(1+A) - A²(2-A)(1+A)) + k(2A²(2-A) - A²(2-A)(1+A))
    num = (A * (1 - A) * two_minus * one_plus + k * (A * one_plus - A**2 * two_minus * one_plus)
           + k * (2 * A**2 * two_minus - A**2 * two_minus * one_plus))
    poly = (auc - A) ** 2 * two_minus * one_plus * m * n - z2 * num
    roots = [r.real for r in poly.roots() if abs(r.imag) < 1e-9]
    lows = [r for r in roots if -1e-12 <= r <= auc + 1e-12]
    highs = [r for r in roots if auc - 1e-12 <= r <= 1 + 1e-12]
    return (min(lows) if lows else 0.0), (max(highs) if highs else 1.0)


@pytest.mark.parametrize("auc,n_pos,n_neg", [(0.8, 50, 50), (0.8, 10, 400), (0.8, 400, 10), (0.55, 1, 2),
                                             (0.97, 3, 1000), (0.3, 45, 4500), (0.0, 5, 9), (1.0, 9, 5),
                                             (0.999, 20, 20), (0.5, 46, 4500)])
def test_auc_interval_hanley_mcneil_by_hand(auc, n_pos, n_neg):
    # Hanley & McNeil (1982), eq. 2: Q1 = P(two positives both outrank a negative) goes with the
    # positives' count, Q2 = P(a positive outranks two negatives) with the negatives'.
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    assert float(iv.hanley_mcneil_variance(auc, n_pos, n_neg)) == pytest.approx(var, abs=1e-15)
    # Newcombe's version: the same with (N* - 1), N* = (n_pos + n_neg) / 2, for both counts.
    k = (n_pos + n_neg) / 2 - 1
    var_n = (auc * (1 - auc) + k * (q1 - auc**2) + k * (q2 - auc**2)) / (n_pos * n_neg)
    assert float(iv.auc_variance(auc, n_pos, n_neg)) == pytest.approx(var_n, abs=1e-15)
    lo, hi = _score_bounds_by_quartic(auc, n_pos, n_neg)
    assert iv.auc_interval(auc, n_pos, n_neg) == pytest.approx((max(0.0, lo), min(1.0, hi)), abs=1e-9)


def test_auc_interval_unequal_counts():
    # Hanley-McNeil's variance is lopsided in the counts; Newcombe's is not (it depends on them
    # through n_pos n_neg and (n_pos + n_neg) / 2 only), and differs from it when they differ.
    assert float(iv.hanley_mcneil_variance(0.8, 10, 400)) != pytest.approx(
        float(iv.hanley_mcneil_variance(0.8, 400, 10)), rel=0.05)
    assert float(iv.auc_variance(0.8, 10, 400)) == pytest.approx(float(iv.auc_variance(0.8, 400, 10)), rel=1e-12)
    assert float(iv.auc_variance(0.8, 10, 400)) != pytest.approx(float(iv.hanley_mcneil_variance(0.8, 10, 400)),
                                                                 rel=0.05)
    assert iv.auc_interval(0.8, 10, 400) == pytest.approx(iv.auc_interval(0.8, 400, 10), abs=1e-12)


# -------------------------------------------------------------------------- ROC by brute force


def brute_roc(m: np.ndarray, n: np.ndarray) -> tuple[float, list[tuple[float, float]]]:
    """AUC as P(member > non) + P(tie)/2 over all pairs, and (fpr, tpr) of every rule score >= t."""
    gt = (m[:, None] > n[None, :]).sum()
    eq = (m[:, None] == n[None, :]).sum()
    auc = (gt + 0.5 * eq) / (len(m) * len(n))
    points = [(0.0, 0.0)]
    for t in sorted(set(np.r_[m, n].tolist()), reverse=True):
        points.append((float((n >= t).mean()), float((m >= t).mean())))
    return float(auc), points


def brute_tpr_at(points, a: float) -> float:
    return max(t for f, t in points if f <= a + 1e-12)


SCORE_CASES = [
    ([3, 2, 2, 1], [2, 2, 0]),                      # ties across the two sets
    ([1.0] * 5, [1.0] * 7),                          # constant scores
    ([0.5, 0.7, 0.9], [0.1, 0.2]),                   # perfect separation
    ([0.1, 0.2], [0.5, 0.7, 0.9]),                   # perfectly inverted
    ([5.0, 5.0, 4.0, 1.0, 1.0], [5.0, 2.0, 1.0] * 40),  # 120 non-members, ties at the top
    ([1e300, -1e300, 0.0], [1e-300, -1e-300]),       # extreme but finite
]


@pytest.mark.parametrize("m,n", SCORE_CASES)
def test_attack_stats_against_brute_force(m, n):
    m, n = np.asarray(m, float), np.asarray(n, float)
    auc, points = brute_roc(m, n)
    fprs = (0.01, 0.001, 0.1, 0.5, 1 / len(n))
    s = attack_stats(m, n, fprs=fprs)
    assert s.auc == pytest.approx(auc, abs=1e-12)
    assert s.n_members == len(m) and s.n_nonmembers == len(n)
    for a in fprs:
        if a >= 1 / len(n) - 1e-12:
            assert s.tpr_at_fpr[a] == pytest.approx(brute_tpr_at(points, a), abs=1e-12), a
        else:
            assert math.isnan(s.tpr_at_fpr[a]) and f"tpr_at_fpr_{a:g}" in s.undefined()


def test_tpr_at_low_fpr_with_ties_at_the_cut():
    # 100 non-members: one scores 9 (FPR 0.01 at threshold 9), two members tie with it at 9 and
    # one member is above (the last ties with the 99 others at 0). The rule "score >= 9" has FPR 0.01 and TPR 3/4; "score >= 10" has FPR 0
    # and TPR 1/4. TPR at 1 % FPR is therefore 3/4, not the 1/4 of the point before the tie.
    n = np.r_[9.0, np.zeros(99)]
    m = np.array([10.0, 9.0, 9.0, 0.0])
    s = attack_stats(m, n, fprs=(0.01,))
    assert s.tpr_at_fpr[0.01] == 0.75
    # Two non-members tied at 9: "score >= 9" has FPR 0.02, so at 1 % only the strict point counts.
    n2 = np.r_[9.0, 9.0, np.zeros(98)]
    assert attack_stats(m, n2, fprs=(0.01,)).tpr_at_fpr[0.01] == 0.25


# -------------------------------------------------------------------------- LiRA against scipy


def _reference_fit(phi_in, in_mask, phi_out, out_mask, variance):
    """Per example: median location, np.std scale, or the pooled within-example sd per side."""
    def side(phi, mask):
        mus, sds, resid, dof = [], [], [], 0
        for j in range(phi.shape[1]):
            obs = phi[mask[:, j], j]
            mus.append(np.median(obs) if len(obs) else np.nan)
            sds.append(np.std(obs) if len(obs) else np.nan)
            if len(obs):
                resid.append(((obs - obs.mean()) ** 2).sum())
                dof += len(obs) - 1
        return np.array(mus), np.array(sds), math.sqrt(sum(resid) / max(1, dof))
    mi, si, pi = side(phi_in, in_mask)
    mo, so, po = side(phi_out, out_mask)
    if variance == "global":
        si, so = np.full_like(mi, pi), np.full_like(mo, po)
    return mi, si + 1e-30, mo, so + 1e-30  # the reference's floor on every scale


@pytest.mark.parametrize("variance", ["per_example", "global"])
def test_lira_fit_and_scores_against_scipy(variance):
    rng = np.random.default_rng(3)
    models, examples = 12, 9
    # IN and OUT with different spreads and per-example locations, so a swapped or shared scale,
    # or a mean in place of the median, changes the scores.
    loc_in, loc_out = rng.normal(2, 1, examples), rng.normal(-1, 1, examples)
    phi = np.where(rng.random((models, examples)) < 0.5, 0.0, 0.0)
    mask = np.zeros((models, examples), bool)
    for j in range(examples):
        mask[rng.permutation(models)[: models // 2], j] = True
    phi = np.where(mask, loc_in + rng.standard_t(3, (models, examples)) * 0.3,
                   loc_out + rng.standard_t(3, (models, examples)) * 2.0)
    fit = fit_gaussians(phi, mask, variance=variance)
    mi, si, mo, so = _reference_fit(phi, mask, phi, ~mask, variance)
    np.testing.assert_allclose(fit.mu_in, mi, rtol=1e-12)
    np.testing.assert_allclose(fit.mu_out, mo, rtol=1e-12)
    np.testing.assert_allclose(fit.sd_in, si, rtol=1e-12)
    np.testing.assert_allclose(fit.sd_out, so, rtol=1e-12)
    assert not np.allclose(fit.sd_in, fit.sd_out, rtol=0.5)  # the data really has unequal spreads
    target = rng.normal(0.5, 2, examples)
    want_on = stats.norm(mi, si).logpdf(target) - stats.norm(mo, so).logpdf(target)
    np.testing.assert_allclose(fit.online(target), want_on, rtol=1e-10)
    np.testing.assert_allclose(fit.offline(target), stats.norm(mo, so).logcdf(target), rtol=1e-10)
    sub = fit.subset(np.array([4, 1]))
    np.testing.assert_allclose(sub.online(target[[4, 1]]), want_on[[4, 1]], rtol=1e-10)


def test_lira_global_sd_at_one_degree_of_freedom_is_the_sample_sd():
    # One example seen IN by two shadows: the pooled within-example sd has one degree of freedom,
    # so it is the ddof=1 sample sd of the two, sqrt(2) for 1 and 3 (not the ddof=0 value 1).
    phi = np.array([[1.0], [3.0], [0.0], [4.0], [8.0]])
    mask = np.array([[True], [True], [False], [False], [False]])
    fit = fit_gaussians(phi, mask, variance="global")
    assert fit.sd_in[0] == pytest.approx(stats.tstd([1.0, 3.0]), rel=1e-12) == pytest.approx(math.sqrt(2))
    assert fit.sd_out[0] == pytest.approx(stats.tstd([0.0, 4.0, 8.0]), rel=1e-12)


@pytest.mark.parametrize("variance", ["pooled", "robust", "Global"])
def test_lira_fit_rejects_an_unknown_variance_mode(variance):
    phi, mask = np.zeros((4, 2)), np.array([[True, False], [False, True]] * 2)
    with pytest.raises(ValueError, match="unknown variance mode"):
        fit_gaussians(phi, mask, variance=variance)


def test_ulira_fit_two_sources_against_scipy():
    # U-LiRA: IN from the unlearned models' signals, OUT from the retrained models', each under
    # its own mask (here the same forget masks, as in ulira_targets).
    rng = np.random.default_rng(4)
    models, examples = 10, 7
    mask = rng.random((models, examples)) < 0.5
    mask[0], mask[1] = True, True  # every example has at least two observations a side
    u = rng.normal(1.0, 0.5, (models, examples)) + np.arange(examples)
    r = rng.normal(-1.0, 3.0, (models, examples)) - np.arange(examples)
    for variance in ("per_example", "global"):
        fit = fit_gaussians(u, mask, r, mask, variance=variance)
        mi, si, mo, so = _reference_fit(u, mask, r, mask, variance)
        np.testing.assert_allclose(np.c_[fit.mu_in, fit.sd_in, fit.mu_out, fit.sd_out], np.c_[mi, si, mo, so],
                                   rtol=1e-12)


def _lira_pool(seed=0, n=8, examples=30):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, examples), bool)
    for j in range(examples):
        masks[rng.permutation(n)[: n // 2], j] = True
    phi = np.where(masks, 1.0, -1.0) * rng.uniform(0.2, 2.0, examples) + rng.normal(0, 1, (n, examples))
    return SimpleNamespace(kind="lira", n=n, phi=phi, masks=masks)


def test_lira_holdout_fits_only_on_the_other_shadows():
    pool = _lira_pool()
    out = lira_holdout(pool, targets=2, variance="global")
    members, nonmembers = [], []
    for k in range(2):
        others = np.arange(pool.n) != k
        mi, si, mo, so = _reference_fit(pool.phi[others], pool.masks[others], pool.phi[others], ~pool.masks[others],
                                        "global")
        s = stats.norm(mi, si).logpdf(pool.phi[k]) - stats.norm(mo, so).logpdf(pool.phi[k])
        members.append(s[pool.masks[k]])
        nonmembers.append(s[~pool.masks[k]])
    want = attack_stats(np.concatenate(members), np.concatenate(nonmembers))
    assert out["lira_online"].auc == pytest.approx(want.auc, abs=1e-12)
    # Changing the target's own signals must not move the fit: only its scores move.
    other = _lira_pool()
    other.phi = other.phi.copy()
    other.phi[0] += 100.0  # shadow 0 is a target; its huge signal would dominate any fit that saw it
    again = lira_holdout(other, targets=1, variance="global")
    mi, si, mo, so = _reference_fit(other.phi[1:], other.masks[1:], other.phi[1:], ~other.masks[1:], "global")
    s = stats.norm(mi, si).logpdf(other.phi[0]) - stats.norm(mo, so).logpdf(other.phi[0])
    assert again["lira_online"].auc == pytest.approx(
        attack_stats(s[other.masks[0]], s[~other.masks[0]]).auc, abs=1e-12)


def test_ulira_targets_against_scipy_and_never_fit_on_targets():
    rng = np.random.default_rng(5)
    n, targets, cands = 8, 4, 12
    masks = rng.random((n, cands)) < 0.5
    masks[0], masks[1], masks[n - 1] = True, True, True
    u = rng.normal(0.5, 0.7, (n, cands)) + np.linspace(-1, 1, cands)
    r = rng.normal(-0.5, 1.4, (n, cands)) + np.linspace(-1, 1, cands)
    pool = SimpleNamespace(kind="ulira", n=n, forget_masks=masks, phi_unlearned=u, phi_retrained=r,
                           manifest={"targets": targets})
    res = ulira_targets(pool, variance="per_example")
    sh = slice(0, n - targets)
    mi, si, mo, so = _reference_fit(u[sh], masks[sh], r[sh], masks[sh], "per_example")
    ok = ~np.isnan(mi) & ~np.isnan(mo)
    accs, aucs = [], []
    from sklearn.metrics import roc_auc_score

    for k in range(n - targets, n):
        f = masks[k] & ok
        if not f.any():
            continue
        win, wout = stats.norm(mi[f], si[f]), stats.norm(mo[f], so[f])
        su = win.logpdf(u[k, f]) - wout.logpdf(u[k, f])
        sr = win.logpdf(r[k, f]) - wout.logpdf(r[k, f])
        accs.append(((su > 0).sum() + (sr <= 0).sum()) / (2 * f.sum()))
        aucs.append(roc_auc_score(np.r_[np.ones(f.sum()), np.zeros(f.sum())], np.r_[su, sr]))
    np.testing.assert_allclose(res.acc, accs, rtol=1e-12)
    np.testing.assert_allclose(res.auc, aucs, rtol=1e-12)
    # A target pair's signals never enter the fit: scaling them leaves every other pair's AUC as is.
    u2, r2 = u.copy(), r.copy()
    u2[n - 1] *= 50
    r2[n - 1] -= 30
    pool2 = SimpleNamespace(**{**vars(pool), "phi_unlearned": u2, "phi_retrained": r2})
    res2 = ulira_targets(pool2, variance="per_example")
    np.testing.assert_allclose(res2.auc[:-1], res.auc[:-1], rtol=1e-12)
    values = res.values()
    lo, hi = stats.t.interval(0.95, len(aucs) - 1, loc=np.mean(aucs), scale=stats.sem(aucs))
    assert (values["auc"], values["auc_lo"], values["auc_hi"]) == pytest.approx((np.mean(aucs), lo, hi))


# -------------------------------------------------------------------------- gaps with pandas


def test_gap_and_average_gap_against_pandas():
    values = {"ua": 7.63, "retain_acc": 99.62, "test_acc": 93.93, "test_retained_acc": 95.0, "mia_efficacy": 14.39,
              "forget_acc": 92.37, "extra": 1.0}
    ref = {"ua": 5.24, "retain_acc": 100.0, "test_acc": 94.26, "test_retained_acc": 94.0, "mia_efficacy": 12.88,
           "forget_acc": 94.76}
    frame = pd.DataFrame({"value": pd.Series(values), "reference": pd.Series(ref)}).dropna()
    want = (frame["value"] - frame["reference"]).abs()
    got = gap_values(values, ref, list(values))
    assert got == pytest.approx({f"gap/{k}": v for k, v in want.items()})
    assert "gap/extra" not in got  # the reference lacks it
    # SalUn Table 1 (10 %): (2.39 + 0.38 + 0.33 + 1.51) / 4 = 1.15
    assert average_gap(values, ref) == pytest.approx(want[["ua", "retain_acc", "test_acc", "mia_efficacy"]].mean())
    assert average_gap(values, ref) == pytest.approx(1.1525)
    assert average_gap(values, ref, classwise=True) == pytest.approx(
        want[["ua", "retain_acc", "test_retained_acc", "mia_efficacy"]].mean())
    with pytest.raises(KeyError, match="mia_efficacy"):
        average_gap({k: v for k, v in values.items() if k != "mia_efficacy"}, ref)


# -------------------------------------------------------------------------- paper comparison


def _block(std):
    return {"forget": "random:0.1", "citation": "x", "methods": {"retrain": {"name": "Retrain",
                                                                           "ua": {"mean": 5.0, "std": std}}}}


@pytest.mark.parametrize("std,measured", [(0.69, [5.0, 6.0, 7.5]), (0.0, [5.0, 5.004, 5.012]), (0.004, [5.01]),
                                          (0.006, [5.0, 5.01, 5.02]), (None, [4.0, 4.5])])
def test_paper_comparison_std_floor_and_verdict(std, measured):
    mean = float(np.mean(measured))
    rows = [{"forget": "random:0.1", "label": "retrain", "seeds": list(range(len(measured))),
             "values": {"ua": {"mean": mean, "std": None, "n": len(measured)}}}]
    cell = compare(_block(std), rows)["rows"][0]["cells"][0]
    assert cell["diff"] == pytest.approx(mean - 5.0)
    if std is None:
        assert cell["z"] is None and cell["verdict"] == "no std in paper"
        return
    z = (mean - 5.0) / max(std, 0.005)  # a printed ±0.00 is a std below half the last digit
    assert cell["z"] == pytest.approx(z)
    assert cell["verdict"] == ("within 2 std" if abs(z) <= 2 else "outside")
    assert STD_FLOOR == 0.005


def test_paper_comparison_boundary_is_inclusive():
    rows = [{"forget": "random:0.1", "label": "retrain", "seeds": [0],
             "values": {"ua": {"mean": 6.0, "std": None, "n": 1}}}]
    assert compare(_block(0.5), rows)["rows"][0]["cells"][0]["verdict"] == "within 2 std"
    rows[0]["values"]["ua"]["mean"] = 6.0000001
    assert compare(_block(0.5), rows)["rows"][0]["cells"][0]["verdict"] == "outside"


# -------------------------------------------------------------------------- robust accuracy


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.bn = nn.BatchNorm2d(1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.bn(x).flatten(1))


def test_robust_accuracy_against_a_per_point_loop():
    from unlearnbench.core.data import TensorSet
    from unlearnbench.robust.evaluate import robust_accuracy
    from unlearnbench.robust.threat import ThreatModel

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    data = TensorSet(x, y, torch.arange(100, 140))
    model = _Tiny()
    with torch.no_grad():  # non-trivial running statistics, so train mode would normalise differently
        model.bn.running_mean.fill_(120.0 / 255)
        model.bn.running_var.fill_(0.05)
    model.train()  # handed over in train mode: the evaluation must use eval mode and give it back
    eps = 0.05
    with pytest.warns(Warning, match="train mode"):
        res = robust_accuracy(model, data, "fgsm", ThreatModel(norm="Linf", eps=eps), seed=0)
    assert model.training and float(model.bn.running_mean[0]) == pytest.approx(120.0 / 255)
    model.eval()
    clean_ok, robust_ok = [], []
    for i in range(len(y)):
        xi = (x[i : i + 1].float() / 255).requires_grad_(True)
        out = model(xi)
        loss = nn.functional.cross_entropy(out, y[i : i + 1])
        (grad,) = torch.autograd.grad(loss, xi)
        adv = (xi + eps * grad.sign()).clamp(0, 1).detach()
        c = bool(out.argmax(1) == y[i])
        clean_ok.append(c)
        robust_ok.append(c and bool(model(adv).argmax(1) == y[i]))
    assert res.n == 40
    assert res.clean_acc == pytest.approx(100 * np.mean(clean_ok))
    assert res.robust_acc == pytest.approx(100 * np.mean(robust_ok))
    assert res.robust.tolist() == robust_ok
    assert 0 < res.robust_acc < res.clean_acc  # the case distinguishes clean from robust
    # A seeded subset: the same verdicts at the chosen positions, and a different seed picks others.
    sub = robust_accuracy(model, data, "fgsm", ThreatModel(norm="Linf", eps=eps), n=15, seed=3)
    assert sub.n == 15 and sub.robust.tolist() == [robust_ok[p] for p in sub.positions.tolist()]
    assert sub.idx.tolist() == [100 + p for p in sub.positions.tolist()]
    other = robust_accuracy(model, data, "fgsm", ThreatModel(norm="Linf", eps=eps), n=15, seed=4)
    assert other.positions.tolist() != sub.positions.tolist()
