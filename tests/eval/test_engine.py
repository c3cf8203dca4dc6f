"""The engine: predictions once, gaps and AUS as in the papers, reports, opt-in robustness."""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import types

import numpy as np
import pytest
import torch

from unlearnbench.core.data import parse_forget_spec
from unlearnbench.core.errors import ConfigError, UnknownNameError
from unlearnbench.core.models import create_model
from unlearnbench.core.train import TrainConfig, fit
from unlearnbench.eval import intervals as iv
from unlearnbench.eval.engine import EvalConfig, Evaluator
from unlearnbench.eval.metrics import METRICS
from unlearnbench.eval.metrics.aus import adaptive_unlearning_score
from unlearnbench.eval.metrics.gap import average_gap
from unlearnbench.eval.predictions import Predictions
from unlearnbench.eval.report import Report

# SalUn Table 1, 10 % random forgetting: Retrain and SalUn rows (UA, RA, TA, MIA).
RETRAIN_10 = {"ua": 5.24, "retain_acc": 100.00, "test_acc": 94.26, "mia_efficacy": 12.88}
SALUN_10 = {"ua": 2.85, "retain_acc": 99.62, "test_acc": 93.93, "mia_efficacy": 14.39}


def test_average_gap_worked_example_salun_table1():
    gaps = [abs(SALUN_10[k] - RETRAIN_10[k]) for k in RETRAIN_10]
    assert gaps == pytest.approx([2.39, 0.38, 0.33, 1.51])
    assert average_gap(SALUN_10, RETRAIN_10) == pytest.approx((2.39 + 0.38 + 0.33 + 1.51) / 4)
    assert round(average_gap(SALUN_10, RETRAIN_10), 2) == 1.15
    # class-wise: TA is the test accuracy without the forgotten class (Sparse FT class-wise row)
    ft = {"ua": 22.53, "retain_acc": 99.87, "test_retained_acc": 94.31, "mia_efficacy": 75.00}
    rt = {"ua": 100.0, "retain_acc": 100.0, "test_retained_acc": 94.83, "mia_efficacy": 100.0}
    assert round(average_gap(ft, rt, classwise=True), 2) == 25.78


def test_aus_hand_computed():
    # random forgetting: Delta = |A_f - A_t|
    assert adaptive_unlearning_score(0.90, 0.88, 0.85, classwise=False) == pytest.approx(0.98 / 1.03)
    # class-wise: Delta = |A_f|; no accuracy loss and nothing left of the class -> 1
    assert adaptive_unlearning_score(0.90, 0.90, 0.0, classwise=True) == pytest.approx(1.0)
    assert adaptive_unlearning_score(0.90, 0.90, 0.01, classwise=True) == pytest.approx(1 / 1.01)


def test_reference_values_give_the_papers_gaps(constructed):
    from eval_helpers import binary_logits

    model, data = constructed(binary_logits([0.9, 0.2]), binary_logits([0.9] * 4), binary_logits([0.9, 0.2, 0.2]))
    ref = {"forget_acc": 100 - 5.24, "retain_acc": 100.0, "test_acc": 94.26, "mia_efficacy": 12.88, "ua": 5.24}
    r = Evaluator(metrics=["ua", "retain_acc", "test_acc", "mia_efficacy", "avg_gap"]).evaluate(model, data, reference=ref)
    expected = np.mean([abs(r["ua"] - 5.24), abs(r["retain_acc"] - 100), abs(r["test_acc"] - 94.26),
                        abs(r["mia_efficacy"] - 12.88)])
    assert r["avg_gap"] == pytest.approx(expected)
    assert r["gap/ua"] == pytest.approx(abs(r["ua"] - 5.24))
    assert r.directions["avg_gap"] == "lower" and r.directions["ua"] == "reference"


def test_retrained_reference_gap_to_itself_is_zero(digits_class3, digits_cnn_retrain_class3):
    retrain = digits_cnn_retrain_class3
    other = copy.deepcopy(retrain)  # a distinct object with identical weights
    r = Evaluator().evaluate(retrain, digits_class3, reference=other, original=retrain)
    gaps = {k: v for k, v in r.values.items() if k.startswith("gap/")}
    assert "gap/mia_efficacy" in gaps and "gap/test_retained_acc" in gaps and len(gaps) > 20
    assert all(v == 0 for v in gaps.values())
    assert r["avg_gap"] == 0
    for key in ("div/kl/forget", "div/kl/test", "div/js/forget", "div/js/test"):
        assert r[key] == pytest.approx(0, abs=1e-9)
    # retrained without class 3: it cannot recognise the class, AUS with itself as original
    assert r["test_forgotten_acc"] < 10 and r["ua"] > 90
    # as in the Sparse paper's class-wise Retrain row (MIA-Efficacy 100.00): every forget image
    # looks like a non-member to the confidence SVC
    assert r["mia_efficacy"] == 100.0
    assert r["aus"] == pytest.approx(1 / (1 + r["test_forgotten_acc"] / 100))


