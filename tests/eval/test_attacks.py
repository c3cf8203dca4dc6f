"""MIA-Efficacy, threshold attacks and signals against hand-computed values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from eval_helpers import binary_logits

from unlearnbench.eval import signals
from unlearnbench.eval.engine import Evaluator
from unlearnbench.eval.metrics.mia_svc import svc_attack, svc_verdicts
from unlearnbench.eval.roc import attack_stats


def test_attack_stats_hand_computed():
    st = attack_stats(np.array([0.9, 0.8, 0.4]), np.array([0.7, 0.3, 0.2, 0.1]))
    assert st.auc == pytest.approx(11 / 12)  # 11 of the 12 (member, non-member) pairs ordered right
    # Cross-fitted (seed 0 halves: members A {0.4}, B {0.9, 0.8}; non-members A {0.1, 0.2},
    # B {0.3, 0.7}). A's best threshold 0.3 on B: TPR 1, FPR 1/2 -> 0.75; B's best 0.75 on A:
    # TPR 0, FPR 0 -> 0.5; mean 0.625. (The in-sample best, threshold 0.4, would say 0.875.)
    assert st.bal_acc == pytest.approx(0.625)
    # 4 non-members resolve FPRs of 1/4 at best: TPR at 1 % and 0.1 % FPR are not measured
    assert st.counts() == {"n_members": 3, "n_nonmembers": 4}
    assert st.values().keys() == {"auc", "bal_acc"}
    assert set(st.undefined()) == {"tpr_at_fpr_0.01", "tpr_at_fpr_0.001"}
    assert "1/n_nonmembers = 1/4" in st.undefined()["tpr_at_fpr_0.01"]
    assert st.fpr[0] == 0 and st.tpr[-1] == 1


def test_tpr_at_low_fpr_is_defined_from_1_over_n_nonmembers():
    # 100 non-members 0..99 (score i/100), 10 members above all but one non-member: at FPR 1 %
    # (one false positive allowed) 9 of the 10 members are found; 0.1 % < 1/100 is undefined.
    non = np.arange(100) / 100
    mem = np.r_[np.full(9, 2.0), 0.5]
    st = attack_stats(mem, non)
    assert st.tpr_at_fpr[0.01] == pytest.approx(0.9)
    assert st.values()["tpr_at_fpr_0.01"] == pytest.approx(0.9)
    assert "tpr_at_fpr_0.001" not in st.values() and math.isnan(st.tpr_at_fpr[0.001])
    assert list(st.undefined()) == ["tpr_at_fpr_0.001"]
    # 1,000 non-members: 0.1 % is exactly one false positive, so it is defined
    big = attack_stats(mem, np.arange(1000) / 1000)
    assert big.undefined() == {} and "tpr_at_fpr_0.001" in big.values()


def test_attack_stats_ties_and_chance():
    st = attack_stats(np.zeros(5), np.zeros(700))
    assert st.auc == pytest.approx(0.5) and st.bal_acc == pytest.approx(0.5)
    assert st.tpr_at_fpr[0.01] == 0.0


def test_signals_hand_computed():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]], dtype=torch.float64)
    logits = p.log().float()
    y = torch.tensor([0, 1])
    conf = signals.confidence(logits, y)
    assert conf.tolist() == pytest.approx([0.7, 0.2], abs=1e-6)
    assert signals.loss(logits, y).tolist() == pytest.approx([-math.log(0.7), -math.log(0.2)], abs=1e-6)
    h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert signals.entropy(logits).tolist() == pytest.approx([h, h], abs=1e-6)
    # Song & Mittal: -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    m0 = -0.3 * math.log(0.7) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    m1 = -0.8 * math.log(0.2) - 0.7 * math.log(0.3) - 0.1 * math.log(0.9)
    assert signals.modified_entropy(logits, y).tolist() == pytest.approx([m0, m1], abs=1e-6)
    assert signals.scaled_logit(logits, y).tolist() == pytest.approx([math.log(0.7 / 0.3), math.log(0.2 / 0.8)], abs=1e-5)


def test_scaled_logit_stays_finite_when_confidence_saturates():
    logits = torch.tensor([[60.0, 0.0, 0.0]])
    assert signals.confidence(logits, torch.tensor([0])).item() == 1.0  # float32 softmax saturates
    phi = signals.scaled_logit(logits, torch.tensor([0])).item()
    assert phi == pytest.approx(60.0 - math.log(2), rel=1e-9)


def test_svc_attack_matches_sklearn_with_every_solver():
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    # saturated confidences, as float32 softmax produces for a well-trained model
    members = np.where(rng.random(600) < 0.6, 1.0, rng.beta(30, 1, 600).astype(np.float32))
    nonmembers = np.where(rng.random(600) < 0.3, 1.0, rng.beta(8, 2, 600).astype(np.float32))
    target = np.where(rng.random(300) < 0.5, 1.0, rng.beta(10, 2, 300).astype(np.float32))
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(np.r_[members, nonmembers][:, None], np.r_[np.ones(600), np.zeros(600)])
    expected = 1 - clf.predict(target[:, None]).mean()
    for solver in ("sklearn", "libsvm", "lowrank"):
        assert svc_attack(members, nonmembers, target, solver=solver) == pytest.approx(expected), solver
    with pytest.raises(ValueError, match="unknown SVC solver"):
        svc_attack(members, nonmembers, target, solver="smo")


def test_svc_attack_falls_back_to_libsvm_when_the_rank_is_too_high(monkeypatch):
    from unlearnbench.eval import svm1d

    rng = np.random.default_rng(1)
    members, nonmembers, target = rng.gamma(0.5, 2.0, 300), rng.gamma(2.0, 4.0, 300), rng.gamma(0.5, 2.0, 100)
    fast = svc_attack(members, nonmembers, target)
    monkeypatch.setattr(svm1d, "MAX_RANK", 5)
    assert svm1d.fit(np.r_[members, nonmembers], np.r_[np.ones(300), np.zeros(300)], C=3.0) is None
    assert svc_attack(members, nonmembers, target) == svc_attack(members, nonmembers, target, solver="libsvm")
    assert svc_attack(members, nonmembers, target) == pytest.approx(fast, abs=2 / len(target))


def test_mia_efficacy_uses_the_first_test_size_retain_samples(constructed):
    # retain: the first 4 (= |test|) samples are confident members, the last 6 look like test.
    retain = binary_logits([0.99] * 4 + [0.2] * 6)
    test = binary_logits([0.2] * 4)
    forget = binary_logits([0.99] * 3 + [0.2] * 2)
    model, data = constructed(forget, retain, test)
    report = Evaluator(metrics=["mia_efficacy", "mia_threshold"]).evaluate(model, data)
    # SVC on {0.99: member x4, 0.2: non-member x4}; the two 0.2 forget samples are non-members.
    # (Using all of retain would put six 0.2 "members" in the fit and give 0.)
    assert report["mia_efficacy"] == pytest.approx(40.0)
    for attack in ("loss", "confidence", "entropy", "m_entropy"):
        # forget vs test: 3x4 pairs ordered + 2x4 ties at half -> 16/20
        assert report[f"mia/{attack}/forget_test/auc"] == pytest.approx(0.8)
        # cross-fitted, seed 0 over the sorted scores (.2, .2, .99, .99, .99): permutation(5) =
        # [2 4 | 3 0 1], so members A {.99, .99} B {.99, .2, .2}, non-members all 0.2; both halves
        # pick threshold 0.595: on B TPR 1/3 -> 2/3, on A TPR 1 -> 1; mean 5/6
        assert report[f"mia/{attack}/forget_test/bal_acc"] == pytest.approx(5 / 6)
        # retain vs test: 4x4 ordered + 6x4 ties -> 28/40
        assert report[f"mia/{attack}/retain_test/auc"] == pytest.approx(0.7)
        # 4 non-members cannot resolve FPR 1 % or 0.1 %: undefined, with the reason, not logged
        for pair, n_mem in (("forget_test", 5), ("retain_test", 10)):
            assert report.counts[f"mia/{attack}/{pair}/n_members"] == n_mem
            assert report.counts[f"mia/{attack}/{pair}/n_nonmembers"] == 4
            for fpr in ("0.01", "0.001"):
                key = f"mia/{attack}/{pair}/tpr_at_fpr_{fpr}"
                assert key not in report.values and "1/n_nonmembers = 1/4" in report.undefined[key]
    # MIA-Efficacy: a proportion of the 5 forget samples, from an SVC on 4 members / 4 non-members
    assert report.counts["n/mia_efficacy"] == 5
    assert report.counts["mia_efficacy/n_members"] == 4 and report.counts["mia_efficacy/n_nonmembers"] == 4
    assert report.n("mia_efficacy") == 5
    assert report.directions["mia_efficacy"] == "reference"
    assert set(report.curves) == {f"mia/{a}/{p}" for a in ("loss", "confidence", "entropy", "m_entropy")
                                  for p in ("forget_test", "retain_test")} | {"mia/svc_confidence/forget_test"}
    # The SVC's ROC: its decision value separates the three 0.99 forget samples from the 0.2
    # test images (ties at 0.2 count half): AUC (3*4 + 2*4/2) / 20 = 0.8; its operating point
    # is MIA-Efficacy's: 3 of 5 forget predicted member (TPR 0.6), no test image (FPR 0).
    svc = report.curves["mia/svc_confidence/forget_test"]
    assert svc["op_tpr"] == [pytest.approx(1 - report["mia_efficacy"] / 100)] and svc["op_fpr"] == [0.0]
    assert np.trapezoid(svc["tpr"], svc["fpr"]) == pytest.approx(0.8)
    assert report.counts["mia/svc_confidence/forget_test/n_members"] == 5


def test_entropy_variants_use_their_own_feature(constructed):
    # Same true-class confidence for members and non-members, different entropies (3 classes,
    # the remaining mass spread evenly or not): the entropy features must separate them.
    def three(p_true, spread):
        rest = (1 - p_true)
        p = torch.tensor([[p_true, rest * spread, rest * (1 - spread)]], dtype=torch.float64).log()
        return p.float()

    mem = torch.cat([three(0.6, 0.5)] * 8)
    non = torch.cat([three(0.6, 0.01)] * 8)
    y = torch.zeros(8, dtype=torch.int64)
    model, data = constructed((torch.cat([mem[:2], non[:2]]), y[:4]), (mem, y), (non, y))
    r = Evaluator(metrics=["mia_efficacy", "mia_entropy", "mia_m_entropy"]).evaluate(model, data)
    assert r["mia_entropy"] == pytest.approx(50.0)  # the two non-member-like forget samples
    assert r["mia_m_entropy"] == pytest.approx(50.0)


def test_long_roc_curves_are_thinned_to_a_subset_with_both_ends():
    # 30,000 + 30,000 continuous scores: sklearn's curve has far more than the 2,000 points kept.
    from dataclasses import FrozenInstanceError

    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    m, n = rng.normal(0.5, 1, 30_000), rng.normal(0, 1, 30_000)
    full_f, full_t, _ = roc_curve(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n], drop_intermediate=True)
    assert len(full_f) > 2000
    st = attack_stats(m, n)
    assert 1000 < len(st.fpr) == len(st.tpr) <= 2001
    # every kept point is a point of the full curve, in order, from (0, 0) to (1, 1)
    full = [(round(float(f), 6), round(float(t), 6)) for f, t in zip(full_f, full_t, strict=True)]
    idx = [full.index(p) for p in zip(st.fpr, st.tpr, strict=True)]
    assert idx == sorted(idx) and idx[0] == 0 and idx[-1] == len(full) - 1
    # geometric spacing: the low-FPR start of the curve (what the log-log plot shows) is kept whole
    assert idx[:50] == list(range(50))
    with pytest.raises(FrozenInstanceError):
        st.auc = 0.5  # type: ignore[misc]


@pytest.mark.parametrize("members, nonmembers", [([0.1, 0.9], []), ([], [0.3]), ([], [])])
def test_attack_stats_without_members_or_nonmembers_is_undefined_not_an_error(members, nonmembers):
    st = attack_stats(np.array(members), np.array(nonmembers))
    assert math.isnan(st.auc) and math.isnan(st.bal_acc) and all(math.isnan(v) for v in st.tpr_at_fpr.values())
    assert st.counts() == {"n_members": len(members), "n_nonmembers": len(nonmembers)}
    assert st.variances() == {}
    assert st.fpr == [] and st.tpr == []  # no curve of NaNs for a plot or the report JSON
    if not nonmembers:
        assert set(st.undefined().values()) == {"undefined: there are no non-members"}


def test_svc_attack_lowrank_never_calls_libsvm_when_it_converges(monkeypatch):
    import sklearn.svm

    rng = np.random.default_rng(2)
    members, nonmembers, target = rng.beta(8, 2, 200), rng.beta(4, 4, 200), rng.beta(6, 3, 50)
    expected = svc_attack(members, nonmembers, target, solver="libsvm")

    def no_libsvm(*args, **kwargs):
        raise AssertionError("libsvm was called although the low-rank solver converged")

    monkeypatch.setattr(sklearn.svm, "SVC", no_libsvm)
    assert svc_attack(members, nonmembers, target) == pytest.approx(expected, abs=2 / len(target))
    # nothing to judge: no verdicts, and the share of an empty set is not a number
    assert svc_verdicts(members, nonmembers, np.zeros(0)).shape == (0,)
    assert math.isnan(svc_attack(members, nonmembers, []))


def test_mia_efficacy_without_forgotten_class_test_images_has_no_svc_curve(constructed):
    """Class-wise, the SVC's ROC scores the forget set against the forgotten classes' test images:
    without any there is no curve, but MIA-Efficacy (fitted on the retained classes) is still there."""
    from unlearnbench.core.data import parse_forget_spec

    model, data = constructed(binary_logits([0.99, 0.2]), binary_logits([0.99] * 2 + [0.2] * 2),
                              binary_logits([0.2, 0.3]))
    keep = torch.ones(len(data.test), dtype=torch.bool)
    cw = dataclasses.replace(data, spec=parse_forget_spec("class:1"), forget_classes=(1,),
                             test_retained=data.test.select(keep, "test_retained"),
                             test_forgotten=data.test.select(~keep, "test_forgotten"))
    report = Evaluator(metrics=["mia_efficacy", "mia_threshold"]).evaluate(model, cw)
    assert report["mia_efficacy"] == pytest.approx(50.0)  # SVC on {0.99, 0.99 | 0.2, 0.3}: 0.2 is a non-member
    assert report.counts["mia_efficacy/n_nonmembers"] == 2
    # the threshold attacks: no forget pair either, the retain pair (retain vs retained-class test) is there
    assert set(report.curves) == {f"mia/{a}/retain_test" for a in ("loss", "confidence", "entropy", "m_entropy")}
    assert report["mia/confidence/retain_test/auc"] == pytest.approx(0.625)  # (4 ordered + 2 ties at half) / 8


@pytest.mark.parametrize("solver", ["lowrank", "libsvm"])
def test_svc_operating_point_when_members_look_like_non_members(solver):
    """Shadow members and non-members with the same feature: the SVC's decision is exactly 0
    everywhere, and 0 is 'non-member' (sklearn predicts class 1 only for a positive decision), for
    MIA-Efficacy and for the operating point drawn on its ROC alike."""
    from unlearnbench.eval.metrics.mia_svc import svc_roc

    same = np.full(4, 0.5)
    assert svc_attack(same, same, np.array([0.5, 0.2]), solver=solver) == 1.0
    _, (op_fpr, op_tpr) = svc_roc(same, same, np.array([0.5, 0.2]), np.array([0.5, 0.9]), solver=solver)
    assert (op_fpr, op_tpr) == (0.0, 0.0)
