"""Paired gaps (issue 23, item 3): a model and its reference are scored on the same images, so the
interval of their difference is Newcombe's paired one and "beyond the noise" is McNemar's test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from eval_helpers import LookupModel, make_constructed
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from unlearnbench.eval import intervals as iv
from unlearnbench.eval.engine import Evaluator
from unlearnbench.eval.paired import Outcomes, digest, discordant, discordant_counts, table
from unlearnbench.eval.report import Report

# The issue's example: 4,500 test images, the model right on 4,338 (96.40 %), the reference on
# 4,318 (95.96 %), a 0.44-point gap; they disagree on 60 images, 40 for the model and 20 for the
# reference. Unpaired Newcombe [-0.35, 1.24] points; paired [0.10, 0.80].
BOTH, MODEL_ONLY, REF_ONLY, NEITHER = 4298, 40, 20, 142


def paired_by_hand(a: int, b: int, c: int, d: int) -> tuple[float, float]:
    """Newcombe (1998b) method 10, written from Fagerland, Lydersen & Laake (2017), ch. 8:
    Wilson limits of both margins, square-and-add with the continuity-corrected phi."""
    n = a + b + c + d
    z = stats.norm.ppf(0.975)

    def wilson(k):
        p = k / n
        centre = (2 * k + z * z) / (2 * (n + z * z))
        half = z * math.sqrt(z * z + 4 * k * (1 - p)) / (2 * (n + z * z))
        return centre - half, centre + half

    p1, p2 = (a + b) / n, (a + c) / n
    (l1, u1), (l2, u2) = wilson(a + b), wilson(a + c)
    if min(a + b, c + d, a + c, b + d) == 0:
        psi = 0.0
    else:
        prod = (a + b) * (c + d) * (a + c) * (b + d)
        num = a * d - b * c
        psi = (num - n / 2) / math.sqrt(prod) if num > n / 2 else (0.0 if num >= 0 else num / math.sqrt(prod))
    est = p1 - p2
    lo = est - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2))
    hi = est + math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1))
    return lo, hi


def test_the_issues_example_paired_and_unpaired():
    n = BOTH + MODEL_ONLY + REF_ONLY + NEITHER
    assert n == 4500
    p1, p2 = (BOTH + MODEL_ONLY) / n, (BOTH + REF_ONLY) / n
    assert round(100 * (p1 - p2), 2) == 0.44
    unpaired = iv.newcombe(p1, n, p2, n)
    assert [round(100 * v, 2) for v in unpaired] == [-0.35, 1.24]
    paired = iv.newcombe_paired(BOTH, MODEL_ONLY, REF_ONLY, NEITHER)
    assert [round(100 * v, 2) for v in paired] == [0.10, 0.80]
    assert paired == pytest.approx(paired_by_hand(BOTH, MODEL_ONLY, REF_ONLY, NEITHER), abs=1e-12)
    # McNemar: statsmodels' exact test, and the binomial tail by hand (20 of 60 discordant at 1/2).
    p = iv.mcnemar_p(MODEL_ONLY, REF_ONLY)
    assert p == pytest.approx(mcnemar([[BOTH, MODEL_ONLY], [REF_ONLY, NEITHER]], exact=True).pvalue, rel=1e-12)
    assert p == pytest.approx(min(1.0, 2 * sum(math.comb(60, k) for k in range(21)) / 2**60), rel=1e-12)
    assert p < 0.05


TABLES = [(1, 1, 7, 12), (59, 6, 16, 80), (0, 0, 0, 5), (5, 0, 0, 0), (0, 3, 0, 0), (0, 0, 4, 0), (10, 0, 0, 10),
          (2, 9, 1, 0), (1000, 1, 0, 3), (3, 2, 2, 3), (0, 5, 5, 0), (200, 0, 3, 1),
          # ad - bc = -1 and 0: the edges of the continuity correction's "0.0 if ad - bc >= 0" branch
          (0, 1, 1, 5), (1, 1, 1, 1)]


@pytest.mark.parametrize("tab", TABLES)
def test_newcombe_paired_by_hand_and_mcnemar(tab):
    got = iv.newcombe_paired(*tab)
    lo, hi = paired_by_hand(*tab)
    d = (tab[1] - tab[2]) / sum(tab)
    assert got == pytest.approx((max(-1, min(lo, d)), min(1, max(hi, d))), abs=1e-12)
    b, c = tab[1], tab[2]
    want = 1.0 if b + c == 0 else mcnemar([[tab[0], b], [c, tab[3]]], exact=True).pvalue
    assert iv.mcnemar_p(b, c) == pytest.approx(want, rel=1e-12)


def test_newcombe_paired_rejects_negative_and_empty():
    assert iv.newcombe_paired(0, 0, 0, 0) is None
    with pytest.raises(ValueError, match="non-negative"):
        iv.newcombe_paired(1, -1, 0, 0)


@given(st.integers(0, 300), st.integers(0, 60), st.integers(0, 60), st.integers(0, 300))
def test_paired_interval_properties(a, b, c, d):
    if a + b + c + d == 0:
        return
    n = a + b + c + d
    lo, hi = iv.newcombe_paired(a, b, c, d)
    est = (b - c) / n
    assert -1 <= lo <= est <= hi <= 1
    # Swapping the two models mirrors the interval.
    lo2, hi2 = iv.newcombe_paired(a, c, b, d)
    assert (lo2, hi2) == pytest.approx((-hi, -lo), abs=1e-12)
    # No discordant points: no evidence of a difference, the interval contains 0 and p = 1.
    if b == c == 0:
        assert lo <= 0 <= hi and iv.mcnemar_p(b, c) == 1.0
    # McNemar's p is symmetric in the discordant counts.
    assert iv.mcnemar_p(b, c) == pytest.approx(iv.mcnemar_p(c, b))


def test_paired_is_narrower_than_unpaired_when_outcomes_agree():
    n = 4500
    for a, b, c in ((4298, 40, 20), (3000, 100, 80), (2250, 30, 30)):
        d = n - a - b - c
        p1, p2 = (a + b) / n, (a + c) / n
        u = iv.newcombe(p1, n, p2, n)
        p = iv.newcombe_paired(a, b, c, d)
        assert p[1] - p[0] < u[1] - u[0]


# -------------------------------------------------------------------------- outcomes


def test_outcomes_round_trip_digest_and_discordant_counts_against_pandas():
    rng = np.random.default_rng(0)
    idx = rng.permutation(1000)[:333]
    m, r = rng.random(333) < 0.9, rng.random(333) < 0.85
    om, orf = Outcomes.of(torch.as_tensor(m), torch.as_tensor(idx)), Outcomes.of(r, idx)
    back = Outcomes.from_json(om.to_json())
    assert back.digest == om.digest and np.array_equal(back.hits, m)
    tab = pd.crosstab(pd.Series(m, name="m"), pd.Series(r, name="r"))
    assert discordant(om, orf) == (int(tab.loc[True, False]), int(tab.loc[False, True]))
    # Other images, or the same in another order, are not paired.
    assert discordant(om, Outcomes.of(r, idx[::-1])) is None
    assert discordant(om, None) is None
    assert digest(idx) != digest(np.r_[idx[:-1], 1000])
    counts = discordant_counts({"test_acc": om, "retain_acc": om}, {"test_acc": orf})
    assert counts == {"n/test_acc/model_only": int(tab.loc[True, False]),
                      "n/test_acc/reference_only": int(tab.loc[False, True])}
    assert om.invert().hits.sum() == (~m).sum()
    with pytest.raises(ValueError):
        Outcomes.of([True, False], [1])


def test_table_from_value_and_counts():
    counts = {"n/test_acc": 4500, "n/test_acc/model_only": 40, "n/test_acc/reference_only": 20}
    assert table("test_acc", 100 * 4338 / 4500, 100.0, counts) == (BOTH, MODEL_ONLY, REF_ONLY, NEITHER)
    assert table("test_acc", 100 * 4338.5 / 4500, 100.0, counts) is None  # not a count of 4,500
    assert table("test_acc", 100 * 10 / 4500, 100.0, counts) is None  # fewer hits than model-only points
    assert table("test_acc", 96.0, 100.0, {"n/test_acc": 4500}) is None


# -------------------------------------------------------------------------- the engine and the report


def _issue_models():
    """Model and reference on 4,500 test images with the issue's 2x2 table (two classes)."""
    y = torch.zeros(4500, dtype=torch.long)
    model_ok = np.r_[np.ones(BOTH + MODEL_ONLY), np.zeros(REF_ONLY + NEITHER)].astype(bool)
    ref_ok = np.r_[np.ones(BOTH), np.zeros(MODEL_ONLY), np.ones(REF_ONLY), np.zeros(NEITHER)].astype(bool)
    perm = np.random.default_rng(1).permutation(4500)  # disagreements spread over the set
    model_ok, ref_ok = model_ok[perm], ref_ok[perm]

    def logits(ok):
        lg = torch.zeros(len(ok), 2)
        lg[torch.as_tensor(ok), 0] = 1.0
        lg[~torch.as_tensor(ok), 1] = 1.0
        return lg

    small = (logits(np.array([True, False, True])), torch.zeros(3, dtype=torch.long))
    model, data = make_constructed(small, small, (logits(model_ok), y))
    ref_table = model.table.clone()
    ref_table[0:3] = logits(np.array([True, True, True]))  # the reference gets the forget image 1 right
    ref_table[6:6 + 4500] = logits(ref_ok)
    ref_table[6 + 4500:] = logits(ref_ok)  # val = test here
    return model, LookupModel(ref_table).eval(), data