def test_classwise_uses_test_without_the_forgotten_class(digits_class3, digits_cnn, monkeypatch):
    from unlearnbench.eval.metrics import mia_svc

    seen = {}
    real = mia_svc.svc_verdicts  # the metric reads per-image verdicts (paired gaps); svc_attack is their mean

    def spy(members, nonmembers, target, solver="lowrank"):
        seen.update(members=len(members), nonmembers=len(nonmembers), target=len(target))
        return real(members, nonmembers, target, solver)

    monkeypatch.setattr(mia_svc, "svc_verdicts", spy)
    r = Evaluator(metrics=["mia_efficacy", "test_retained_acc", "test_forgotten_acc"]).evaluate(digits_cnn, digits_class3)
    n_ta = len(digits_class3.test_retained)
    assert seen == {"members": n_ta, "nonmembers": n_ta, "target": len(digits_class3.forget)}
    assert r["test_forgotten_acc"] > 80  # the original still knows class 3


def test_each_split_is_predicted_once_and_inputs_are_untouched(digits_class3, digits_cnn, digits_cnn_retrain_class3,
                                                                monkeypatch):
    calls = []
    real = Predictions.of.__func__

    def counting(cls, model, data, batch_size=1024, amp=False):
        calls.append((id(model), data.name))
        return real(cls, model, data, batch_size, amp)

    monkeypatch.setattr(Predictions, "of", classmethod(counting))
    model = digits_cnn
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        Evaluator().evaluate(model, digits_class3, reference=digits_cnn_retrain_class3, original=digits_cnn)
        assert model.training  # mode restored
    finally:
        model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(calls) == len(set(calls))  # never twice
    assert sorted(n for i, n in calls if i == id(model)) == ["forget", "retain", "test", "val"]


def test_metric_selection_errors_and_skips(digits_random, digits_cnn):
    with pytest.raises(UnknownNameError, match="Did you mean 'mia_efficacy'"):
        Evaluator(metrics=["mia_eficacy"])
    with pytest.raises(ConfigError, match="needs a retrained reference"):
        Evaluator(metrics=["avg_gap"]).evaluate(digits_cnn, digits_random)
    with pytest.raises(ConfigError, match="class-wise forget spec"):
        Evaluator(metrics=["test_forgotten_acc"]).evaluate(digits_cnn, digits_random)
    r = Evaluator().evaluate(digits_cnn, digits_random)
    assert {"avg_gap", "aus", "lira", "ulira", "rte", "test_forgotten_acc"} <= set(r.skipped)
    assert "forget_acc" in r.values and "gap/ua" not in r.values
    for entry in METRICS.entries():
        assert entry.info["direction"] in ("higher", "lower", "reference")


def test_report_json_round_trip(digits_random, digits_cnn, tmp_path):
    r = Evaluator().evaluate(digits_cnn, digits_random, rte_seconds=1.5, config={"method": "none", "lr": 0.1},
                             meta={"kind": "original", "model": "cnn"}, name="orig")
    r.values["nan_metric"] = float("nan")
    back = Report.load(r.save(tmp_path / "r.json"))
    assert back.values.keys() == r.values.keys()
    assert math.isnan(back.values["nan_metric"])
    assert all(back.values[k] == pytest.approx(v) for k, v in r.values.items() if k != "nan_metric")
    assert back.per_class.equals(r.per_class) or back.per_class.to_dict() == r.per_class.to_dict()
    assert back.curves.keys() == r.curves.keys() and back.to_dict()["config"] == r.to_dict()["config"]
    assert back.tags() == r.tags() and back.tags()["kind"] == "original" and len(back.tags()["git_sha"]) > 5
    assert {"git_sha", "versions", "device", "seed", "created"} <= set(back.provenance)
    assert {"predictions", "total", "mia_efficacy"} <= set(back.timings)
    assert back["rte_seconds"] == 1.5


