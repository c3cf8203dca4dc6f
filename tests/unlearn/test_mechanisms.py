"""Mechanism tests: each method's defining step on hand-made inputs with known answers.

These fail when a mechanism is wrong even if the method still "forgets" end to end (issue #16:
pulling towards the *farthest* class, forbidding the true random label, dropping SCAR's
selective teacher or SCRUB's T² all passed the outcome tests). Inputs are hand-built tensors or
tiny models; runs on digits are kept to one or two epochs.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import unlearnbench.unlearn.scar as scar_mod
import unlearnbench.unlearn.scrub as scrub_mod
from unlearnbench.core.data import Loader
from unlearnbench.unlearn import build_config, run
from unlearnbench.unlearn.classstats import ClassGaussians, mahalanobis, mahalanobis_loop, nearest_wrong_class, tukey
from unlearnbench.unlearn.loops import draw_random_labels
from unlearnbench.unlearn.losses import distill_kl
from unlearnbench.unlearn.scar import forget_term, retain_term, selective_teacher
from unlearnbench.unlearn.scrub import lr_factor, max_step_loss, min_step_loss

# ============================================================================ SCAR: nearest wrong class

# Three class Gaussians with non-contiguous ids (the forgotten classes are missing from the list, so
# an index into `classes` is not a class id), unit-norm means and identity precisions: the modified
# Mahalanobis distance is then the squared Euclidean distance of the L2-normalised feature.
HAND = ClassGaussians(
    classes=torch.tensor([0, 2, 5]),
    means=torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]),
    precisions=torch.eye(2).repeat(3, 1, 1),
)


def test_mahalanobis_on_hand_gaussians():
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalised: (1, 0) and (0, 1)
    expected = torch.tensor([[0.0, 2.0, 0.16 + 0.64], [2.0, 0.0, 0.36 + 0.04]])
    torch.testing.assert_close(mahalanobis(z, HAND), expected)


def test_nearest_wrong_class_on_a_hand_distance_matrix():
    d = torch.tensor([
        [0.1, 0.5, 0.9],  # label 0 is nearest: skip it -> index 1 (class 2); the farthest would be index 2
        [0.7, 0.2, 0.4],  # label 2 (index 1) nearest: skip it -> index 2 (class 5)
        [0.3, 0.6, 0.8],  # label 5 (index 2) is the farthest: the nearest, index 0, is already wrong
        [0.9, 0.8, 0.1],  # label 1 has no Gaussian (a forgotten class): plain nearest, index 2
    ])
    labels = torch.tensor([0, 2, 5, 1])
    q = nearest_wrong_class(d, HAND, labels)
    assert q.tolist() == [1, 2, 0, 2]
    assert HAND.classes[q].tolist() == [2, 5, 0, 5]


def test_forget_term_pulls_towards_the_nearest_wrong_class_with_weights():
    z = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 2])
    q = nearest_wrong_class(mahalanobis(z, HAND), HAND, labels)
    assert HAND.classes[q].tolist() == [5, 5]  # distances 0.8 and 0.4 (not the own class, not the farthest 2.0)
    assert forget_term(z, HAND, q).item() == pytest.approx((0.8 + 0.4) / 2)
    # zero-weight rows still count in the mean (the reference averages w·d over the whole batch)
    assert forget_term(z, HAND, q, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.8 / 2)
    assert forget_term(z, HAND, q, torch.tensor([0.5, 0.9])).item() == pytest.approx((0.5 * 0.8 + 0.9 * 0.4) / 2)


def _spy(monkeypatch, module, name):
    """Replace module.name by a wrapper that records its arguments and calls the original."""
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


SCAR_FAST = {"epochs": 1, "steps_per_forget_batch": 2, "ood_size": 256, "ood_batch_size": 64, "min_epochs": 0,
             "stop_forget_acc": 0.0}


@pytest.mark.parametrize("fixture", ["digits_class3", "digits_random"])
def test_scar_targets_each_forget_sample_at_its_nearest_wrong_class(monkeypatch, request, fixture, digits_cnn,
                                                                     small_ood):
    calls = _spy(monkeypatch, scar_mod, "forget_term")
    forget = request.getfixturevalue(fixture)
    data = dataclasses.replace(forget, extras={"ood": small_ood})
    run("scar", digits_cnn, data, {**SCAR_FAST, "class_weighting": False}, device="cpu")
    (z, gauss, q, weights), _ = calls[0]
    assert weights is None
    # class-wise: the forgotten class is no target; random: every class is, the own one excluded per sample
    assert (3 not in gauss.classes.tolist()) == (fixture == "digits_class3")
    # independent answer: the original's transformed features of the (unshuffled) forget set, distances by
    # explicit loops, then the first class in order of distance that is not the sample's own label
    x, y = next(iter(Loader(forget.forget, 1024)))
    with torch.no_grad():
        d = mahalanobis_loop(tukey(digits_cnn.features(x), 0.5), gauss)
    expected = []
    for row, label in zip(d, y.tolist(), strict=True):
        order = torch.argsort(row).tolist()
        expected.append(next(k for k in order if gauss.classes[k].item() != label))
    assert q.tolist() == expected
    if fixture == "digits_random":  # the original puts most forget samples nearest their own class
        assert (gauss.classes[d.argmin(1)] == y).float().mean() > 0.5
    assert all(len(c[0][2]) == len(expected) for c in calls)  # every step pulls the same targets


# ============================================================================ SCAR: selective teacher


TEACHER = torch.tensor([
    [1.0, 5.0, 0.0],  # predicts the forgotten class 1: dropped
    [3.0, -0.5, 2.0],  # kept; holds the minimum of the kept rows (-0.5)
    [0.25, 2.0, 4.0],  # kept
    [-1.0, 9.0, 1.0],  # predicts class 1: dropped (its -1 must not become the minimum)
])


def test_selective_teacher_on_hand_logits():
    keep, t = selective_teacher(TEACHER, (1,))
    assert keep.tolist() == [False, True, True, False]
    assert torch.equal(t, torch.tensor([[3.0, -0.5, 2.0], [0.25, -0.5, 4.0]]))
    # random forgetting: no class is forgotten, the teacher is used as is
    keep, t = selective_teacher(TEACHER, ())
    assert bool(keep.all()) and torch.equal(t, TEACHER)


def _kl_by_hand(student_rows, teacher_rows):
    """KL(softmax(t) ‖ softmax(s)) averaged over rows, written out with math."""
    total = 0.0
    for s, t in zip(student_rows.tolist(), teacher_rows.tolist(), strict=True):
        zs, zt = sum(math.exp(v) for v in s), sum(math.exp(v) for v in t)
        total += sum(math.exp(b) / zt * ((b - math.log(zt)) - (a - math.log(zs))) for a, b in zip(s, t, strict=True))
    return total / len(student_rows)


def test_scar_retain_term_distils_only_the_selective_teacher():
    student = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [1.0, -2.0, 0.0]])
    T = 2.0
    got = retain_term(nn.Identity(), student, TEACHER, (1,), T).item()
    kept = torch.tensor([[3.0, -0.5, 2.0], [0.25, -0.5, 4.0]]) / T
    assert got == pytest.approx(_kl_by_hand(student[[1, 2]], kept), rel=1e-5)
    assert retain_term(nn.Identity(), student, TEACHER, (), 1.0).item() == pytest.approx(
        _kl_by_hand(student, TEACHER), rel=1e-5)
    assert retain_term(nn.Identity(), student[:1], TEACHER[:1], (1,), 1.0) is None  # nothing kept


@pytest.mark.parametrize("fixture, forgotten", [("digits_class3", (3,)), ("digits_random", ())])
def test_scar_uses_the_selective_teacher_every_step(monkeypatch, request, fixture, forgotten, digits_cnn, small_ood):
    calls = _spy(monkeypatch, scar_mod, "retain_term")
    data = dataclasses.replace(request.getfixturevalue(fixture), extras={"ood": small_ood})
    cfg = {**SCAR_FAST, "stop_margin": None} if fixture == "digits_random" else SCAR_FAST
    run("scar", digits_cnn, data, cfg, device="cpu")
    assert len(calls) == 2  # one forget batch x 2 steps
    assert all(args[3] == forgotten and args[4] == 1.0 for args, _ in calls)


# ============================================================================ random labels

C = 10


def test_uniform_random_labels_keep_the_true_label_one_time_in_c():
    y = torch.arange(20_000) % C
    lab = draw_random_labels(y, C, torch.Generator().manual_seed(0))
    share = (lab == y).float().mean().item()
    sd = math.sqrt((1 / C) * (1 - 1 / C) / len(y))
    assert abs(share - 1 / C) < 5 * sd  # ~0.1, as torch.randint(0, C) in Unlearn-Saliency's RL.py
    counts = torch.bincount(lab, minlength=C).float()
    assert ((counts - len(y) / C).abs() < 5 * math.sqrt(len(y) / C)).all()  # uniform over all C classes
    # pinned: exactly the reference's draw from the same generator state
    ref = torch.randint(0, C, y.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lab, ref)


def test_wrong_random_labels_never_keep_the_true_label_and_are_uniform_otherwise():
    y = torch.full((18_000,), 3)
    lab = draw_random_labels(y, C, torch.Generator().manual_seed(1), exclude_true=True)
    assert not bool((lab == y).any())
    counts = torch.bincount(lab, minlength=C).float()
    others = counts[torch.arange(C) != 3]
    assert ((others - len(y) / (C - 1)).abs() < 5 * math.sqrt(len(y) / (C - 1))).all()


def _captured_phases(monkeypatch, module):
    seen = []

    def fake_run_epochs(model, phases, **kwargs):
        seen.append((list(phases), kwargs))
        return []

    monkeypatch.setattr(module, "run_epochs", fake_run_epochs)
    return seen


@pytest.mark.parametrize("labels, expected_share", [("uniform", 1 / C), ("wrong", 0.0)])
def test_random_label_method_draws_what_its_config_says(monkeypatch, labels, expected_share, digits_cnn, digits_class3):
    import unlearnbench.unlearn.random_label as rl

    seen = _captured_phases(monkeypatch, rl)
    run("random_label", digits_cnn, digits_class3, {"labels": labels}, device="cpu")
    (forget, retain), _ = seen[0]
    assert forget.data is not None and forget.name == "forget" and retain.relabel is None
    y = torch.arange(20_000) % C
    share = (forget.relabel(y, torch.Generator().manual_seed(2)) == y).float().mean().item()
    assert share == pytest.approx(expected_share, abs=0.012)


@pytest.mark.parametrize("labels, expected_share", [("uniform", 1 / C), ("wrong", 0.0)])
def test_mixed_random_label_draws_what_its_config_says(monkeypatch, labels, expected_share, digits_cnn, digits_class3):
    import unlearnbench.unlearn.random_label as rl

    seen = _captured_phases(monkeypatch, rl)
    run("random_label", digits_cnn, digits_class3, {"labels": labels, "mixed": True, "epochs": 40}, device="cpu")
    assert len(seen) == 40  # one fresh draw per epoch
    n_f = len(digits_class3.forget)
    drawn = torch.cat([phases[0].data.y[:n_f] for phases, _ in seen])
    share = (drawn == digits_class3.forget.y.repeat(40)).float().mean().item()
    assert share == pytest.approx(expected_share, abs=0.03)  # 40 x 124 draws: sd 0.004
    assert not torch.equal(seen[0][0][0].data.y[:n_f], seen[1][0][0].data.y[:n_f])


# ============================================================================ SCRUB


def test_distill_kl_carries_the_t_squared_factor():
    s = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    t = torch.tensor([[math.log(3.0), 0.0], [0.0, 2.0]])
    for T in (1.0, 2.0, 4.0):
        by_hand = _kl_by_hand(s / T, t / T) * T * T
        assert distill_kl(s, t, T).item() == pytest.approx(by_hand, rel=1e-5)
    # the factor matters: at T = 4 the softened KL alone is 16 times smaller
    assert distill_kl(s, t, 4.0).item() == pytest.approx(16 * _kl_by_hand(s / 4, t / 4), rel=1e-5)


def test_scrub_step_losses_have_the_right_signs_and_terms():
    s = torch.tensor([[0.3, -0.2, 1.0], [0.0, 2.0, -1.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    y = torch.tensor([2, 1])
    assert max_step_loss(s, t, 4.0).item() == pytest.approx(-distill_kl(s, t, 4.0).item())
    assert max_step_loss(s, t, 4.0).item() < 0
    got = min_step_loss(s, t, y, gamma=0.99, alpha=0.5, temperature=2.0).item()
    assert got == pytest.approx(0.99 * F.cross_entropy(s, y).item() + 0.5 * distill_kl(s, t, 2.0).item())


def test_scrub_max_step_moves_away_from_the_teacher_and_min_step_towards_it():
    torch.manual_seed(0)
    x = torch.randn(32, 5)
    teacher = nn.Linear(5, 4)
    y = teacher(x).argmax(1)
    for loss_fn, direction in [(lambda s, t: max_step_loss(s, t, 4.0), +1),
                               (lambda s, t: min_step_loss(s, t, y, gamma=0.0, alpha=1.0, temperature=4.0), -1)]:
        student = copy.deepcopy(teacher)
        with torch.no_grad():
            for p in student.parameters():
                p.add_(0.3 * torch.randn_like(p))
        with torch.no_grad():
            before = distill_kl(student(x), teacher(x), 4.0).item()
        opt = torch.optim.SGD(student.parameters(), lr=0.5)
        opt.zero_grad()
        loss_fn(student(x), teacher(x).detach()).backward()
        opt.step()
        with torch.no_grad():
            after = distill_kl(student(x), teacher(x), 4.0).item()
        assert direction * (after - before) > 0


def test_scrub_lr_decay_follows_the_reference_schedule():
    """The reference's ``adjust_learning_rate`` with its CIFAR-10 decay epochs (3, 5, 9) and rate
    0.1, which are also the defaults: lr x 0.1 after epochs 3, 5 and 9."""
    cfg = build_config("scrub")
    assert [lr_factor(e, cfg.lr_decay_epochs, cfg.lr_decay_rate) for e in range(1, 11)] == pytest.approx(
        [1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001])


def test_scrub_runs_max_steps_then_min_steps_for_msteps_epochs(monkeypatch, digits_cnn, digits_class3):
    order = []
    for name, tag in [("max_step_loss", "max"), ("min_step_loss", "min")]:
        original = getattr(scrub_mod, name)

        def record(*args, _orig=original, _tag=tag, **kwargs):
            order.append(_tag)
            return _orig(*args, **kwargs)

        monkeypatch.setattr(scrub_mod, name, record)
    run("scrub", digits_cnn, digits_class3, {"epochs": 3, "msteps": 2, "batch_size": 256,
                                             "forget_batch_size": 64}, device="cpu")
    n_f = -(-len(digits_class3.forget) // 64)
    n_r = -(-len(digits_class3.retain) // 256)
    epoch = ["max"] * n_f + ["min"] * n_r
    assert order == epoch + epoch + ["min"] * n_r


# ============================================================================ SSD


def test_ssd_dampening_factors_on_hand_importances():
    from unlearnbench.unlearn.ssd import dampening_factors

    imp_d = torch.tensor([1.0, 1.0, 2.0, 1.0, 0.0])
    imp_f = torch.tensor([20.0, 5.0, 80.0, 10.0, 0.0])
    # alpha 10: selected where imp_f > 10 imp_d -> entries 0 (20 > 10) and 2 (80 > 20); not 1 (5 < 10),
    # not 3 (10 = 10, the comparison is strict), not 4 (no importance anywhere)
    f = dampening_factors(imp_d, imp_f, alpha=10.0, dampening=1.0)
    torch.testing.assert_close(f, torch.tensor([1 / 20, 1.0, 2 / 80, 1.0, 1.0]))
    f = dampening_factors(imp_d, imp_f, alpha=10.0, dampening=30.0)  # lambda imp_d / imp_f, capped at 1
    torch.testing.assert_close(f, torch.tensor([1.0, 1.0, 60 / 80, 1.0, 1.0]))


def _two_pixel_set(pixels: list[tuple[int, int]], labels: list[int], start: int = 0):
    from unlearnbench.core.data import TensorSet

    x = torch.tensor(pixels, dtype=torch.uint8).view(-1, 1, 1, 2)
    return TensorSet(x, torch.tensor(labels), torch.arange(start, start + len(labels)))


@pytest.mark.parametrize("alpha, dampening, expected", [(3.0, 1.0, 0.25), (5.0, 1.0, 1.0), (3.0, 2.0, 0.5),
                                                         (3.0, 8.0, 1.0)])
def test_ssd_selects_and_dampens_exactly_the_forget_only_weights(alpha, dampening, expected):
    """Two linear layers with a diagonal first layer: forget images light pixel 0 only, retain images
    pixel 1 only, so column 0 of both layers gets gradient from forget samples only and column 1 from
    retain samples only. With batches of one, []_Df / []_D = N / N_f = 8 / 2 = 4 exactly: the
    forget-only weights are selected iff 4 > α and are multiplied by min(λ/4, 1); the others stay."""
    from types import SimpleNamespace

    from unlearnbench.unlearn.ssd import SSDConfig, ssd

    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False), nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.5, 0.0], [0.0, -0.7]]))
        model[2].weight.copy_(torch.tensor([[0.4, -0.3], [-0.2, 0.9], [0.3, 0.1]]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    forget = _two_pixel_set([(255, 0)] * 2, [0, 0])
    retain = _two_pixel_set([(0, 255)] * 6, [1, 2, 1, 2, 1, 1], start=2)
    ssd(model, SimpleNamespace(forget=forget, retain=retain), SSDConfig(alpha=alpha, dampening=dampening, batch_size=1))
    w1, w2 = model[1].weight.detach(), model[2].weight.detach()
    torch.testing.assert_close(w1[:, 0], before["1.weight"][:, 0] * expected)
    torch.testing.assert_close(w2[:, 0], before["2.weight"][:, 0] * expected)
    assert torch.equal(w1[:, 1], before["1.weight"][:, 1]) and torch.equal(w2[:, 1], before["2.weight"][:, 1])


def test_ssd_importances_are_mean_squared_batch_gradients():
    from unlearnbench.unlearn.ssd import importances

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    data = _two_pixel_set([(10, 200), (90, 30), (255, 0), (0, 0)], [0, 2, 1, 2])
    imp = importances(model, data, batch_size=1, generator=torch.Generator().manual_seed(0))
    # closed form for a linear softmax layer: dCE/dW = (p − e_y) xᵀ, dCE/db = p − e_y
    x = data.x.float().view(4, 2) / 255
    p = torch.softmax(model(data.x.float() / 255), 1).detach()
    delta = p - F.one_hot(data.y, 3).float()
    torch.testing.assert_close(imp["1.weight"], (delta[:, :, None] * x[:, None, :]).pow(2).mean(0))
    torch.testing.assert_close(imp["1.bias"], delta.pow(2).mean(0))


# ============================================================================ Bad Teacher


def test_bad_teacher_target_follows_the_flag_per_row():
    from unlearnbench.unlearn.bad_teacher import teacher_target

    good = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    bad = torch.tensor([[0.0, 3.0], [5.0, 0.0], [0.0, 0.0]])
    flag = torch.tensor([1, 0, 1])
    out = teacher_target(good, bad, flag, 2.0)
    torch.testing.assert_close(out[0], torch.softmax(bad[0] / 2, 0))
    torch.testing.assert_close(out[1], torch.softmax(good[1] / 2, 0))
    torch.testing.assert_close(out[2], torch.tensor([0.5, 0.5]))


def test_bad_teacher_mixes_every_forget_row_with_a_retain_fraction_and_flags_them(monkeypatch, digits_cnn,
                                                                                   digits_class3):
    import unlearnbench.unlearn.bad_teacher as bt
    from unlearnbench.unlearn.base import reinitialize
    from unlearnbench.unlearn.losses import kl_from_probs

    seen = _captured_phases(monkeypatch, bt)
    out = run("bad_teacher", digits_cnn, digits_class3, {"temperature": 2.0, "retain_fraction": 0.3}, seed=5,
              device="cpu")
    (phase,), _ = seen[0]
    forget_idx = set(digits_class3.forget.idx.tolist())
    retain_idx = set(digits_class3.retain.idx.tolist())
    flags = {int(i): int(f) for i, f in zip(phase.data.idx, phase.data.y, strict=True)}
    assert {i for i, f in flags.items() if f == 1} == forget_idx  # every forget row, flagged
    picked = {i for i, f in flags.items() if f == 0}
    assert picked <= retain_idx and len(picked) == int(0.3 * len(retain_idx))
    # the loss: KL to the random teacher (reinitialised with seed + 1) on forget rows, to the original elsewhere
    rows = torch.arange(len(forget_idx) - 20, len(forget_idx) + 20)  # the set lists forget rows first
    x = phase.data.x[rows].float() / 255
    flag = phase.data.y[rows]
    assert int(flag.sum()) == 20  # a batch with both kinds of rows
    student = out.model  # unchanged: training was skipped
    bad = reinitialize(digits_cnn, 5 + 1).eval()
    with torch.no_grad():
        target = torch.where(flag[:, None] == 1, torch.softmax(bad(x) / 2, 1), torch.softmax(digits_cnn(x) / 2, 1))
        expected = kl_from_probs(student(x) / 2, target).item()
        got = phase.loss(student, x, flag, 0).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert expected > 0.05  # the random teacher disagrees with the student on the forget rows


# ============================================================================ Boundary Shrink


def test_fgsm_neighbour_label_on_a_hand_linear_model():
    """f(x) = Wx + b on two pixels. For x = (128, 128)/255 and y = 0 the CE gradient is
    Wᵀ(p − e_0) = (−0.50, +0.50)·…: the FGSM point moves pixel 0 down and pixel 1 up by the bound,
    where class 1 wins. For x = (0, 1), y = 1 the neighbour stays in class 1 (never forced to differ)."""
    from unlearnbench.unlearn.boundary_shrink import fgsm_neighbour_labels

    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]))
        model[1].bias.copy_(torch.tensor([0.01, 0.0, 0.0]))
    x = torch.tensor([[128.0, 128.0], [0.0, 255.0]]).view(2, 1, 1, 2) / 255
    y = torch.tensor([0, 1])
    assert model(x).argmax(1).tolist() == [0, 1]
    assert fgsm_neighbour_labels(model, x, y, 0.1).tolist() == [1, 1]
    assert fgsm_neighbour_labels(model, x, y, 0.3).tolist() == [1, 1]
    # a bound too small to cross: x0 = 0.502 - 0.005 stays above x1 + 0.005 - 0.01
    assert fgsm_neighbour_labels(model, x, y, 0.002).tolist() == [0, 1]


def test_boundary_shrink_fgsm_point_is_on_the_8_bit_grid():
    """The FGSM neighbour is judged as an image: clip(x + bound·sign ∇ₓ) rounded to the 1/255 grid."""
    from unlearnbench.unlearn.boundary_shrink import fgsm_neighbour_labels

    class Recording(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.seen = nn.Linear(2, 3), []

        def forward(self, x):
            self.seen.append(x.detach().clone())
            return self.lin(x.flatten(1))

    torch.manual_seed(0)
    model = Recording()
    with torch.no_grad():
        model.lin.weight[:, 1] = 0.0  # pixel 1 has no gradient: sign 0, it stays where it is
    x = torch.tensor([[17.0, 200.0], [128.0, 3.0], [250.0, 90.0]]).view(3, 1, 1, 2) / 255
    y = torch.tensor([0, 1, 2])
    bound = 0.1234  # 31.47 grey levels: off the grid before rounding
    fgsm_neighbour_labels(model, x, y, bound)
    xr = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(model.lin(xr.flatten(1)), y), xr)
    levels = ((x + bound * grad.sign()).clamp(0, 1) * 255).round()
    assert torch.equal(model.seen[-1], levels / 255)
    assert not torch.equal(levels / 255, (x + bound * grad.sign()).clamp(0, 1))
    assert torch.equal(model.seen[-1][..., 1], x[..., 1])


def test_boundary_shrink_trains_on_the_fgsm_neighbour_labels(monkeypatch, digits_cnn, digits_class3):
    import unlearnbench.unlearn.boundary_shrink as bs

    seen = _captured_phases(monkeypatch, bs)
    run("boundary_shrink", digits_cnn, digits_class3, {"bound": 0.15}, device="cpu")
    (phase,), _ = seen[0]
    assert phase.data is not None and len(phase.data) == len(digits_class3.forget)
    x = digits_class3.forget.x.float() / 255
    y = digits_class3.forget.y
    # independent FGSM on the original: x + bound·sign(∇ₓ CE(f(x), y)), clipped, on the 8-bit grid
    xr = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(digits_cnn(xr), y), xr)
    x_adv = (x + 0.15 * grad.sign()).clamp(0, 1).mul(255).round().div(255)
    with torch.no_grad():
        y_adv = digits_cnn(x_adv).argmax(1)
        assert bool((y_adv != y).any())  # the neighbour labels differ from the true ones for some rows
        student = copy.deepcopy(digits_cnn)
        expected = F.cross_entropy(student(x), y_adv).item()
    got = phase.loss(student, x, y, 0).item()
    assert got == pytest.approx(expected, rel=1e-5)


# ============================================================================ Influence (IU)


def test_influence_update_equals_a_plain_per_sample_loop():
    """IU on a linear softmax model, against the reference's arithmetic written out with one autograd
    call per sample: v = Σ_f g / N − (n_f / (N n_r)) Σ_r g, the rank-one WoodFisher recursion over
    the first ``hessian_samples`` retain samples (o = g₀; k −= (k·g / (N₀ + o·g)) o; o −= (o·g /
    (N₀ + o·g)) o) and θ ← θ + α k. Batches of 2 over 3 forget and 5 retain samples, so a last
    batch of one row checks that batch means are weighted by their size."""
    from types import SimpleNamespace

    from unlearnbench.unlearn.influence import InfluenceConfig, influence

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 3))
    forget = _two_pixel_set([(200, 10), (180, 40), (255, 0)], [0, 0, 1])
    retain = _two_pixel_set([(10, 200), (90, 30), (0, 0), (30, 250), (120, 120)], [2, 1, 2, 1, 0], start=3)
    theta = [p.detach().clone() for p in model.parameters()]

    def grads(ts):
        out = []
        for i in range(len(ts)):
            model.zero_grad()
            F.cross_entropy(model(ts.x[i : i + 1].float() / 255), ts.y[i : i + 1]).backward()
            out.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        return torch.stack(out)

    g_f, g_r = grads(forget), grads(retain)
    n_f, n_r, alpha, fisher_n = 3, 5, 0.7, 0.5  # o·g: -0.28, 1.79, -0.27 (both signs, |o·g| < N₀ too)
    v = g_f.sum(0) / 8 - g_r.sum(0) * n_f / (8 * n_r)
    k, o = v.clone(), g_r[0].clone()
    for g in g_r[1:4]:  # hessian_samples = 4: samples 1..3 update k and o
        tmp = float(o @ g)
        k = k - (float(k @ g) / (fisher_n + tmp)) * o
        o = o - (tmp / (fisher_n + tmp)) * o
    assert float(k.norm()) > 1.5 * float(v.norm())  # the recursion matters here, not just v
    expected = torch.cat([t.flatten() for t in theta]) + alpha * k

    model.zero_grad(set_to_none=True)
    cfg = InfluenceConfig(alpha=alpha, hessian_samples=4, fisher_n=fisher_n, batch_size=2)
    pruned = copy.deepcopy(model)
    influence(model, SimpleNamespace(forget=forget, retain=retain, extras={}), cfg)
    got = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

    # with a pruning mask the masked weights keep their value, the others take the same step
    from unlearnbench.unlearn.base import PRUNE_MASK_KEY

    keep = torch.tensor([[True, False], [False, True], [True, True]])
    influence(pruned, SimpleNamespace(forget=forget, retain=retain, extras={PRUNE_MASK_KEY: {"1.weight": keep}}), cfg)
    w = pruned[1].weight.detach()
    torch.testing.assert_close(w[keep], expected[:6].view(3, 2)[keep], rtol=1e-4, atol=1e-5)
    assert torch.equal(w[~keep], theta[0][~keep])
    torch.testing.assert_close(pruned[1].bias.detach(), expected[6:], rtol=1e-4, atol=1e-5)


# ============================================================================ Gradient ascent (GA)


@pytest.mark.parametrize(("stop", "forget_accs", "epochs_run"), [
    (15.0, [40.0, 15.0, 3.0], 2),  # at the threshold counts as reached ("falls to 15 %")
    (15.0, [40.0, 15.1, 3.0], 3),
    (14.9, [15.0, 15.0, 15.0, 15.0], 4),
    (None, [0.0, 0.0, 0.0], 3),  # no stop rule: the forget accuracy is never even measured
])
def test_grad_ascent_stops_after_the_first_epoch_at_or_below_the_target(monkeypatch, digits_cnn, digits_class3, stop,
                                                                          forget_accs, epochs_run):
    import unlearnbench.unlearn.grad_ascent as ga

    measured, steps = [], []
    monkeypatch.setattr(ga, "accuracy", lambda m, d: measured.append(len(d)) or forget_accs[len(measured) - 1])
    real_ce = ga.F.cross_entropy
    monkeypatch.setattr(ga.F, "cross_entropy", lambda *a, **k: steps.append(1) or real_ce(*a, **k))
    cfg = build_config("grad_ascent", {"epochs": len(forget_accs) if stop is not None else 3, "stop_forget_acc": stop,
                                       "batch_size": 1024, "augment": False, "amp": False})
    ga.grad_ascent(copy.deepcopy(digits_cnn), digits_class3, cfg)
    assert len(steps) == epochs_run  # one batch per epoch
    assert measured == ([len(digits_class3.forget)] * epochs_run if stop is not None else [])


# ============================================================================ Retrain


@pytest.mark.parametrize("schedule", ["multistep", "cosine"])
def test_retrain_steps_its_schedule_over_the_whole_run_with_its_smoothing_and_nesterov(monkeypatch, digits_cnn,
                                                                                      digits_class3, schedule):
    """The lr multiplier per optimizer step, by hand: ceil(n_retain / batch) steps per epoch (the last
    batch is kept), warm-up over the first int(warmup · total) steps, then ×gamma at each
    int(milestone · total) or a half cosine; the loss is CE with the label smoothing; SGD nesterov."""
    import unlearnbench.unlearn.retrain as rt

    loops, optimizers = [], []
    real_opt = rt.make_optimizer
    monkeypatch.setattr(rt, "make_optimizer", lambda m, *a, **k: optimizers.append(k) or real_opt(m, *a, **k))
    monkeypatch.setattr(rt, "run_epochs", lambda model, phases, **k: loops.append((list(phases), k)) or [])
    cfg = build_config("retrain", {"epochs": 4, "batch_size": 100, "schedule": schedule, "milestones": (0.3, 0.6),
                                   "gamma": 0.2, "warmup": 0.2, "label_smoothing": 0.25, "nesterov": True})
    rt.retrain(copy.deepcopy(digits_cnn), digits_class3, cfg)
    (phase,), kw = loops[0]
    n = len(digits_class3.retain)
    assert n % 100 != 0  # a partial last batch: it counts as a step
    total = 4 * (n // 100 + 1)
    warm = int(0.2 * total)
    for step in range(total):
        if step < warm:
            want = (step + 1) / warm
        elif schedule == "multistep":
            want = 0.2 ** ((step >= int(0.3 * total)) + (step >= int(0.6 * total)))
        else:
            want = 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
        assert kw["schedule"](step) == pytest.approx(want), step
    assert optimizers[0]["nesterov"] is True
    torch.manual_seed(0)
    logits, y = torch.randn(5, 10), torch.tensor([0, 3, 3, 9, 1])

    class Fixed(nn.Module):
        def forward(self, x):
            return logits

    assert phase.loss(Fixed(), torch.zeros(5), y, 0).item() == pytest.approx(
        F.cross_entropy(logits, y, label_smoothing=0.25).item())


# ============================================================================ RL order


def _marked(data):
    """``data`` with pixel (0, 0, 0) set to 255 on forget images and 0 on retain images."""
    def mark(s, value):
        x = s.x.clone()
        x[:, 0, 0, 0] = value
        return dataclasses.replace(s, x=x)

    return dataclasses.replace(data, forget=mark(data.forget, 255), retain=mark(data.retain, 0))


@pytest.mark.parametrize("mixed", [False, True])
def test_random_label_order_sequential_or_mixed(mixed, digits_cnn, digits_class3):
    batches = []  # per training batch: how many forget rows it held, and its size

    def record(module, args):
        if module.training:
            x = args[0]
            batches.append((int((x[:, 0, 0, 0] == 1.0).sum()), len(x)))

    data = _marked(digits_class3)
    model = copy.deepcopy(digits_cnn)
    handle = model.register_forward_pre_hook(record)
    try:
        run("random_label", model, data, {"epochs": 2, "mixed": mixed, "augment": False, "batch_size": 64},
            device="cpu")
    finally:
        handle.remove()
    n_f, n_r = len(data.forget), len(data.retain)
    assert sum(f for f, _ in batches) == 2 * n_f and sum(n for _, n in batches) == 2 * (n_f + n_r)
    if not mixed:  # each epoch: all forget batches, then all retain batches, never both in one batch
        f_b, r_b = -(-n_f // 64), -(-n_r // 64)
        kinds = ["F" if f == n else "R" if f == 0 else "both" for f, n in batches]
        assert kinds == (["F"] * f_b + ["R"] * r_b) * 2
    else:  # one shuffled loader: forget rows are spread over the batches, mixed with retain rows
        assert sum(1 for f, n in batches if 0 < f < n) >= 0.5 * len(batches)


@pytest.mark.parametrize("mixed", [False, True])
def test_random_label_augments_exactly_when_configured(mixed, digits_cnn, digits_class3, monkeypatch):
    """``augment: false`` means no crop/flip on any batch, in both loops; ``true`` augments every
    batch (the data says how: here a 1-pixel crop padding, which digits itself does not use)."""
    import unlearnbench.core.data.loader as loader_mod

    calls = []
    real = loader_mod.augment_batch

    def spy(x, *args, **kwargs):
        calls.append(len(x))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(loader_mod, "augment_batch", spy)
    info = dataclasses.replace(digits_class3.info, crop_padding=1)
    data = dataclasses.replace(digits_class3, info=info, retain=digits_class3.retain.select(torch.arange(128)))
    for augment in (False, True):
        calls.clear()
        run("random_label", digits_cnn, data, {"epochs": 1, "mixed": mixed, "augment": augment}, device="cpu")
        assert sum(calls) == (len(data.forget) + len(data.retain) if augment else 0), (mixed, augment)


def test_random_label_defaults_are_the_reference_protocol():
    """SalUn's RL (``unlearn/RL.py`` + arg_parser): 10 unlearning epochs, SGD momentum 0.9, weight
    decay 5e-4, labels uniform over all classes, forget pass then retain pass (not mixed); the
    adversarial retain batches (--adv-retain) take 10 PGD steps."""
    from unlearnbench.unlearn import build_config

    cfg = build_config("random_label", {})
    assert (cfg.epochs, cfg.momentum, cfg.weight_decay, cfg.labels, cfg.mixed) == (10, 0.9, 5e-4, "uniform", False)
    assert (cfg.lr, cfg.batch_size, cfg.adv_steps) == (0.05, 64, 10)  # the docstring's digits-sized defaults


def test_scar_defaults_are_the_reference_protocol():
    """SCAR's ``src/opts.py`` (HEAD) and loop (docs: shared reference notes, SCAR §1.4): forget
    batches of 1024, Adam without weight decay, T 1, λ₁ 1, λ₂ 5, Tukey δ 0.5, γ₁ = γ₂ 3,
    num_retain_samp + 1 = 6 steps per forget batch, stop no earlier than after epoch 2, random
    forgetting's margin 1.5 points and class-weight threshold 0.8 (CIFAR); the digits-sized lr 1e-3,
    OOD batches of 128 from 2,048 images and at most 10 epochs are the module docstring's."""
    from unlearnbench.unlearn import build_config

    cfg = build_config("scar", {})
    assert (cfg.batch_size, cfg.weight_decay, cfg.temperature, cfg.lambda_1, cfg.lambda_2) == (1024, 0.0, 1.0, 1.0, 5.0)
    assert (cfg.delta, cfg.gamma1, cfg.gamma2, cfg.steps_per_forget_batch, cfg.min_epochs) == (0.5, 3.0, 3.0, 6, 2)
    assert (cfg.stop_margin, cfg.weight_threshold, cfg.stop_forget_acc, cfg.stop_on) == (1.5, 0.8, None, "val")
    assert (cfg.lr, cfg.ood_batch_size, cfg.ood_size, cfg.epochs, cfg.ood) == (1e-3, 128, 2048, 10, "synthetic")
    assert (cfg.stats_source, cfg.nearest_class_quirk, cfg.class_weighting, cfg.ood_balance) == ("retain", False, True, None)
    assert (cfg.augment, cfg.freeze_bn, cfg.amp) == (True, False, True)