def test_engine_pairs_gaps_with_a_reference_model_or_its_report():
    model, ref_model, data = _issue_models()
    ev = Evaluator(metrics=["test_acc", "forget_acc", "ua"])
    r = ev.evaluate(model, data, reference=ref_model)
    assert r.counts["n/test_acc/model_only"] == MODEL_ONLY and r.counts["n/test_acc/reference_only"] == REF_ONLY
    assert [round(v, 2) for v in r.gap_interval("test_acc")] == [0.10, 0.80]
    assert r.gap_paired("test_acc") and r.beyond_noise("test_acc") is True
    assert r.gap_p("test_acc") == pytest.approx(iv.mcnemar_p(MODEL_ONLY, REF_ONLY))
    # UA pairs on the forget images, counting mistakes: the model's one mistake (image 1) is an
    # image the reference gets right, so for UA it is "model only", for forget accuracy "reference only".
    assert (r.counts["n/ua/model_only"], r.counts["n/ua/reference_only"]) == (1, 0)
    assert (r.counts["n/forget_acc/model_only"], r.counts["n/forget_acc/reference_only"]) == (0, 1)
    assert r.gap_paired("ua") and r.beyond_noise("ua") is False
    # The reference as a report (e.g. a study's retrain, or --reference retrain.json): the same.
    ref_report = Report.from_json(Evaluator(metrics=["test_acc", "forget_acc", "ua"]).evaluate(ref_model, data).to_json())
    r2 = Evaluator(metrics=["test_acc", "forget_acc", "ua"]).evaluate(model, data, reference=ref_report)
    assert r2.gap_interval("test_acc") == pytest.approx(r.gap_interval("test_acc"))
    # Values only (or a report from before outcomes existed): the unpaired interval, no mark.
    r3 = Evaluator(metrics=["test_acc"]).evaluate(model, data, reference={"test_acc": ref_report["test_acc"]})
    assert [round(v, 2) for v in r3.gap_interval("test_acc")] == [-0.35, 1.24]
    assert not r3.gap_paired("test_acc") and r3.beyond_noise("test_acc") is False
    # The JSON says which gaps are paired, and an old report without outcomes still reads back.
    d = r.to_dict()
    assert d["gap_intervals"]["test_acc"]["paired"] is True
    assert d["gap_intervals"]["test_acc"]["mcnemar_p"] == pytest.approx(r.gap_p("test_acc"))
    back = Report.from_dict(d)
    assert back.gap_interval("test_acc") == pytest.approx(r.gap_interval("test_acc"))
    d.pop("outcomes")
    assert Report.from_dict(d).outcomes == {}