def test_eval_config_validation():
    with pytest.raises(ConfigError):
        EvalConfig(eps=-1)
    with pytest.raises(ConfigError, match="empty"):
        EvalConfig(metrics=())
    with pytest.raises(ConfigError, match="lira_variance must be one of auto, per_example, global, not 'Auto'"):
        Evaluator(lira_variance="Auto")
    with pytest.raises(ConfigError, match="svc_solver must be one of lowrank, libsvm, sklearn, not 'smo'"):
        EvalConfig(svc_solver="smo")


def test_memorising_model_leaks_on_retain_not_on_non_members(digits_random):
    """An MLP fitted for 600 steps without weight decay on 30 images memorises them: the
    threshold attacks separate them from test images, but not two non-member sets."""
    splits_info = digits_random.info
    train = digits_random.retain
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(train)))
    members, outsiders = train.select(order[:30], "retain"), train.select(order[30:480], "forget")
    model = create_model("mlp", 10, 1, 8, splits_info.mean, splits_info.std)
    fit(model, members, None, splits_info, TrainConfig(epochs=600, batch_size=64, lr=0.1, weight_decay=0.0,
                                                      keep_best=False, seed=0, device="cpu"))
    data = dataclasses.replace(digits_random, forget=outsiders, retain=members)
    r = Evaluator(metrics=["mia_threshold", "retain_acc"]).evaluate(model, data)
    assert r["retain_acc"] == 100.0
    assert r["mia/loss/retain_test/auc"] > 0.75
    for attack in ("loss", "confidence", "entropy", "m_entropy"):
        assert abs(r[f"mia/{attack}/forget_test/auc"] - 0.5) < 0.06  # held-out train vs test: both unseen


def test_robustness_calls_the_robust_contract(digits_random, digits_cnn, monkeypatch):
    """Opt-in robustness goes through robust.evaluate.robust_accuracy (contract B), stubbed here
    so the test checks the engine's calls, not the attacks."""
    from unlearnbench.robust.threat import ThreatModel

    calls = []

    def robust_accuracy(model, data, attack, threat, *, n=None, seed=0, batch_size=256):
        calls.append((data.name, attack, threat.eps, n, seed))
        return types.SimpleNamespace(clean_acc=90.0, robust_acc=40.0 if attack == "pgd" else 35.0, n=n, stages={},
                                     seconds=0.0)

    ev_mod = types.ModuleType("unlearnbench.robust.evaluate")
    ev_mod.robust_accuracy = robust_accuracy
    monkeypatch.setitem(sys.modules, "unlearnbench.robust.evaluate", ev_mod)
    try:
        import unlearnbench.robust.attacks  # noqa: F401
    except ImportError:
        from unlearnbench.core.registry import Registry

        att_mod = types.ModuleType("unlearnbench.robust.attacks")
        att_mod.ATTACKS = Registry("attacks")
        att_mod.ATTACKS.add("pgd", object)
        att_mod.ATTACKS.add("autoattack", object)
        monkeypatch.setitem(sys.modules, "unlearnbench.robust.attacks", att_mod)
    ev = Evaluator(metrics=["test_acc"], robustness=["pgd", "autoattack"], threat=ThreatModel("Linf", 0.1), robust_n=50, seed=3)
    r = ev.evaluate(digits_cnn, digits_random)
    assert {c[0] for c in calls} == {"forget", "retain", "test"} and len(calls) == 6
    assert all(c[2:] == (0.1, 50, 3) for c in calls)
    assert r["robust/test/pgd"] == 40.0 and r["robust/forget/autoattack"] == 35.0 and r["clean/retain"] == 90.0
    assert r.directions["robust/test/pgd"] == "higher"
    assert r.config["eval"]["eps"] == 0.1 and list(r.config["eval"]["robustness"]) == ["pgd", "autoattack"]


def _stub_robust(monkeypatch, calls):
    def robust_accuracy(model, data, attack, threat, *, n=None, seed=0, batch_size=256):
        calls.append((data.name, attack, len(data), set(data.y.tolist())))
        # n points of this split: min(n, len), as robust.evaluate.select_points draws them
        return types.SimpleNamespace(clean_acc=90.0, robust_acc=40.0, n=min(n, len(data)), stages={}, seconds=0.0)

    ev_mod = types.ModuleType("unlearnbench.robust.evaluate")
    ev_mod.robust_accuracy = robust_accuracy
    monkeypatch.setitem(sys.modules, "unlearnbench.robust.evaluate", ev_mod)