def test_scar_self_defaults_are_the_documented_ones():
    """scar_self's docstring: lr 1.5e-3, λ₁ 5, λ₂ 15, two passes over 4,096 synthetic images in
    batches of 128, no temperature (1, as released), BatchNorm frozen, no proxy stop by default."""
    from unlearnbench.unlearn import build_config

    cfg = build_config("scar_self", {})
    assert (cfg.lr, cfg.lambda_1, cfg.lambda_2, cfg.epochs, cfg.ood_size, cfg.batch_size) == (1.5e-3, 5.0, 15.0, 2, 4096, 128)
    assert (cfg.temperature, cfg.freeze_bn, cfg.stop_proxy_acc, cfg.min_epochs, cfg.weight_decay) == (1.0, True, None, 1, 0.0)
    assert (cfg.delta, cfg.gamma1, cfg.gamma2, cfg.stats_source, cfg.ood, cfg.augment) == (0.5, 3.0, 3.0, "retain", "synthetic", True)
    assert cfg.amp is True
    # it never reads the forget set; the class statistics' source is read unless it is the OOD set itself
    assert [build_config("scar_self", {"stats_source": s}).reads() for s in ("retain", "val", "ood")] == [
        ("ood", "retain"), ("ood", "val"), ("ood",)]


def test_salun_defaults_are_the_reference_protocol():
    """SalUn (``generate_mask.py`` + ``main_random.py``): the top-50 % mask (``with_0.5.pt``) from
    forget batches of 256 (the wrapper's batch size), today's mask generation and exact freezing,
    SGD momentum 0.9 and weight decay 5e-4, 10 epochs, forget pass then retain pass; the 2023
    mask-generation lr is the script's --unlearn_lr default 0.01; lr 0.05 and batch 64 are the
    docstring's digits-sized defaults."""
    from unlearnbench.unlearn import build_config

    cfg = build_config("salun", {})
    assert (cfg.mask_ratio, cfg.mask_batch_size, cfg.mask_generation, cfg.mask_mode, cfg.mask_lr) == (0.5, 256, "current", "exact", 0.01)
    assert (cfg.momentum, cfg.weight_decay, cfg.epochs, cfg.mixed, cfg.lr, cfg.batch_size) == (0.9, 5e-4, 10, False, 0.05, 64)
    assert (cfg.augment, cfg.adv_eps, cfg.adv_steps, cfg.amp) == (True, None, 10, True)