def test_beyond_noise_needs_both_the_test_and_the_interval():
    # 5 of 20 images right for the model only, none for the reference alone: the paired interval
    # excludes 0 (lower bound 0.038) but McNemar's exact p = 2/32 = 0.0625: no mark.
    r = Report(values={"test_acc": 25.0}, reference_values={"test_acc": 0.0},
               counts={"n/test_acc": 20, "n/test_acc/model_only": 5, "n/test_acc/reference_only": 0})
    lo, hi = r.gap_interval("test_acc")
    assert lo / 100 == pytest.approx(iv.newcombe_paired(0, 5, 0, 15)[0]) and lo > 0
    assert r.gap_p("test_acc") == pytest.approx(2 / 32)
    assert r.beyond_noise("test_acc") is False
    # 6 vs 0 of 10,000: p = 2/64 and the interval excludes 0 by a hair: marked.
    r = Report(values={"test_acc": 100 * 9006 / 10000}, reference_values={"test_acc": 100 * 9000 / 10000},
               counts={"n/test_acc": 10000, "n/test_acc/model_only": 6, "n/test_acc/reference_only": 0})
    assert r.gap_p("test_acc") == pytest.approx(2 / 64) and r.gap_interval("test_acc")[0] > 0
    assert r.beyond_noise("test_acc") is True
    # A table that disagrees with the reference value is not used (unpaired instead).
    r.reference_values["test_acc"] = 89.0
    assert not r.gap_paired("test_acc")
    assert r.gap_interval("test_acc") == pytest.approx(
        tuple(100 * v for v in iv.newcombe(0.9006, 10000, 0.89, 10000)))