def test_classwise_robustness_is_measured_on_test_retained_and_forgotten(digits_class3, digits_cnn, monkeypatch):
    """Like TA, robustness on test images excludes the forgotten class for class-wise specs, and
    the forgotten class's test images are reported on their own; every value carries its n."""
    from unlearnbench.robust.threat import ThreatModel

    calls = []
    _stub_robust(monkeypatch, calls)
    ev = Evaluator(metrics=["test_retained_acc"], robustness=["pgd"], threat=ThreatModel("Linf", 0.1), robust_n=100)
    r = ev.evaluate(digits_cnn, digits_class3)
    by_split = {c[0]: c for c in calls}
    assert set(by_split) == {"forget", "retain", "test_retained", "test_forgotten"}
    assert 3 not in by_split["test_retained"][3] and by_split["test_forgotten"][3] == {3}
    assert by_split["test_retained"][2] == len(digits_class3.test_retained)
    assert "robust/test/pgd" not in r.values and "clean/test" not in r.values
    n_forgotten = len(digits_class3.test_forgotten)
    assert n_forgotten < 100  # the forgotten class has fewer test images than robust_n: all of them
    assert r.counts["n/robust/test_forgotten/pgd"] == n_forgotten and r.counts["n/clean/test_forgotten"] == n_forgotten
    assert r.counts["n/robust/test_retained/pgd"] == 100
    assert r["robust/test_retained/pgd"] == 40.0
    lo, hi = r.interval("robust/test_retained/pgd")
    assert lo < 40 < hi and hi - lo == pytest.approx(19, abs=1.5)  # Wilson on 40 of 100


def test_random_forgetting_robustness_stays_on_test(digits_random, digits_cnn, monkeypatch):
    from unlearnbench.robust.threat import ThreatModel

    calls = []
    _stub_robust(monkeypatch, calls)
    r = Evaluator(metrics=["test_acc"], robustness=["pgd"], threat=ThreatModel("Linf", 0.1), robust_n=20).evaluate(
        digits_cnn, digits_random)
    assert {c[0] for c in calls} == {"forget", "retain", "test"}
    assert r.counts["n/robust/test/pgd"] == 20


def test_every_proportion_carries_its_n(digits_class3, digits_cnn, digits_cnn_retrain_class3):
    r = Evaluator().evaluate(digits_cnn, digits_class3, reference=digits_cnn_retrain_class3)
    d = digits_class3
    for split in ("forget", "retain", "val", "test", "test_retained", "test_forgotten"):
        assert r.n(f"{split}_acc") == len(getattr(d, split))
        assert r.reference_counts[f"n/{split}_acc"] == len(getattr(d, split))
    assert r.n("ua") == len(d.forget) and r.n("mia_efficacy") == len(d.forget)
    assert r.counts["mia/loss/forget_test/n_nonmembers"] == len(d.test_forgotten)
    assert r.counts["mia/loss/retain_test/n_members"] == len(d.retain)
    # class 3 has ~36 test images: TPR at 1 % and 0.1 % FPR cannot be measured on them
    assert "mia/loss/forget_test/tpr_at_fpr_0.01" in r.undefined
    assert not any(k in r.values for k in r.undefined)
    # every threshold attack's AUC (model and reference) carries DeLong's variance from its scores,
    # and its interval is built from it
    for key in ("mia/loss/forget_test/auc", "mia/entropy/retain_test/auc"):
        assert 0 < r.variances[key] < 0.25 and 0 < r.reference_variances[key] < 0.25
        n_pos, n_neg = r.counts[key[:-3] + "n_members"], r.counts[key[:-3] + "n_nonmembers"]
        assert r.interval(key) == pytest.approx(iv.auc_interval_delong(r[key], r.variances[key], n_pos, n_neg))
    # every accuracy has an interval containing it; the original vs the retrain on the forgotten
    # class is a gap far beyond the noise, on the retained classes' test images it is not
    for key in ("forget_acc", "ua", "test_acc", "mia_efficacy"):
        lo, hi = r.interval(key)
        assert lo <= r[key] <= hi
    assert r.beyond_noise("ua") is True and r.beyond_noise("test_forgotten_acc") is True
    assert r.beyond_noise("test_retained_acc") is False


def test_robustness_with_the_real_attack(digits_random, digits_cnn):
    from unlearnbench.robust.threat import ThreatModel

    ev = Evaluator(metrics=["test_acc"], robustness=["pgd"], threat=ThreatModel("Linf", 0.1), robust_n=32)
    r = ev.evaluate(digits_cnn, digits_random)
    for split in ("forget", "retain", "test"):
        assert 0 <= r[f"robust/{split}/pgd"] <= r[f"clean/{split}"] <= 100
    assert r["robust/test/pgd"] < r["clean/test"]  # eps 0.1 breaks a plain CNN on digits


