"""Metamorphic tests of the whole evaluation engine (issue #19, item 3).

No expected number is written down here: each test transforms the *input* in a way that must
not change the answer (or must change it in a known way) and compares two full reports, every
key of them. A wrong metric that is still a function of the right multiset of per-point
predictions passes; one that depends on the order the points arrive in, on the class ids, on
the mode the model was handed over in, or on a seed it should not read, fails.

- permuting each split's order leaves every value unchanged (MIA-Efficacy's shadow members are
  the *first* |test| retain points, as in SalUn's code, so the retain set is permuted within
  that prefix and within the rest);
- relabelling classes consistently (labels y -> pi[y], the model's outputs permuted the same
  way) leaves every value unchanged and permutes the per-class table;
- a model handed over in train mode (BatchNorm + dropout) gives the same numbers as in eval
  mode and comes back with its buffers, weights and every module's own mode untouched, the
  global RNG untouched too;
- the evaluator's seed changes the robust subsets (``robust_n``) and nothing else; robust
  subsets of class-ordered data cover every class.

The model: a small conv net with BatchNorm and dropout, trained 1 epoch on digits (~1 s).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearnbench.core.data import TensorSet, prepare
from unlearnbench.core.data.splits import parse_forget_spec
from unlearnbench.core.train import TrainConfig, fit
from unlearnbench.eval.engine import Evaluator
from unlearnbench.robust.checks import RobustnessWarning
from unlearnbench.robust.evaluate import robust_accuracy, select_points
from unlearnbench.robust.threat import ThreatModel

# Keys that are timings, not results of the data.
_TIMING = ("seconds",)


def _bn_dropout_net(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(8 * 64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(32, num_classes),
    )


@pytest.fixture(scope="module")
def trained():
    """(model in eval mode, random-forgetting data, class-wise data) on digits, split_seed 0."""
    splits, data = prepare("digits", "random:0.1", split_seed=0)
    _, classwise = prepare("digits", "class:3", split_seed=0)
    model = _bn_dropout_net()
    fit(model, splits.train, splits.val, splits.info,
        TrainConfig(epochs=1, batch_size=64, lr=0.05, seed=0, device="cpu", keep_best=False))
    return model.eval(), data, classwise


def _values(report) -> dict[str, float]:
    return {k: v for k, v in report.values.items() if not k.endswith(_TIMING)}


def _assert_same_values(a, b, what: str, tol: float = 0.0) -> None:
    va, vb = _values(a), _values(b)
    assert va.keys() == vb.keys(), what
    diff = {k: (va[k], vb[k]) for k in va
            if not (abs(va[k] - vb[k]) <= tol or (math.isnan(va[k]) and math.isnan(vb[k])))}
    assert not diff, f"{what} changed {diff}"


# A few examples in CI (each is two full evaluations, ~0.5 s), many more under `make test-deep`.
FEW = settings(max_examples=max(2, settings.default.max_examples // 20))


def _evaluate(model, data, *, robust_n=None, seed=0, attacks=("fgsm",)):
    # FGSM is deterministic (no random start), so each point's verdict depends only on the point.
    return Evaluator(robustness=attacks, threat=ThreatModel("Linf", 0.1), robust_n=robust_n,
                     seed=seed).evaluate(model, data)


# ------------------------------------------------------------------ permutation of the data


def _shuffled(tset: TensorSet, g: torch.Generator, keep_prefix: int = 0) -> TensorSet:
    n = len(tset)
    if keep_prefix:
        k = min(keep_prefix, n)
        perm = torch.cat([torch.randperm(k, generator=g), k + torch.randperm(n - k, generator=g)])
    else:
        perm = torch.randperm(n, generator=g)
    return tset.select(perm)


def _permuted(data, seed: int):
    g = torch.Generator().manual_seed(seed)
    members = len(data.test_retained if data.test_retained is not None else data.test)
    test = _shuffled(data.test, g)
    out = dict(forget=_shuffled(data.forget, g), retain=_shuffled(data.retain, g, keep_prefix=members),
               val=_shuffled(data.val, g), test=test)
    if data.test_retained is not None:  # class-wise: the slices of the shuffled test set
        forgot = torch.isin(test.y, torch.tensor(data.forget_classes))
        out.update(test_retained=test.select(~forgot, data.test_retained.name),
                   test_forgotten=test.select(forgot, data.test_forgotten.name))
    return dataclasses.replace(data, **out)


@FEW
@given(seed=st.integers(0, 2**31 - 1), classwise=st.booleans())
def test_permuting_every_split_changes_no_metric(trained, seed, classwise):
    model, random_data, class_data = trained
    data = class_data if classwise else random_data
    base = _evaluate(model, data)
    shuffled = _evaluate(model, _permuted(data, seed))
    # Exact: the per-point predictions are bit-identical, only their order differs.
    _assert_same_values(base, shuffled, "shuffling the splits")
    # the membership statistics are there and were compared (not silently skipped)
    assert "mia_efficacy" in base.values and "mia/loss/forget_test/bal_acc" in base.values
    assert any(k.startswith("robust/forget/") for k in base.values)


def test_retain_order_beyond_the_prefix_is_what_mia_efficacy_reads(trained):
    """The converse, so the prefix rule above is not vacuous: MIA-Efficacy's shadow members are
    the first |test| retain points (SalUn's ``Subset(retain, range(len(test)))``), so moving
    other retain points into the prefix changes what its SVC is fitted on."""
    model, data, _ = trained
    rev = dataclasses.replace(data, retain=data.retain.select(torch.arange(len(data.retain) - 1, -1, -1)))
    ev = Evaluator(metrics=["mia_efficacy"])
    a, b = ev.evaluate(model, data), ev.evaluate(model, rev)
    assert a.counts["mia_efficacy/n_members"] == b.counts["mia_efficacy/n_members"] == len(data.test)
    assert not torch.equal(data.retain.idx[: len(data.test)].sort().values,
                           rev.retain.idx[: len(data.test)].sort().values)


# ------------------------------------------------------------------ relabelling the classes


class PermutedOutputs(nn.Module):
    """``model`` whose class c is called ``pi[c]``: output column pi[c] = original column c."""

    def __init__(self, model: nn.Module, pi: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("inverse", torch.argsort(pi))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.inverse]


def _relabelled(data, pi: torch.Tensor):
    def rl(s):
        return None if s is None else TensorSet(s.x, pi[s.y], s.idx, s.sub, s.name)

    out = {k: rl(getattr(data, k)) for k in ("forget", "retain", "val", "test", "test_retained", "test_forgotten")}
    if data.forget_classes:
        classes = tuple(int(pi[c]) for c in data.forget_classes)
        out.update(forget_classes=classes, spec=parse_forget_spec("class:" + ",".join(map(str, classes))))
    return dataclasses.replace(data, **out)


@FEW
@given(perm=st.permutations(list(range(10))), classwise=st.booleans())
def test_relabelling_classes_consistently_changes_no_metric(trained, perm, classwise):
    model, random_data, class_data = trained
    data = class_data if classwise else random_data
    pi = torch.tensor(perm)
    base = _evaluate(model, data)
    renamed = _evaluate(PermutedOutputs(model, pi).eval(), _relabelled(data, pi))
    # Not bit-exact: the softmax sums the permuted logits in another order, so a probability may
    # move by an ulp and break a tie between a member and a non-member the other way (an AUC
    # moves by 1 / (n_members * n_nonmembers) ~ 2e-6); any real change is orders larger.
    _assert_same_values(base, renamed, f"relabelling classes by {perm}", tol=2e-5)
    # the per-class table is the same table with its classes renamed
    cols = [c for c in base.per_class.columns if c not in ("class", "name", "class_name")]
    a = base.per_class.set_index(["split", "class"]) if "split" in base.per_class else base.per_class.set_index("class")
    b = renamed.per_class.copy()
    b["class"] = torch.argsort(pi)[torch.tensor(b["class"].to_numpy())].numpy()
    b = b.set_index(["split", "class"]) if "split" in b else b.set_index("class")
    num = [c for c in cols if c in a.columns and a[c].dtype.kind in "fi"]
    assert num, "the per-class table has numeric columns to compare"
    assert a[num].sort_index().equals(b.loc[a.index, num].sort_index())


# ------------------------------------------------------------------ train mode is not a different model


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_train_mode_model_gives_eval_mode_numbers_and_comes_back_untouched(trained):
    model, data, _ = trained
    base = _evaluate(model, data, robust_n=60, attacks=("fgsm", "pgd"))
    # A training model whose first BatchNorm is frozen (eval) and one dropout off: each module's
    # own flag must come back, not the top module's flag copied down.
    model.train()
    model[1].eval()
    model[3].eval()
    modes = [m.training for m in model.modules()]
    before = _state(model)
    rng = torch.get_rng_state()
    try:
        with pytest.warns(RobustnessWarning, match="train mode"):  # said once, not silently fixed
            again = _evaluate(model, data, robust_n=60, attacks=("fgsm", "pgd"))
        after_modes = [m.training for m in model.modules()]
        after = _state(model)
        rng_after = torch.get_rng_state()
    finally:
        model.eval()
    _assert_same_values(base, again, "handing the model over in train mode")
    assert after_modes == modes
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before), \
        "BatchNorm statistics or weights changed"
    assert torch.equal(rng, rng_after), "evaluation moved the global RNG"


def test_robust_accuracy_of_a_train_mode_model(trained):
    """``robust_accuracy`` alone (the `attack` command's path): same numbers and images in train mode."""
    model, data, _ = trained
    threat = ThreatModel("Linf", 0.1)
    a = robust_accuracy(model, data.test, "pgd", threat, n=80, seed=3, return_adv=True)
    model.train()
    before = _state(model)
    try:
        with pytest.warns(RobustnessWarning, match="train mode"):
            b = robust_accuracy(model, data.test, "pgd", threat, n=80, seed=3, return_adv=True)
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()
    assert (a.clean_acc, a.robust_acc, a.n) == (b.clean_acc, b.robust_acc, b.n)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.robust, b.robust)
    assert all(torch.equal(v, _state(model)[k]) for k, v in before.items())


# ------------------------------------------------------------------ seeds


def test_evaluator_seed_changes_the_robust_subsets_and_nothing_else(trained):
    model, data, _ = trained
    a = _evaluate(model, data, robust_n=50, seed=0, attacks=("pgd",))
    a2 = _evaluate(model, data, robust_n=50, seed=0, attacks=("pgd",))
    b = _evaluate(model, data, robust_n=50, seed=1, attacks=("pgd",))
    _assert_same_values(a, a2, "re-running with the same seed")
    va, vb = _values(a), _values(b)
    robust_keys = {k for k in va if k.startswith(("robust/", "clean/"))}
    assert robust_keys
    assert {k: va[k] for k in va if k not in robust_keys} == {k: vb[k] for k in vb if k not in robust_keys}
    # the subsets themselves differ with the seed (so the robust numbers may)
    for split in ("forget", "retain", "test"):
        n = len(getattr(data, split))
        assert not torch.equal(select_points(n, 50, 0), select_points(n, 50, 1))


def test_robust_subset_follows_the_seed(trained):
    model, data, _ = trained
    threat = ThreatModel("Linf", 0.1)
    r0 = robust_accuracy(model, data.test, "fgsm", threat, n=40, seed=0)
    r1 = robust_accuracy(model, data.test, "fgsm", threat, n=40, seed=1)
    assert torch.equal(r0.positions, select_points(len(data.test), 40, 0))
    assert not torch.equal(r0.idx, r1.idx)
    assert torch.equal(r0.idx, data.test.idx[r0.positions])


@given(n_per_class=st.integers(20, 60), classes=st.integers(2, 10), seed=st.integers(0, 2**31 - 1),
       share=st.floats(0.3, 0.9))
def test_robust_subsets_of_class_ordered_data_cover_every_class(n_per_class, classes, seed, share):
    """Forget/retain sets are often ordered by class, so "the first n points" would attack the
    first classes only. The subset is uniform: by pigeonhole it covers every class once
    n > total - n_per_class, and no class's count strays beyond 6 hypergeometric standard
    deviations from n / classes (the first-n rule puts whole classes at 0 and others at
    n_per_class; a probability below 1e-8 per class of a false alarm)."""
    total = n_per_class * classes
    y = torch.arange(classes).repeat_interleave(n_per_class)  # class-ordered
    n = max(1, int(share * total))
    pos = select_points(total, n, seed)
    assert len(pos) == n and len(pos.unique()) == n and bool((pos[1:] > pos[:-1]).all())
    counts = torch.bincount(y[pos], minlength=classes)
    if n >= total - n_per_class + 1:
        assert bool((counts > 0).all())
    p = 1 / classes
    sd = (n * p * (1 - p) * (total - n) / max(1, total - 1)) ** 0.5
    assert float((counts.float() - n * p).abs().max()) <= 6 * sd + 1


def test_robust_subset_of_a_class_ordered_forget_set_covers_every_class(trained):
    model, data, _ = trained
    order = torch.argsort(data.retain.y, stable=True)
    ordered = data.retain.select(order)
    res = robust_accuracy(model, ordered, "fgsm", ThreatModel("Linf", 0.1), n=300, seed=0)
    assert set(ordered.y[res.positions].tolist()) == set(range(10))


def test_robust_result_carries_its_points_and_its_own_run_time(trained):
    """What a RobustResult reports about itself: its positions, their source indices and labels,
    per-point verdicts whose mean is the robust accuracy, and a run time inside the call's own."""
    import time

    model, data, _ = trained
    t0 = time.perf_counter()
    tiny = robust_accuracy(model, data.test, "fgsm", ThreatModel("Linf", 0.1), n=4, seed=5)
    elapsed = time.perf_counter() - t0
    assert 0 < tiny.seconds <= elapsed  # 4 points: milliseconds, far from any ratio of clock readings
    res = robust_accuracy(model, data.test, "fgsm", ThreatModel("Linf", 0.1), n=64, seed=5, return_adv=True)
    assert res.n == 64 == len(res.robust) == len(res.positions) == len(res.x_adv)
    assert torch.equal(res.idx, data.test.idx[res.positions]) and torch.equal(res.y, data.test.y[res.positions])
    assert res.robust_acc == pytest.approx(100 * res.robust.float().mean().item())
    assert res.robust_acc <= res.clean_acc


def test_robust_accuracy_of_an_empty_set_is_one_sentence(trained):
    from unlearnbench.core.errors import ConfigError

    model, data, _ = trained
    with pytest.raises(ConfigError, match="empty; there is nothing to attack"):
        robust_accuracy(model, data.test.select(torch.zeros(len(data.test), dtype=torch.bool)), "fgsm",
                        ThreatModel("Linf", 0.1))