def test_mia_efficacy_gap_is_paired_on_the_forget_images():
    from eval_helpers import binary_logits

    from unlearnbench.eval.metrics.mia_svc import svc_verdicts

    rng = np.random.default_rng(7)
    retain, test = binary_logits(rng.uniform(0.9, 1.0, 60)), binary_logits(rng.uniform(0.3, 1.0, 40))
    forget_m, forget_r = binary_logits(rng.uniform(0.5, 1.0, 30)), binary_logits(rng.uniform(0.5, 1.0, 30))
    model, data = make_constructed(forget_m, retain, test)
    ref_table = model.table.clone()
    ref_table[:30] = forget_r[0]
    reference = LookupModel(ref_table).eval()
    r = Evaluator(metrics=["mia_efficacy"]).evaluate(model, data, reference=reference)

    def verdicts(forget_logits):
        conf = lambda lg: torch.softmax(lg, 1)[:, 0].numpy()  # noqa: E731 (label 0 everywhere)
        return svc_verdicts(conf(retain[0])[:40], conf(test[0]), conf(forget_logits))

    vm, vr = verdicts(forget_m[0]), verdicts(forget_r[0])
    assert r["mia_efficacy"] == pytest.approx(100 * vm.mean()) and r.reference_values["mia_efficacy"] == pytest.approx(
        100 * vr.mean())
    assert (r.counts["n/mia_efficacy/model_only"], r.counts["n/mia_efficacy/reference_only"]) == (
        int((vm & ~vr).sum()), int((vr & ~vm).sum()))
    assert (vm != vr).any() and r.gap_paired("mia_efficacy")