def test_a_diverged_model_is_refused_not_scored(digits_class3, digits_cnn):
    # NaN logits argmax to class 0: unchecked, this model would score UA 100 ("perfect" forgetting).
    from unlearnbench.eval.predictions import NonFiniteOutputs

    model = copy.deepcopy(digits_cnn)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteOutputs, match=r"NaN or infinite on \d+ of \d+ \w+ samples"):
        Evaluator(metrics=["ua"]).evaluate(model, digits_class3)


def _one_hot_logits(preds, labels, c=3):
    return 5.0 * torch.nn.functional.one_hot(torch.tensor(preds), c).float(), torch.tensor(labels)


def test_per_class_accuracy_by_hand(constructed):
    """Per-class accuracy of the model and of its reference, counted by hand; a class missing from
    a split gets no row; class names come from the dataset, and classes without a name show their index."""
    from eval_helpers import LookupModel

    splits = {"forget": ([0, 1, 1], [0, 0, 1]), "retain": ([0, 1, 2, 0], [0, 1, 2, 2]), "test": ([1, 1, 2], [0, 1, 2])}
    model, data = constructed(*(_one_hot_logits(p, y) for p, y in splits.values()))
    data = dataclasses.replace(data, info=dataclasses.replace(data.info, class_names=("cat",)))
    ref_preds = {"forget": [1, 0, 0], "retain": [0, 1, 2, 2], "test": [0, 1, 0]}
    ref_table = [_one_hot_logits(p, splits[s][1])[0] for s, p in ref_preds.items()]
    ref = LookupModel(torch.cat([*ref_table, ref_table[-1]])).eval()  # val = test
    r = Evaluator(metrics=["per_class_acc", "forget_acc", "ua"]).evaluate(model, data, reference=ref)
    rows = {(row["split"], row["class"]): row for row in r.per_class.to_dict(orient="records")}
    expected = {  # (split, class): (name, n, acc, reference acc)
        ("forget", 0): ("cat", 2, 50.0, 50.0), ("forget", 1): ("1", 1, 100.0, 0.0),
        ("retain", 0): ("cat", 1, 100.0, 100.0), ("retain", 1): ("1", 1, 100.0, 100.0),
        ("retain", 2): ("2", 2, 50.0, 100.0),
        ("test", 0): ("cat", 1, 0.0, 100.0), ("test", 1): ("1", 1, 100.0, 100.0), ("test", 2): ("2", 1, 100.0, 0.0),
    }
    assert set(rows) == set(expected)  # no row for class 2, absent from the forget set
    for key, (name, n, acc, ref_acc) in expected.items():
        assert (rows[key]["name"], rows[key]["n"]) == (name, n)
        assert rows[key]["acc"] == pytest.approx(acc) and rows[key]["reference_acc"] == pytest.approx(ref_acc)
    assert r["forget_acc"] == pytest.approx(200 / 3) and r["ua"] == pytest.approx(100 / 3)
    assert r.counts["n/ua"] == r.counts["n/forget_acc"] == 3
    assert r.reference_values["ua"] == pytest.approx(200 / 3)
    # UA's per-image outcomes are the forget accuracy's, inverted (its gap is paired on them)
    ua, forget = r.outcomes["ua"], r.outcomes["forget_acc"]
    assert ua.digest == forget.digest and ua.hits.tolist() == [False, True, False] == (~forget.hits).tolist()


def test_divergence_against_scipy(constructed):
    """div/kl = mean KL(p_ref || p_model) and div/js = mean JS(p_ref, p_model) (natural log) per
    split, against scipy's entropy and Jensen-Shannon distance (squared) example by example."""
    from eval_helpers import LookupModel
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import entropy

    g = torch.Generator().manual_seed(0)
    sizes = {"forget": 4, "retain": 5, "test": 6}
    mine = {s: 2 * torch.randn(n, 3, generator=g) for s, n in sizes.items()}
    theirs = {s: 2 * torch.randn(n, 3, generator=g) for s, n in sizes.items()}
    model, data = constructed(*((mine[s], torch.zeros(n, dtype=torch.long)) for s, n in sizes.items()))
    ref = LookupModel(torch.cat([theirs["forget"], theirs["retain"], theirs["test"], theirs["test"]])).eval()
    r = Evaluator(metrics=["divergence"]).evaluate(model, data, reference=ref)
    for split in ("forget", "test"):
        p = torch.softmax(mine[split].double(), 1).numpy()
        q = torch.softmax(theirs[split].double(), 1).numpy()
        kl = np.mean([entropy(qi, pi) for pi, qi in zip(p, q, strict=True)])
        js = np.mean([jensenshannon(pi, qi) ** 2 for pi, qi in zip(p, q, strict=True)])
        assert r[f"div/kl/{split}"] == pytest.approx(kl, rel=1e-6)
        assert r[f"div/js/{split}"] == pytest.approx(js, rel=1e-6)
        assert 0 < js < math.log(2)