def test_l1_sparse_and_prune_defaults_are_the_documented_ones():
    """ℓ1-sparse: today's linear α schedule with no unpenalised tail, SGD momentum 0.9 and weight
    decay 5e-4 kept on (as the reference), 10 epochs; α 1e-3, lr 0.05, batch 64 for the digits cnn
    (docstring). prune: the paper's 0.95 sparsity, fine-tuning (no rewind) for 10 epochs at lr 0.02."""
    from unlearnbench.unlearn import build_config

    cfg = build_config("l1_sparse", {})
    assert (cfg.alpha_schedule, cfg.no_l1_epochs, cfg.alpha, cfg.momentum, cfg.weight_decay) == ("linear", 0, 1e-3, 0.9, 5e-4)
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.augment, cfg.adv_eps, cfg.adv_steps) == (10, 0.05, 64, True, None, 10)
    assert cfg.amp is True  # bf16 autocast on CUDA only
    cfg = build_config("prune", {})
    assert (cfg.sparsity, cfg.rewind, cfg.epochs, cfg.lr, cfg.batch_size) == (0.95, False, 10, 0.02, 64)
    assert (cfg.momentum, cfg.weight_decay, cfg.augment, cfg.adv_eps, cfg.adv_steps, cfg.amp) == (0.9, 5e-4, True, None, 10, True)
    # it reads the retain set exactly when it fine-tunes
    assert [build_config("prune", {"epochs": e}).reads() for e in (0, 1, 2)] == [(), ("retain",), ("retain",)]


def test_salun_config_takes_its_range_edges_and_rejects_what_lies_outside():
    from unlearnbench.core.errors import ConfigError
    from unlearnbench.unlearn import build_config

    for key, ok, bad in (("mask_ratio", (1e-3, 1.0), (0.0, 1.01)), ("mask_batch_size", (1,), (0,)),
                         ("mask_lr", (0.0,), (-1e-3,))):
        for v in ok:
            assert getattr(build_config("salun", {key: v}), key) == v
        for v in bad:
            with pytest.raises(ConfigError, match=key):
                build_config("salun", {key: v})
    with pytest.raises(ConfigError, match="lr must be positive"):
        build_config("salun", {"lr": 0.0})  # the shared training checks run too