@pytest.mark.parametrize("original_as", ["model", "values"])
def test_aus_of_an_evaluation_by_hand(constructed, original_as):
    """Random forgetting: A_or = the original's test accuracy (from its model, or from its values),
    A_t = 50 % test accuracy, A_f = 75 % forget accuracy: AUS = (1 - (1 - 0.5)) / (1 + 0.25) = 0.4."""
    from eval_helpers import LookupModel

    forget, test = _one_hot_logits([0, 0, 0, 1], [0, 0, 0, 0], 2), _one_hot_logits([0, 1, 1, 0], [0, 1, 0, 1], 2)
    retain = _one_hot_logits([0, 1], [0, 1], 2)
    model, data = constructed(forget, retain, test)
    perfect = LookupModel(torch.cat([forget[0], retain[0], *(_one_hot_logits([0, 1, 0, 1], [0] * 4, 2)[0],) * 2])).eval()
    original = perfect if original_as == "model" else {"test_acc": 100.0}
    r = Evaluator(metrics=["aus"]).evaluate(model, data, original=original)
    assert (r["test_acc"], r["forget_acc"]) == (50.0, 75.0)
    assert r["aus"] == pytest.approx(0.4)
    # AUS is derived before the gaps: its gap to a reference report's AUS, asked in either order
    r = Evaluator(metrics=["gap", "aus"]).evaluate(model, data, original=original, reference={"aus": 0.25})
    assert r["gap/aus"] == pytest.approx(0.15)


def test_average_gap_names_what_is_missing(constructed):
    full = {"ua": 1.0, "retain_acc": 2.0, "test_acc": 3.0, "mia_efficacy": 4.0}
    # a reference report without MIA-Efficacy: no average gap (the other gaps are there), not an error
    model, data = constructed(_one_hot_logits([0], [0], 2), _one_hot_logits([1], [1], 2), _one_hot_logits([0], [0], 2))
    r = Evaluator(metrics=["avg_gap", "gap"]).evaluate(model, data, reference={k: v for k, v in full.items() if k != "mia_efficacy"})
    assert "avg_gap" not in r.values and r["gap/ua"] == 1.0 and "mia_efficacy" in r.values
    # gaps come after the values they compare (UA is derived at stage 1), whatever order they are asked in
    r = Evaluator(metrics=["gap", "ua"]).evaluate(model, data, reference={"ua": 5.0})
    assert r["gap/ua"] == 5.0
    # missing on one side only (here the reference's UA) is still missing
    with pytest.raises(KeyError, match="average gap needs ua for the model and the reference"):
        average_gap(full, {k: v for k, v in full.items() if k != "ua"})
    with pytest.raises(KeyError, match="needs test_retained_acc"):
        average_gap(full, full, classwise=True)


def test_robustness_outcomes_and_the_splits_attacked(constructed, monkeypatch):
    """Per-point clean and robust outcomes are recorded when the attack returns them with the
    points' ids (paired gaps), each only when both are there; a one-image split is attacked; an empty
    split (a forgotten class without test images) is not; clean accuracy is the first attack's."""
    from unlearnbench.eval.metrics.robustness import robust_splits
    from unlearnbench.robust.threat import ThreatModel

    calls = []

    def robust_accuracy(model, data, attack, threat, *, n=None, seed=0, batch_size=256):
        calls.append((data.name, attack))
        clean, robust = torch.ones(len(data), dtype=torch.bool), torch.zeros(len(data), dtype=torch.bool)
        parts = {"forget": dict(clean=clean, robust=robust, idx=data.idx),  # everything per point
                 "retain": dict(clean=None, robust=robust, idx=data.idx),  # robust outcomes only
                 "test": dict(clean=clean, robust=None, idx=data.idx)}  # clean outcomes only
        part = parts.get(data.name, parts["forget"])
        return types.SimpleNamespace(clean_acc=90.0 if attack == "pgd" else 80.0, robust_acc=40.0, n=len(data),
                                     stages={}, seconds=0.0, **part)

    ev_mod = types.ModuleType("unlearnbench.robust.evaluate")
    ev_mod.robust_accuracy = robust_accuracy
    monkeypatch.setitem(sys.modules, "unlearnbench.robust.evaluate", ev_mod)
    model, data = constructed(_one_hot_logits([0], [0], 2), _one_hot_logits([0, 1], [0, 1], 2),
                              _one_hot_logits([0, 1, 1], [0, 1, 1], 2))
    ev = Evaluator(metrics=["test_acc"], robustness=["pgd", "fgsm"], threat=ThreatModel("Linf", 0.1), robust_n=10)
    r = ev.evaluate(model, data)
    assert calls == [(s, a) for s in ("forget", "retain", "test") for a in ("pgd", "fgsm")]
    assert r["clean/forget"] == 90.0 and r.counts["n/clean/forget"] == r.counts["n/robust/forget/fgsm"] == 1
    assert r.outcomes["clean/forget"].hits.tolist() == [True] and r.outcomes["robust/forget/pgd"].hits.tolist() == [False]
    assert "clean/retain" not in r.outcomes and "robust/retain/fgsm" in r.outcomes
    assert "clean/test" in r.outcomes and not any(k.startswith("robust/test/") for k in r.outcomes)
    # class-wise: the forgotten class has no test images here, so only the retained ones are attacked
    empty = data.test.select(torch.zeros(len(data.test), dtype=torch.bool), "test_forgotten")
    cw = dataclasses.replace(data, spec=parse_forget_spec("class:2"), forget_classes=(2,),
                             test_retained=data.test.select(torch.ones(len(data.test), dtype=torch.bool), "test_retained"),
                             test_forgotten=empty)
    assert robust_splits(types.SimpleNamespace(has=lambda need: True)) == ("forget", "retain", "test_retained",
                                                                           "test_forgotten")
    calls.clear()
    r = Evaluator(metrics=["forget_acc"], robustness=["pgd"], threat=ThreatModel("Linf", 0.1), robust_n=10).evaluate(model, cw)
    assert [c[0] for c in calls] == ["forget", "retain", "test_retained"]
    assert "robust/test_forgotten/pgd" not in r.values and r["robust/test_retained/pgd"] == 40.0
    # and when every test image is of the forgotten class, the empty retained part is skipped, not the rest
    calls.clear()
    none = torch.zeros(len(data.test), dtype=torch.bool)
    only_forgotten = dataclasses.replace(cw, test_retained=data.test.select(none, "test_retained"),
                                         test_forgotten=data.test.select(~none, "test_forgotten"))
    ev = Evaluator(metrics=["forget_acc"], robustness=["pgd"], threat=ThreatModel("Linf", 0.1), robust_n=10)
    r = ev.evaluate(model, only_forgotten)
    assert [c[0] for c in calls] == ["forget", "retain", "test_forgotten"] and r["robust/test_forgotten/pgd"] == 40.0


def test_eval_context_and_prediction_cache(constructed, monkeypatch):
    """The cache predicts each (model, split) once, adopts only the given model's predictions from
    another cache, times what it predicts and nothing else; the context finds pools by kind and
    says which inputs it has."""
    import time

    from eval_helpers import LookupModel

    from unlearnbench.eval.metrics.base import EvalContext, PredictionCache

    calls = []
    real = Predictions.of.__func__

    def counting(cls, model, data, batch_size=1024, amp=False):
        calls.append((id(model), data.name))
        time.sleep(0.01)
        return real(cls, model, data, batch_size, amp)

    monkeypatch.setattr(Predictions, "of", classmethod(counting))
    model, data = constructed(_one_hot_logits([0, 1], [0, 0], 2), _one_hot_logits([1], [1], 2), _one_hot_logits([0], [0], 2))
    other = LookupModel(model.table.clone()).eval()
    cache = PredictionCache()
    t0 = time.perf_counter()
    first = cache.get(model, data, "forget")
    assert cache.get(model, data, "forget") is first and calls == [(id(model), "forget")]
    assert 0.01 <= cache.seconds <= time.perf_counter() - t0
    assert cache.get(model, data, "test_retained") is None  # random forgetting: no class-wise split
    no_val = dataclasses.replace(data, val=data.val.select(torch.zeros(len(data.val), dtype=torch.bool), "val"))
    n = len(calls)
    assert cache.get(model, no_val, "val") is None and len(calls) == n  # an empty split is not predicted
    with pytest.raises(ValueError, match="unknown split"):
        cache.get(model, data, "train")
    cache.get(other, data, "forget")
    fresh = PredictionCache()
    fresh.adopt(cache, model)
    before = len(calls)
    assert fresh.get(model, data, "forget") is first and len(calls) == before  # adopted, not predicted again
    fresh.get(other, data, "forget")
    assert len(calls) == before + 1  # the other model's predictions were not adopted
    assert fresh.seconds >= 0.01

    lira, ulira = types.SimpleNamespace(kind="lira"), types.SimpleNamespace(kind="ulira")
    ctx = EvalContext(model=model, data=data, options=EvalConfig(), cache=cache, pools=(ulira, lira))
    assert ctx.pool("lira") is lira and ctx.pool("ulira") is ulira and ctx.pool("other") is None
    assert ctx.ta_split == "test" and not ctx.classwise
    assert not any(ctx.has(n) for n in ("reference", "reference_model", "original", "rte", "robustness", "classwise"))
    assert ctx.has("lira_pool") and ctx.has("ulira_pool")
    ctx = EvalContext(model=model, data=data, options=EvalConfig(), cache=cache, reference_values={"ua": 1.0},
                      original_values={"test_acc": 1.0}, rte_seconds=0.0)
    assert ctx.has("reference") and ctx.has("original") and ctx.has("rte") and not ctx.has("reference_model")
    assert not ctx.has("lira_pool") and not ctx.has("ulira_pool")
    ctx = EvalContext(model=model, data=data, options=EvalConfig(), cache=cache, reference_model=other, original_model=other)
    assert ctx.has("reference") and ctx.has("reference_model") and ctx.has("original")
    assert ctx.preds("forget", "reference") is cache.get(other, data, "forget") and ctx.preds("forget", "original") is not None
    # the report's prediction time is what the cache measured: a part of the total
    r = Evaluator(metrics=["forget_acc"]).evaluate(model, data)
    assert 0.01 <= r.timings["predictions"] <= r.timings["total"]
    # class-wise, the papers' TA is on the retained classes' test images, when there are any
    keep = torch.ones(len(data.test), dtype=torch.bool)
    cw = dataclasses.replace(data, spec=parse_forget_spec("class:1"), forget_classes=(1,),
                             test_retained=data.test.select(keep, "test_retained"),
                             test_forgotten=data.test.select(~keep, "test_forgotten"))
    assert EvalContext(model=model, data=cw, options=EvalConfig(), cache=cache).ta_split == "test_retained"
    no_split = dataclasses.replace(cw, test_retained=None)
    assert EvalContext(model=model, data=no_split, options=EvalConfig(), cache=cache).ta_split == "test"


def test_a_metric_registered_directly_runs_with_the_predictions(constructed, monkeypatch):
    """A plug-in registered straight into the registry (no register_metric: no spec) is a default,
    gap-able, stage-0 metric: it runs after the stage-0 metrics asked before it, before UA."""
    from unlearnbench.core.registry import Entry
    from unlearnbench.eval.metrics.base import metric_spec

    def probe(ctx):
        return {"probe": ctx.values.get("forget_acc", -1.0) + 1000 * ("ua" in ctx.values)}

    monkeypatch.setitem(METRICS._entries, "probe", Entry("probe", probe, {"summary": "test probe"}))
    model, data = constructed(_one_hot_logits([0, 1], [0, 0], 2), _one_hot_logits([1], [1], 2), _one_hot_logits([0], [0], 2))
    r = Evaluator(metrics=["forget_acc", "probe", "ua"]).evaluate(model, data, reference={"probe": 40.0})
    assert r["probe"] == 50.0 and metric_spec("probe").default and metric_spec("probe").gap
    assert r.directions["probe"] == "reference"


def test_rte_is_the_given_run_time_with_no_gap(constructed):
    """RTE is the seconds handed in; it has no gap to the reference (the retrain's run time is a
    cost, not a target), even when the reference's report carries one."""
    model, data = constructed(_one_hot_logits([0], [0], 2), _one_hot_logits([1], [1], 2), _one_hot_logits([0], [0], 2))
    r = Evaluator(metrics=["rte", "gap", "forget_acc"]).evaluate(
        model, data, rte_seconds=2.5, reference={"rte_seconds": 100.0, "forget_acc": 50.0})
    assert r["rte_seconds"] == 2.5 and r.directions["rte_seconds"] == "lower"
    assert r["gap/forget_acc"] == 50.0 and "gap/rte_seconds" not in r.values
