"""Exact mechanics: saliency masks, frozen weights, OMP sparsity, the l1 schedule, SCAR's distances."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch
import torch.nn as nn
from hypothesis import given
from hypothesis import strategies as st

from unlearnbench.core.errors import ConfigError, UnknownNameError
from unlearnbench.unlearn import run
from unlearnbench.unlearn.classstats import (
    class_gaussians,
    mahalanobis,
    mahalanobis_loop,
    nearest_wrong_class,
    tukey,
)
from unlearnbench.unlearn.l1_sparse import l1_coefficient
from unlearnbench.unlearn.loops import Stepper, make_optimizer
from unlearnbench.unlearn.masks import saliency_mask, top_fraction_mask
from unlearnbench.unlearn.ood import adapt_images, ood_set, synthetic_images
from unlearnbench.unlearn.prune import conv_sparsity, conv_weights, magnitude_masks, omp

# ----------------------------------------------------------------------------- SalUn mask


@pytest.mark.parametrize("seed", [0, 7])
def test_salun_mask_gradients_sum_the_batch_means_of_a_seeded_shuffle(seed):
    """Unlearn-Saliency's generate_mask: one pass over the forget set, batch 256 *shuffled*, summing
    each batch's mean-CE gradient, so the images that land in the short last batch weigh more. The sum
    is rebuilt by hand from the same seeded permutation; with 13 images in batches of 5 the grouping
    changes the sum, so an unshuffled or differently shuffled pass gives another mask."""
    from unlearnbench.core.data import TensorSet
    from unlearnbench.unlearn.masks import forget_gradients

    g = torch.Generator().manual_seed(123)
    n, bs = 13, 5
    forget = TensorSet(x=torch.randint(0, 256, (n, 1, 4, 4), generator=g, dtype=torch.uint8),
                       y=torch.randint(0, 3, (n,), generator=g), idx=torch.arange(n), name="forget")
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    got = forget_gradients(model, forget, batch_size=bs, generator=torch.Generator().manual_seed(seed))

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    ref = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for b in range(0, n, bs):
        pos = order[b:b + bs]
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(forget.x[pos].float() / 255), forget.y[pos]),
                                    list(model.parameters()))
        for (name, _), gr in zip(model.named_parameters(), grads, strict=True):
            ref[name] += gr
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6)
    # the test has power: the dataset's own order groups the images differently and changes the sum
    in_order = sum(torch.autograd.grad(nn.functional.cross_entropy(model(forget.x[b:b + bs].float() / 255),
                                                                   forget.y[b:b + bs]), [model[1].weight])[0]
                   for b in range(0, n, bs))
    assert (in_order - ref["1.weight"]).abs().max() > 1e-3


@pytest.mark.parametrize("ratio", [0.5, 0.1, 0.37])
def test_saliency_mask_keeps_exactly_the_requested_fraction(ratio, digits_cnn, digits_class3):
    model = copy.deepcopy(digits_cnn)
    mask = saliency_mask(model, digits_class3.forget, ratio, generator=torch.Generator().manual_seed(0))
    n = sum(p.numel() for p in model.parameters())
    assert set(mask) == {name for name, _ in model.named_parameters()}
    assert sum(int(m.sum()) for m in mask.values()) == int(n * ratio)
    assert all(p.grad is None for p in model.parameters())  # gradients left as they were


def test_top_fraction_mask_selects_the_largest_scores():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(7, 5, generator=g), "b": torch.rand(13, generator=g)}
    mask = top_fraction_mask(scores, 0.4)
    kept = torch.cat([scores[k][mask[k]] for k in scores])
    dropped = torch.cat([scores[k][~mask[k]] for k in scores])
    assert len(kept) == int(48 * 0.4) and kept.min() >= dropped.max()


@given(n_a=st.integers(1, 300), n_b=st.integers(1, 300), levels=st.integers(1, 4),
       ratio=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_top_fraction_mask_breaks_ties_by_flat_index(n_a, n_b, levels, ratio, seed):
    """Heavily tied scores (1-4 distinct values): the mask is exactly "the int(N * ratio) best,
    ties to the lower flat index" (tensors in dict order), so it is the same on every device;
    checked against a brute-force ranking by (-score, index)."""
    g = torch.Generator().manual_seed(seed)
    scores = {"a": torch.randint(0, levels, (n_a,), generator=g).float(),
              "b": torch.randint(0, levels, (n_b,), generator=g).float().view(-1, 1)}
    mask = top_fraction_mask(scores, ratio)
    flat = torch.cat([scores["a"], scores["b"].flatten()]).tolist()
    k = int(len(flat) * ratio)
    best = sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:k]
    expected = torch.zeros(len(flat), dtype=torch.bool)
    expected[best] = True
    got = torch.cat([mask["a"], mask["b"].flatten()])
    assert mask["b"].shape == scores["b"].shape and torch.equal(got, expected)


def test_saliency_mask_restores_each_modules_own_mode(digits_class3):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Dropout(0.2), nn.Linear(4 * 64, 10))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    modes = [m.training for m in model.modules()]
    stats = model[1].running_mean.clone()
    saliency_mask(model, digits_class3.forget, 0.5, generator=torch.Generator().manual_seed(0))
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(model[1].running_mean, stats)


def test_mask_fraction_is_the_share_of_true_entries():
    from unlearnbench.unlearn.masks import mask_fraction

    mask = {"a": torch.tensor([True, False, False, False]), "b": torch.tensor([[True, True], [False, False]])}
    assert mask_fraction(mask) == pytest.approx(3 / 8)
    assert mask_fraction({}) == 0.0


def test_top_fraction_mask_ratio_range_includes_both_ends_only():
    scores = {"w": torch.arange(10.0)}
    assert not top_fraction_mask(scores, 0.0)["w"].any() and top_fraction_mask(scores, 1.0)["w"].all()
    for bad in (-0.1, 1.1, 2.0):
        with pytest.raises(ValueError, match="ratio"):
            top_fraction_mask(scores, bad)


def test_salun_leaves_masked_weights_bit_identical(digits_cnn, digits_class3):
    cfg = {"epochs": 2, "mask_ratio": 0.3, "weight_decay": 5e-3, "momentum": 0.9, "lr": 0.05}
    out = run("salun", digits_cnn, digits_class3, cfg, seed=4, device="cpu")
    # the method's mask, recomputed the same way (original model, generator seeded with seed + 1)
    mask = saliency_mask(copy.deepcopy(digits_cnn), digits_class3.forget, 0.3, batch_size=256,
                         generator=torch.Generator().manual_seed(4 + 1))
    before, after = dict(digits_cnn.named_parameters()), dict(out.model.named_parameters())
    frozen_equal = all(torch.equal(before[n][~m], after[n][~m]) for n, m in mask.items())
    changed = sum(int((before[n][m] != after[n][m]).sum()) for n, m in mask.items())
    assert frozen_equal
    assert changed > 0.5 * sum(int(m.sum()) for m in mask.values())  # the salient ones did train


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_stepper_freezes_masked_entries_despite_decay_and_momentum(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    mask = {n: torch.rand(p.shape) < 0.5 for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, kind, lr=0.1, momentum=0.9, weight_decay=0.05)
    stepper = Stepper(model, opt, mask=mask)
    for _ in range(25):
        x = torch.randn(16, 6)
        stepper.step(nn.functional.cross_entropy(model(x), torch.randint(0, 3, (16,))))
    for n, p in model.named_parameters():
        assert torch.equal(p[~mask[n]], before[n][~mask[n]])
        assert not torch.equal(p[mask[n]], before[n][mask[n]])
        for state in opt.state[p].values():
            if isinstance(state, torch.Tensor) and state.shape == p.shape:
                assert bool((state[~mask[n]] == 0).all())  # nothing accumulates for frozen entries


# ----------------------------------------------------------------------------- OMP


@pytest.mark.parametrize("sparsity", [0.95, 0.5, 0.123])
def test_omp_reaches_exactly_the_requested_sparsity(sparsity, digits_cnn):
    model = copy.deepcopy(digits_cnn)
    magnitudes = torch.cat([w.detach().abs().flatten() for _, w in conv_weights(model)])
    masks = omp(model, sparsity)
    n = magnitudes.numel()
    n_pruned = int(round(sparsity * n))
    assert sum(int((~m).sum()) for m in masks.values()) == n_pruned
    assert conv_sparsity(model) == n_pruned / n
    pruned = torch.cat([~masks[name].flatten() for name, _ in conv_weights(model)])
    assert magnitudes[pruned].max() <= magnitudes[~pruned].min()  # the smallest ones went
    head = dict(model.named_parameters())["head.weight"]
    assert torch.equal(head, dict(digits_cnn.named_parameters())["head.weight"])  # only convs are pruned


@pytest.mark.parametrize("rewind", [False, True])
def test_prune_method_keeps_pruned_weights_zero_through_finetuning(rewind, digits_cnn, digits_class3):
    masks = magnitude_masks(copy.deepcopy(digits_cnn), 0.8)
    out = run("prune", digits_cnn, digits_class3, {"sparsity": 0.8, "epochs": 2, "rewind": rewind}, device="cpu")
    params = dict(out.model.named_parameters())
    assert all(bool((params[n][~m] == 0).all()) for n, m in masks.items())
    n = sum(int(m.numel()) for m in masks.values())
    assert conv_sparsity(out.model) * n >= round(0.8 * n)
    survivors_moved = any(not torch.equal(params[n][m], dict(digits_cnn.named_parameters())[n][m])
                          for n, m in masks.items())
    assert survivors_moved


def _release_2023_mask(model, forget, ratio, *, lr, batch_size, augment, seed):
    """A transcription of Unlearn-Saliency 9576623 ``generate_mask.py: save_gradient_ratio`` (the
    non-ImageNet branch), fed the same batches: train mode, SGD step, |grad| summed after the step,
    ascending ranks, ``rank < int(N * ratio)``."""
    import torch.nn.functional as F

    from unlearnbench.core.data import Loader

    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    gradients = {name: 0 for name, _ in model.named_parameters()}
    for image, target in Loader(forget, batch_size, shuffle=True, augment=augment,
                                generator=torch.Generator().manual_seed(seed)):
        loss = -F.cross_entropy(model(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for name, param in model.named_parameters():
            if param.grad is not None:
                gradients[name] += param.grad.data.abs()
    all_elements = torch.cat([t.flatten() for t in gradients.values()])
    threshold_index = int(len(all_elements) * ratio)
    ranks = torch.argsort(torch.argsort(all_elements, stable=True))
    out, start = {}, 0
    for key, tensor in gradients.items():
        out[key] = (ranks[start:start + tensor.numel()] < threshold_index).reshape(tensor.shape)
        start += tensor.numel()
    return out


def test_salun_2023_mask_generation_is_the_release_code(digits_cnn, digits_class3):
    from unlearnbench.unlearn.masks import saliency_mask_2023

    model = copy.deepcopy(digits_cnn)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    mask = saliency_mask_2023(model, digits_class3.forget, 0.5, lr=0.01, batch_size=32,
                              generator=torch.Generator().manual_seed(5))
    ref = _release_2023_mask(digits_cnn, digits_class3.forget, 0.5, lr=0.01, batch_size=32, augment=None, seed=5)
    assert set(mask) == set(ref) and all(torch.equal(mask[k], ref[k]) for k in ref)
    # the model handed in is untouched (weights and BatchNorm running statistics)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert model.training == digits_cnn.training
    # a different mask from today's: without the steps and train mode it would be the complement
    # of the current top-50 % mask; with them it overlaps it by neither 0 % nor 100 %
    now = saliency_mask(copy.deepcopy(digits_cnn), digits_class3.forget, 0.5, batch_size=32,
                        generator=torch.Generator().manual_seed(5))
    overlap = sum(int((mask[k] & now[k]).sum()) for k in now) / sum(int(now[k].sum()) for k in now)
    assert 0.02 < overlap < 0.98


def test_salun_mask_generation_2023_freezes_the_release_mask(digits_cnn, digits_class3):
    cfg = {"epochs": 1, "mask_ratio": 0.4, "lr": 0.05, "mask_generation": "2023", "mask_lr": 0.02,
           "mask_batch_size": 64, "mask_mode": "exact"}
    out = run("salun", digits_cnn, digits_class3, cfg, seed=2, device="cpu")
    mask = _release_2023_mask(digits_cnn, digits_class3.forget, 0.4, lr=0.02, batch_size=64,
                              augment=digits_class3.info, seed=2 + 1)
    before, after = dict(digits_cnn.named_parameters()), dict(out.model.named_parameters())
    assert all(torch.equal(before[n][~m], after[n][~m]) for n, m in mask.items())
    assert sum(int((before[n][m] != after[n][m]).sum()) for n, m in mask.items()) > 0.5 * sum(
        int(m.sum()) for m in mask.values())


# ----------------------------------------------------------------------------- l1 schedule


def test_l1_coefficient_follows_the_linear_decay():
    assert [l1_coefficient(2.0, e, 10) for e in range(10)] == [2.0 * (1 - e / 10) for e in range(10)]
    assert l1_coefficient(2.0, 9, 10) == pytest.approx(0.2)  # never reaches 0 without no_l1_epochs
    assert [l1_coefficient(1.0, e, 5, no_l1_epochs=2) for e in range(5)] == [1.0, 1 - 1 / 3, 1 - 2 / 3, 0.0, 0.0]
    # the January 2023 release: alpha in every epoch, still ended by no_l1_epochs
    assert [l1_coefficient(0.3, e, 4, 1, "constant") for e in range(4)] == [0.3, 0.3, 0.3, 0.0]


def test_l1_no_l1_epochs_equal_to_epochs_means_no_penalty_at_all(digits_cnn, digits_class3):
    """``no_l1_epochs == epochs``: alpha = 0 throughout (Unlearn-Sparse 6c1ba03; the ImageNet path
    today), not a constant alpha. A huge alpha must then leave the run bit-identical to alpha 0."""
    assert [l1_coefficient(0.5, e, 4, no_l1_epochs=4) for e in range(4)] == [0.0] * 4
    assert [l1_coefficient(0.5, e, 4, 4, "constant") for e in range(4)] == [0.0] * 4
    base = {"epochs": 2, "no_l1_epochs": 2, "batch_size": 256, "lr": 0.05}
    a = run("l1_sparse", digits_cnn, digits_class3, {**base, "alpha": 10.0}, seed=3, device="cpu").model
    b = run("l1_sparse", digits_cnn, digits_class3, {**base, "alpha": 0.0}, seed=3, device="cpu").model
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_l1_constant_schedule_penalises_every_epoch_equally(monkeypatch, digits_cnn, digits_class3):
    import unlearnbench.unlearn.l1_sparse as l1

    seen = []
    real = l1.l1_norm
    monkeypatch.setattr(l1, "l1_norm", lambda m: (seen.append(1), real(m))[1])
    coeffs = []
    real_coef = l1.l1_coefficient
    monkeypatch.setattr(l1, "l1_coefficient", lambda *a: (coeffs.append(real_coef(*a)), coeffs[-1])[1])
    run("l1_sparse", digits_cnn, digits_class3,
        {"epochs": 3, "alpha": 2e-3, "batch_size": 256, "alpha_schedule": "constant"}, device="cpu")
    assert coeffs and set(coeffs) == {2e-3} and len(seen) == len(coeffs)


def test_l1_sparse_uses_the_schedule_every_step(monkeypatch, digits_cnn, digits_class3):
    import unlearnbench.unlearn.l1_sparse as l1

    calls = []

    def spy(alpha, epoch, epochs, no_l1_epochs=0, schedule="linear"):
        calls.append((alpha, epoch, epochs, no_l1_epochs, schedule))
        return l1_coefficient(alpha, epoch, epochs, no_l1_epochs, schedule)

    monkeypatch.setattr(l1, "l1_coefficient", spy)
    run("l1_sparse", digits_cnn, digits_class3, {"epochs": 3, "alpha": 1e-3, "batch_size": 256}, device="cpu")
    steps = -(-len(digits_class3.retain) // 256)
    assert calls == [(1e-3, e, 3, 0, "linear") for e in range(3) for _ in range(steps)]


# ----------------------------------------------------------------------------- SCAR


def _gaussians(seed=0, n=60, d=12, classes=(0, 1, 2, 4)):
    g = torch.Generator().manual_seed(seed)
    feats = tukey(torch.rand(n, d, generator=g) * 2, 0.5)
    labels = torch.tensor([classes[i % len(classes)] for i in range(n)])
    return class_gaussians(feats, labels, list(classes)), feats, labels


def test_mahalanobis_einsum_equals_a_naive_loop():
    gauss, _, _ = _gaussians()
    z = tukey(torch.rand(9, 12, generator=torch.Generator().manual_seed(1)), 0.5)
    fast, slow = mahalanobis(z, gauss), mahalanobis_loop(z, gauss)
    assert fast.shape == (9, 4)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    assert bool((fast >= -1e-4).all())  # a squared form of a PSD matrix


def test_nearest_wrong_class_never_picks_the_own_label():
    gauss, feats, labels = _gaussians()
    d = mahalanobis(feats, gauss)
    q = gauss.classes[nearest_wrong_class(d, gauss, labels)]
    assert not bool((q == labels).any())
    own_is_nearest = gauss.classes[d.argmin(1)] == labels
    assert bool(own_is_nearest.any())  # the exclusion is doing something


def test_tukey_transform_is_guarded_against_zero_and_negative_features():
    z = torch.tensor([[-1.0, 0.0, 0.25, 4.0]], requires_grad=True)
    out = tukey(z, 0.5)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(z.grad).all()
    assert out[0, 2].item() == pytest.approx(0.5) and out[0, 3].item() == pytest.approx(2.0)


def test_class_gaussians_need_two_samples():
    with pytest.raises(ConfigError, match="samples"):
        class_gaussians(torch.rand(3, 4), torch.tensor([0, 1, 2]), [0, 1, 2])


# ----------------------------------------------------------------------------- OOD images


def test_synthetic_ood_is_seeded_structured_and_shaped():
    a, b = synthetic_images(50, 3, 16, seed=2), synthetic_images(50, 3, 16, seed=2)
    assert a.x.shape == (50, 3, 16, 16) and a.x.dtype == torch.uint8
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, synthetic_images(50, 3, 16, seed=3).x)
    assert set(a.y.tolist()) == {0, 1, 2, 3, 4}  # every family is present
    assert a.x.float().std() > 20  # not flat images


def test_ood_from_another_dataset_is_resized_and_channel_adapted(digits_class3):
    rgb = adapt_images(synthetic_images(10, 1, 8).x, 3, 32)
    assert rgb.shape == (10, 3, 32, 32) and torch.equal(rgb[:, 0], rgb[:, 1])
    grey = adapt_images(torch.full((2, 3, 32, 32), 200, dtype=torch.uint8), 1, 8)
    assert grey.shape == (2, 1, 8, 8) and int(grey.max()) == 200
    ood = ood_set("synthetic", digits_class3.info, 30, seed=0)
    assert ood.x.shape[1:] == (1, 8, 8)
    with pytest.raises(ConfigError, match="cannot be 'digits'"):
        ood_set("digits", digits_class3.info, 10)
    with pytest.raises(UnknownNameError, match="Did you mean"):
        ood_set("digitz", digits_class3.info, 10)


def test_ood_from_a_registered_dataset(digits_class3):
    info = dataclasses.replace(digits_class3.info, name="other", in_channels=3, image_size=16)
    ood = ood_set("digits", info, 40, seed=1)
    assert ood.x.shape == (40, 3, 16, 16) and ood.x.dtype == torch.uint8


# ----------------------------------------------------------------------------- adversarial retain


def test_adv_retain_replaces_retain_batches(monkeypatch, digits_cnn, digits_class3):
    import unlearnbench.robust.adversarial as adversarial

    seen = {}

    def fake_retain_attack(name, threat, steps=10, seed=0):
        seen.update(name=name, eps=threat.eps, norm=threat.norm, steps=steps, calls=0)

        def gen(model, x, y):
            seen["calls"] += 1
            return x.flip(3)

        return gen

    monkeypatch.setattr(adversarial, "retain_attack", fake_retain_attack)
    out = run("finetune", digits_cnn, digits_class3, {"epochs": 1, "adv_steps": 3}, adv_retain="pgd", device="cpu")
    steps = -(-len(digits_class3.retain) // 64)
    assert seen == {"name": "pgd", "eps": 0.1, "norm": "Linf", "steps": 3, "calls": steps}
    assert out.info["adv_eps"] == 0.1
    run("salun", digits_cnn, digits_class3, {"epochs": 1, "adv_eps": 0.05}, adv_retain="pgd", device="cpu")
    assert seen["eps"] == 0.05 and seen["calls"] == steps  # only the retain pass is attacked


def test_adv_retain_with_the_real_attack(digits_cnn, digits_class3):
    out = run("finetune", digits_cnn, digits_class3, {"epochs": 1, "adv_steps": 2}, adv_retain="pgd", device="cpu")
    assert out.info["adv_retain"] == "pgd" and out.seconds > 0



# ----------------------------------------------------------------------------- the epoch loop (loops.py)


def _loop_set(n: int = 12, seed: int = 0):
    """n 1×2×2 uint8 images with 3 labels: a tiny set the loop runs through in milliseconds."""
    from unlearnbench.core.data import TensorSet

    g = torch.Generator().manual_seed(seed)
    return TensorSet(torch.randint(0, 256, (n, 1, 2, 2), dtype=torch.uint8, generator=g),
                     torch.arange(n) % 3, torch.arange(n), None, "loop")


def _loop_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def _spy_loss(seen: list, value=None):
    """A CE phase loss that records (epoch, loss value, model.training) of every step."""
    def loss(model, x, y, epoch):
        out = nn.functional.cross_entropy(model(x), y)
        if value is not None:
            out = out * 0 + value(epoch)
        seen.append((epoch, float(out.detach()), model.training))
        return out
    return loss


def test_loop_records_each_phase_mean_loss_per_epoch_and_hands_the_model_back_in_eval_mode():
    from unlearnbench.core.progress import images_seen
    from unlearnbench.unlearn.loops import Phase, run_epochs

    model, data = _loop_model(), _loop_set(12)
    seen_a, seen_b = [], []
    phases = [Phase(data, _spy_loss(seen_a), 5, name="forget"), Phase(data.select(torch.arange(4)), _spy_loss(seen_b), 3)]
    opt = make_optimizer(model, lr=0.1)
    images0 = images_seen()
    history = run_epochs(model, phases, epochs=2, optimizer=opt, generator=torch.Generator().manual_seed(0))
    assert images_seen() - images0 == 2 * (12 + 4)  # every image of every phase, each epoch
    assert [r.epoch for r in history] == [1, 2]
    assert len(seen_a) == 2 * 3 and len(seen_b) == 2 * 2  # ceil(12/5), ceil(4/3) steps per epoch
    assert all(training for _, _, training in seen_a + seen_b) and not model.training
    for e, rec in enumerate(history):
        assert set(rec.losses) == {"forget", "phase1"}  # unnamed phases are numbered in order
        assert rec.losses["forget"] == pytest.approx(sum(v for ep, v, _ in seen_a if ep == e) / 3, rel=1e-6)
        assert rec.losses["phase1"] == pytest.approx(sum(v for ep, v, _ in seen_b if ep == e) / 2, rel=1e-6)


def test_loop_extra_terms_enter_each_step_and_its_recorded_loss():
    from unlearnbench.unlearn.loops import Phase, run_epochs

    model = _loop_model()
    seen = []
    calls = []

    def term(m, epoch):
        calls.append(epoch)
        return torch.tensor(10.0 * (epoch + 1))

    history = run_epochs(model, [Phase(_loop_set(6), _spy_loss(seen), 6, name="r")], epochs=2,
                         optimizer=make_optimizer(model, lr=0.0), generator=torch.Generator().manual_seed(0),
                         extra_terms=[term])
    assert calls == [0, 1]
    assert [r.losses["r"] for r in history] == pytest.approx([seen[0][1] + 10.0, seen[1][1] + 20.0])


def test_loop_phase_epochs_skips_phases_and_epoch_end_stops_early():
    from unlearnbench.unlearn.loops import Phase, run_epochs

    model = _loop_model()
    seen_a, seen_b = [], []
    a, b = Phase(_loop_set(6), _spy_loss(seen_a), 3, name="a"), Phase(_loop_set(6), _spy_loss(seen_b), 3, name="b")
    ends = []

    def epoch_end(epoch, m):
        ends.append(epoch)
        return epoch == 3

    history = run_epochs(model, [a, b], epochs=5, optimizer=make_optimizer(model, lr=0.1),
                         generator=torch.Generator().manual_seed(0),
                         phase_epochs=lambda ph, epoch: ph is a or epoch < 1, epoch_end=epoch_end)
    assert ends == [1, 2, 3] and len(history) == 3  # stops after epoch 3 of 5
    assert sorted({e for e, _, _ in seen_a}) == [0, 1, 2] and sorted({e for e, _, _ in seen_b}) == [0]
    assert [set(r.losses) for r in history] == [{"a", "b"}, {"a"}, {"a"}]


def test_loop_raises_on_a_non_finite_loss_naming_the_epoch_and_phase():
    from unlearnbench.unlearn.loops import Phase, UnlearningDiverged, run_epochs

    model = _loop_model()
    nan_in_second = _spy_loss([], value=lambda epoch: float("nan") if epoch == 1 else 1.0)
    with pytest.raises(UnlearningDiverged, match=r"epoch 2 \(retain loss nan\)"):
        run_epochs(model, [Phase(_loop_set(6), nan_in_second, 3, name="retain")], epochs=3,
                   optimizer=make_optimizer(model, lr=0.0), generator=torch.Generator().manual_seed(0))
    with pytest.raises(UnlearningDiverged, match=r"epoch 1 \(phase loss inf\)"):
        run_epochs(model, [Phase(_loop_set(6), _spy_loss([], value=lambda e: float("inf")), 3)], epochs=1,
                   optimizer=make_optimizer(model, lr=0.0), generator=torch.Generator().manual_seed(0))


def test_loop_relabel_and_transform_reach_the_loss_and_the_model_trains_after_the_transform():
    from unlearnbench.unlearn.loops import Phase, run_epochs

    model = _loop_model()
    got = []

    def loss(m, x, y, epoch):
        got.append((x.clone(), y.clone(), m.training))
        return nn.functional.cross_entropy(m(x), y)

    def transform(m, x, y):
        m.eval()  # an attack runs in eval mode; the loop must switch back to training
        return (x * 0 + 0.25).requires_grad_()

    ph = Phase(_loop_set(4), loss, 4, shuffle=False, transform=transform, relabel=lambda y, g: (y + 1) % 3)
    run_epochs(model, [ph], epochs=1, optimizer=make_optimizer(model, lr=0.1), generator=torch.Generator().manual_seed(0))
    (x, y, training), = got
    assert torch.equal(y, (torch.arange(4) % 3 + 1) % 3) and bool((x == 0.25).all()) and training
    assert not x.requires_grad  # detached: no gradient flows into the attack


def test_loop_record_epochs_rows_and_the_hook_time_left_out_of_the_run_time():
    import time as _time

    from unlearnbench.core.train import accuracy
    from unlearnbench.unlearn.loops import Phase, epoch_hook, hook_seconds, record_epochs, run_epochs

    model, data = _loop_model(), _loop_set(9)
    accs = []
    with record_epochs(data) as rows:
        run_epochs(model, [Phase(data, _spy_loss([]), 4, name="retain")], epochs=2,
                   optimizer=make_optimizer(model, lr=0.5), generator=torch.Generator().manual_seed(0),
                   schedule=lambda step: 1.0 / (1 + step),
                   epoch_end=lambda e, m: accs.append(accuracy(m, data)))
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["lr"] for r in rows] == pytest.approx([0.5, 0.5 / 4])  # the lr the epoch started with (3 steps/epoch)
    assert [r["forget_acc"] for r in rows] == pytest.approx(accs)
    assert all(set(r) == {"epoch", "lr", "loss/retain", "forget_acc"} for r in rows)
    # nested hooks: the inner one wins inside, the outer one is back after
    outer, inner = [], []
    before = hook_seconds()
    with epoch_hook(lambda r, m: outer.append(r.epoch)):
        with epoch_hook(lambda r, m: (inner.append(r.epoch), _time.sleep(0.05))):
            run_epochs(model, [Phase(data, _spy_loss([]), 9)], epochs=1, optimizer=make_optimizer(model, lr=0.0),
                       generator=torch.Generator().manual_seed(0))
        run_epochs(model, [Phase(data, _spy_loss([]), 9)], epochs=2, optimizer=make_optimizer(model, lr=0.0),
                   generator=torch.Generator().manual_seed(0))
    assert inner == [1] and outer == [1, 2]
    assert 0.05 <= hook_seconds() - before < 1.0
    trained = []
    run_epochs(model, [Phase(data, _spy_loss(trained), 9)], epochs=1, optimizer=make_optimizer(model, lr=0.0),
               generator=torch.Generator().manual_seed(0))
    assert inner == [1] and outer == [1, 2]  # no hook left installed after the blocks


def test_loop_hook_sees_the_trained_model_and_training_resumes_in_train_mode():
    from unlearnbench.unlearn.loops import Phase, run_epochs

    model = _loop_model()
    seen = []
    modes = []

    def on_epoch(record, m):
        modes.append(m.training)
        m.eval()  # a hook that evaluates must not leave the next epoch in eval mode

    run_epochs(model, [Phase(_loop_set(6), _spy_loss(seen), 6)], epochs=2, optimizer=make_optimizer(model, lr=0.1),
               generator=torch.Generator().manual_seed(0), on_epoch=on_epoch)
    assert modes == [True, True] and [t for _, _, t in seen] == [True, True]


def test_loop_stepper_schedule_scales_each_groups_initial_lr():
    model = _loop_model()
    opt = torch.optim.SGD([{"params": [model[1].weight], "lr": 0.3}, {"params": [model[1].bias], "lr": 0.7}])
    stepper = Stepper(model, opt, schedule=lambda s: 0.5 ** (s + 1))
    lrs = [[g["lr"] for g in opt.param_groups]]
    for _ in range(3):
        stepper.step(model(torch.ones(2, 1, 2, 2)).sum())
        lrs.append([g["lr"] for g in opt.param_groups])
    assert stepper.steps == 3
    assert [lr for pair in lrs for lr in pair] == pytest.approx([b * 0.5 ** k for k in (1, 2, 3, 4) for b in (0.3, 0.7)])


def test_loop_make_optimizer_settings():
    model = _loop_model()
    model[1].bias.requires_grad_(False)
    sgd = make_optimizer(model, lr=0.1)
    (g,) = sgd.param_groups
    assert isinstance(sgd, torch.optim.SGD) and len(g["params"]) == 1  # frozen parameters left out
    assert (g["lr"], g["momentum"], g["weight_decay"], g["nesterov"]) == (0.1, 0.9, 5e-4, False)
    assert make_optimizer(model, lr=0.1, nesterov=True).param_groups[0]["nesterov"] is True
    assert make_optimizer(model, lr=0.1, momentum=0.0, nesterov=True).param_groups[0]["nesterov"] is False
    adam = make_optimizer(model, "adam", lr=0.01, weight_decay=0.0)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(model, "rmsprop", lr=0.1)


def test_loop_masks_are_checked_against_the_model():
    from unlearnbench.unlearn.loops import _partial_masks

    model = _loop_model()
    w = model[1].weight
    assert _partial_masks(model, None) == [] and _partial_masks(model, {}) == []
    assert _partial_masks(model, {"1.weight": torch.ones_like(w, dtype=torch.bool)}) == []  # nothing frozen
    keep = torch.ones_like(w, dtype=torch.bool)
    keep[0, 0] = False
    ((p, k),) = _partial_masks(model, {"1.weight": keep.float()})
    assert p is w and k.dtype == torch.bool and torch.equal(k, keep)
    with pytest.raises(ValueError, match="lacks"):
        _partial_masks(model, {"9.weight": keep})
    with pytest.raises(ValueError, match="shape"):
        _partial_masks(model, {"1.weight": keep.T})


def test_loop_ce_loss_and_wrong_labels_need_two_classes():
    from unlearnbench.unlearn.loops import ce_loss, draw_random_labels, random_labels

    model = _loop_model()
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    for s in (0.0, 0.3):
        want = nn.functional.cross_entropy(model(x), y, label_smoothing=s)
        assert float(ce_loss(s)(model, x, y, 0)) == pytest.approx(float(want))
    assert float(ce_loss(0.3)(model, x, y, 0)) != pytest.approx(float(ce_loss()(model, x, y, 0)))
    with pytest.raises(ValueError, match="two classes"):
        draw_random_labels(y, 1, torch.Generator(), exclude_true=True)
    y = torch.arange(600) % 3  # random_labels' default is SalUn's RL: uniform over all classes, true one included
    assert torch.equal(random_labels(3)(y, torch.Generator().manual_seed(4)),
                       draw_random_labels(y, 3, torch.Generator().manual_seed(4), exclude_true=False))


# ----------------------------------------------------------------------------- SCAR's class statistics, by hand


def test_class_gaussians_shrink_on_a_hand_matrix():
    from unlearnbench.unlearn.classstats import correlation, shrink

    c = torch.tensor([[2.0, 0.0, 1.0], [0.0, 4.0, 0.0], [1.0, 0.0, 6.0]], dtype=torch.float64)
    # V1 = mean diagonal = 4; V2 = mean of the *non-zero* off-diagonal entries = 1
    expected = torch.tensor([[14.0, 3.0, 4.0], [3.0, 16.0, 3.0], [4.0, 3.0, 18.0]], dtype=torch.float64)
    torch.testing.assert_close(shrink(c, 3.0, 3.0), expected)
    torch.testing.assert_close(shrink(c, 0.5, 2.0), c + 2.0 * torch.eye(3, dtype=torch.float64)
                               + 2.0 * (1 - torch.eye(3, dtype=torch.float64)))
    diag = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(shrink(diag, 1.0, 5.0), diag + 2.0 * torch.eye(2, dtype=torch.float64))  # V2 = 0
    r = correlation(torch.tensor([[4.0, 2.0], [2.0, 9.0]], dtype=torch.float64))
    torch.testing.assert_close(r, torch.tensor([[1.0, 1 / 3], [1 / 3, 1.0]], dtype=torch.float64))
    assert bool(torch.isfinite(correlation(torch.zeros(2, 2, dtype=torch.float64))).all())  # a zero variance


def test_class_gaussians_against_numpy():
    """μ̂_k = μ_k/‖μ_k‖ and P_k = pinv(corr(shrink(shrink(cov_k)))) by numpy, class by class; a class
    with fewer than min_samples rows is left out, the others keep the order asked for."""
    import numpy as np

    from unlearnbench.unlearn.classstats import class_gaussians as fit

    rng = np.random.default_rng(3)
    feats = rng.random((40, 5)) ** 2
    labels = np.array([7] * 14 + [2] * 25 + [5])  # class 5 has a single sample

    def by_hand(s, g1, g2):
        def shr(c):
            eye = np.eye(len(c))
            off = c[eye == 0]
            v2 = off[off != 0].mean() if (off != 0).any() else 0.0
            return c + g1 * np.diag(c).mean() * eye + g2 * v2 * (1 - eye)
        c = shr(shr(np.cov(s.T, ddof=1)))
        d = np.sqrt(np.diag(c))
        mu = s.mean(0)
        return mu / np.linalg.norm(mu), np.linalg.pinv(c / np.outer(d, d))

    g = fit(torch.tensor(feats, dtype=torch.float32), torch.tensor(labels), [7, 5, 2], gamma1=2.0, gamma2=0.5)
    assert g.classes.tolist() == [7, 2] and g.means.dtype == g.precisions.dtype == torch.float32
    for i, k in enumerate([7, 2]):
        mu, p = by_hand(feats[labels == k].astype(np.float32).astype(np.float64), 2.0, 0.5)
        np.testing.assert_allclose(g.means[i].numpy(), mu, rtol=1e-5)
        np.testing.assert_allclose(g.precisions[i].numpy(), p, rtol=1e-4, atol=1e-4)
    default, three = (fit(torch.tensor(feats), torch.tensor(labels), [7, 2], **kw) for kw in ({}, {"gamma1": 3.0, "gamma2": 3.0}))
    assert torch.equal(default.precisions, three.precisions)  # the release's defaults: γ₁ = γ₂ = 3
    assert fit(torch.tensor(feats), torch.tensor(labels), [2, 7], min_samples=14).classes.tolist() == [2, 7]
    assert fit(torch.tensor(feats), torch.tensor(labels), [2, 7], min_samples=15).classes.tolist() == [2]
    with pytest.raises(ConfigError, match="No class has 3 or more samples"):
        fit(torch.tensor(feats), torch.tensor(labels), [5], min_samples=3)
    with pytest.warns(UserWarning, match="negative features"):
        fit(torch.tensor(feats) - 0.5, torch.tensor(labels), [7, 2])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # non-negative features (post-ReLU, Tukey): no warning
        fit(torch.tensor(feats), torch.tensor(labels), [7, 2])


def test_mahalanobis_ignores_the_feature_scale_in_both_implementations():
    """d uses ẑ = z/‖z‖: scaling the features (also far below norm 1) changes no distance."""
    gauss, _, _ = _gaussians()
    z = tukey(torch.rand(5, 12, generator=torch.Generator().manual_seed(2)), 0.5)
    for impl in (mahalanobis, mahalanobis_loop):
        base = impl(z, gauss)
        for c in (1e-3, 0.5, 40.0):
            torch.testing.assert_close(impl(z * c, gauss), base, rtol=1e-4, atol=1e-5)


def test_tukey_with_power_one_leaves_features_as_they_are():
    z = torch.tensor([[-1.0, 0.0, 0.3]], dtype=torch.float64)
    out = tukey(z, 1)
    assert out.dtype == torch.float32 and out[0].tolist() == pytest.approx([-1.0, 0.0, 0.3])
    assert tukey(z, 0.5, eps=0.04)[0].tolist() == pytest.approx([0.2, 0.2, 0.3 ** 0.5])  # clamped at eps first


def test_ood_adapt_images_uses_luminance_weights_and_keeps_what_already_fits():
    x = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    x[0, 0], x[1, 1], x[2, 2], x[3] = 255, 255, 255, 100  # pure red, green, blue; grey 100
    grey = adapt_images(x, 1, 2)
    assert grey.shape == (4, 1, 2, 2) and grey[:, 0, 0, 0].tolist() == [76, 150, 29, 100]  # 0.299, 0.587, 0.114
    four = torch.stack([torch.full((2, 2), v, dtype=torch.uint8) for v in (0, 40, 80, 120)])[None]
    assert adapt_images(four, 1, 2).flatten().tolist() == [60] * 4  # other channel counts: the plain mean
    with pytest.raises(ConfigError, match="Cannot adapt 4-channel images to 3"):
        adapt_images(four, 3, 2)
    same = torch.randint(0, 256, (3, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adapt_images(same, 3, 5), same)  # right shape already: unchanged, no resampling
    grey_in = same[:, :1]
    assert torch.equal(adapt_images(grey_in, 3, 5), grey_in.repeat(1, 3, 1, 1))  # grey → RGB: the same image 3 times
    wide = adapt_images(torch.full((1, 1, 4, 6), 9, dtype=torch.uint8), 1, 6)
    assert wide.shape == (1, 1, 6, 6)  # only the width fits: still resized to a square
    up = adapt_images(torch.full((1, 1, 2, 2), 77, dtype=torch.uint8), 3, 6)
    assert up.shape == (1, 3, 6, 6) and bool((up == 77).all())  # a flat image stays flat when resized


def test_ood_synthetic_families_share_the_images_equally(digits_class3):
    s = synthetic_images(12, 1, 8, seed=0)
    assert torch.bincount(s.y, minlength=5).tolist() == [3, 3, 2, 2, 2]  # the remainder to the first families
    assert s.idx.tolist() == list(range(12)) and s.name == "ood"
    assert sorted(synthetic_images(3, 2, 6).y.tolist()) == [0, 1, 2]
    with pytest.raises(ConfigError, match="ood_size must be at least 1"):
        ood_set("synthetic", digits_class3.info, 0)
    assert torch.equal(ood_set("synthetic", digits_class3.info, 7, seed=4).x, synthetic_images(7, 1, 8, seed=4).x)


@pytest.mark.parametrize("generation", ["current", "2023"])
def test_salun_hands_its_mask_settings_to_the_mask_and_the_mask_to_random_labelling(generation, monkeypatch,
                                                                                   digits_class3):
    """SalUn's wiring, with the mask generation and the RL loop replaced by spies: which mask
    function runs, with which ratio, batch size, lr, augmentation and generator, and that RL gets
    exactly that mask and the config."""
    import unlearnbench.unlearn.salun as salun_mod
    from unlearnbench.unlearn import build_config

    calls = {}
    mask = {"w": torch.ones(1, dtype=torch.bool)}

    def spy(name):
        def fake(model, forget, ratio, **kw):
            calls[name] = dict(forget=forget, ratio=ratio, gen_state=kw.pop("generator").get_state(), **kw)
            return mask
        return fake

    monkeypatch.setattr(salun_mod, "saliency_mask", spy("current"))
    monkeypatch.setattr(salun_mod, "saliency_mask_2023", spy("2023"))
    monkeypatch.setattr(salun_mod, "relabel_and_train",
                        lambda model, data, config, m, desc: calls.update(rl=(data, config, m, desc)) or model)
    model = nn.Linear(1, 1)
    for augment in (True, False):
        calls.clear()
        cfg = build_config("salun", {"mask_generation": generation, "mask_ratio": 0.3, "mask_batch_size": 17,
                                     "mask_lr": 0.07, "augment": augment}, seed=5)
        assert salun_mod.salun(model, digits_class3, cfg) is model
        (name,) = set(calls) - {"rl"}
        got = calls[name]
        assert name == generation and got["forget"] is digits_class3.forget and got["ratio"] == 0.3
        assert got["batch_size"] == 17 and got["augment"] is (digits_class3.info if augment else None)
        assert got.get("lr", 0.07) == 0.07 and ("lr" in got) == (generation == "2023")
        assert calls["rl"] == (digits_class3, cfg, mask, "salun")
        # the mask's batches follow the config seed, on a stream of their own (not RL's, seeded with it)
        assert not torch.equal(got["gen_state"], torch.Generator().manual_seed(5).get_state())
        other = build_config("salun", {"mask_generation": generation}, seed=6)
        salun_mod.salun(model, digits_class3, other)
        assert not torch.equal(calls[name]["gen_state"], got["gen_state"])


def _spy_run_epochs(module, monkeypatch):
    seen = {}

    def fake(model, phases, **kw):
        seen.update(model=model, phases=phases, **kw)
        return []

    monkeypatch.setattr(module, "run_epochs", fake)
    return seen


def test_l1_sparse_wiring_norm_and_config_edges(monkeypatch, digits_class3):
    """What l1_sparse hands the epoch loop: the retain phase (batch size, augmentation, the
    adversarial transform), SGD with the config's lr/momentum/weight decay, the prune mask, amp,
    and a penalty term α_e·‖θ‖₁ (every trainable parameter, by hand)."""
    import dataclasses as dc

    import unlearnbench.unlearn.l1_sparse as l1
    from unlearnbench.core.errors import ConfigError
    from unlearnbench.unlearn import build_config
    from unlearnbench.unlearn.base import PRUNE_MASK_KEY, RETAIN_TRANSFORM_KEY

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    model[1].bias.requires_grad_(False)
    by_hand = sum(float(p.abs().sum()) for n, p in model.named_parameters() if n != "1.bias")
    assert float(l1.l1_norm(model)) == pytest.approx(by_hand)
    seen = _spy_run_epochs(l1, monkeypatch)
    mask, transform = {"0.weight": torch.ones(2, 3, dtype=torch.bool)}, (lambda m, x, y: x)
    data = dc.replace(digits_class3, extras={PRUNE_MASK_KEY: mask, RETAIN_TRANSFORM_KEY: transform})
    for augment in (True, False):
        cfg = build_config("l1_sparse", {"epochs": 4, "alpha": 0.5, "no_l1_epochs": 1, "lr": 0.03, "momentum": 0.5,
                                         "weight_decay": 0.01, "batch_size": 7, "augment": augment, "amp": False}, seed=2)
        assert l1.l1_sparse(model, data, cfg) is model
        (ph,) = seen["phases"]
        assert ph.data is data.retain and ph.batch_size == 7 and ph.transform is transform
        assert ph.augment is (data.info if augment else None)
        assert (seen["epochs"], seen["mask"], seen["amp"]) == (4, mask, False)
        (g,) = seen["optimizer"].param_groups
        assert (g["lr"], g["momentum"], g["weight_decay"]) == (0.03, 0.5, 0.01)
        assert torch.equal(seen["generator"].get_state(), torch.Generator().manual_seed(2).get_state())
        (term,) = seen["extra_terms"]
        assert [float(term(model, e)) for e in range(4)] == pytest.approx(
            [0.5 * (1 - e / 3) * by_hand for e in range(3)] + [0.0])
    for ok in ({"alpha": 0.0}, {"no_l1_epochs": 0}, {"epochs": 3, "no_l1_epochs": 3}):
        build_config("l1_sparse", ok)
    for bad, msg in (({"alpha": -1e-9}, "alpha"), ({"no_l1_epochs": -1}, "no_l1_epochs"),
                     ({"epochs": 3, "no_l1_epochs": 4}, "no_l1_epochs")):
        with pytest.raises(ConfigError, match=msg):
            build_config("l1_sparse", bad)


@pytest.mark.parametrize("rewind", [False, True])
def test_prune_method_wiring(rewind, monkeypatch, digits_class3):
    """The 'prune' method: OMP of the conv weights at the config's sparsity, optionally a seeded
    re-initialisation with the mask applied, then the retain phase with the OMP mask combined with
    an outer prune mask; epochs 0 prunes only and reads no data."""
    import dataclasses as dc

    import unlearnbench.unlearn.omp as omp_mod
    from unlearnbench.core.errors import ConfigError
    from unlearnbench.unlearn import build_config
    from unlearnbench.unlearn.base import PRUNE_MASK_KEY, RETAIN_TRANSFORM_KEY, reinitialize

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 8, 8))
    dense = copy.deepcopy(model)
    seen = _spy_run_epochs(omp_mod, monkeypatch)
    outer = {"2.weight": torch.zeros_like(model[2].weight, dtype=torch.bool)}
    transform = lambda m, x, y: x  # noqa: E731
    data = dc.replace(digits_class3, extras={PRUNE_MASK_KEY: outer, RETAIN_TRANSFORM_KEY: transform})
    cfg = build_config("prune", {"sparsity": 0.5, "rewind": rewind, "epochs": 3, "lr": 0.04, "momentum": 0.8,
                                 "weight_decay": 0.02, "batch_size": 9, "augment": False, "amp": False}, seed=4)
    out = omp_mod.prune(model, data, cfg)
    want = magnitude_masks(dense, 0.5)
    assert set(seen["mask"]) == {"0.weight", "2.weight"} and torch.equal(seen["mask"]["0.weight"], want["0.weight"])
    assert torch.equal(seen["mask"]["2.weight"], outer["2.weight"])
    assert seen["model"] is out and int((out[0].weight == 0).sum()) == 4
    survivors = want["0.weight"]
    start = reinitialize(dense, 4)[0].weight if rewind else dense[0].weight
    assert torch.equal(out[0].weight[survivors], start[survivors])
    (ph,) = seen["phases"]
    assert ph.data is data.retain and ph.batch_size == 9 and ph.augment is None and ph.transform is transform
    (g,) = seen["optimizer"].param_groups
    assert (g["lr"], g["momentum"], g["weight_decay"], seen["epochs"], seen["amp"]) == (0.04, 0.8, 0.02, 3, False)
    assert torch.equal(seen["generator"].get_state(), torch.Generator().manual_seed(4).get_state())
    seen.clear()
    only = omp_mod.prune(copy.deepcopy(dense), data, build_config("prune", {"epochs": 0, "sparsity": 0.5}))
    assert not seen and int((only[0].weight == 0).sum()) == 4  # prune only: no training
    assert build_config("prune", {"epochs": 0}).reads() == () and build_config("prune", {}).reads() == ("retain",)
    assert build_config("prune", {"sparsity": 0.0}).sparsity == 0.0
    for bad in (1.0, -0.01):
        with pytest.raises(ConfigError, match="sparsity"):
            build_config("prune", {"sparsity": bad})
    with pytest.raises(ConfigError, match="epochs"):
        build_config("prune", {"epochs": -1})


def test_ood_synthetic_families_have_their_documented_structure():
    """Each family, over 100 images of 32 px: gratings of 1 to 1 + size/4 cycles (mean 0.5-crossings
    per row or column 2·E[f]·E|cos θ| = 2·5·2/π ≈ 6.4); checkerboards of two colours, symmetric
    under transposition (the same period along both axes); 1-3 shapes present with probability
    0.8 on a background (about 1 + 3·0.8 colours, fewer where shapes overlap or miss); pen
    strokes: thin connected curves (a small share of pixels, not the corner of every image), light
    on a dark background or dark on a light one, rarely none at all (0.3³)."""
    from scipy import ndimage

    s = synthetic_images(500, 3, 32, seed=0)
    x = s.x.float() / 255
    g = x[s.y == 1][:, 0]
    w = (g - g.amin((1, 2), keepdim=True)) / (g.amax((1, 2), keepdim=True) - g.amin((1, 2), keepdim=True)).clamp_min(1e-6)
    b = w > 0.5
    crossings = ((b[:, :, 1:] != b[:, :, :-1]).float().sum(2).mean(1) + (b[:, 1:] != b[:, :-1]).float().sum(1).mean(1)) / 2
    assert 5.0 < crossings.mean().item() < 8.0

    def colours(img):
        return len(torch.unique(img.flatten(1), dim=1).T)

    for img in s.x[s.y == 2]:
        assert torch.equal(img, img.transpose(1, 2)) and colours(img) <= 2
    assert 2.8 < sum(colours(i) for i in s.x[s.y == 3]) / 100 < 3.9
    for img in s.x[s.y == 3]:  # a shape is at most 2·0.4 of the width: only the background fills a row
        code = (img[0].long() * 256 + img[1].long()) * 256 + img[2].long()
        full = {int(row[0]) for row in code if bool((row == row[0]).all())}
        wide = set()
        for row in code:
            change = torch.nonzero(row[1:] != row[:-1]).flatten().tolist()
            bounds = [0, *(i + 1 for i in change), len(row)]
            wide |= {int(row[a]) for a, b in itertools.pairwise(bounds) if b - a >= 27}
        assert len(full | wide) <= 1
    strokes = s.x[s.y == 4]
    flat = coverage = corner = 0
    for img in strokes:
        bg = torch.stack([c.flatten().mode().values for c in img])[:, None, None]
        inked = (img != bg).any(0)
        flat += int(not inked.any())
        # each stroke is one connected curve (a quadratic Bézier inside its points' hull): at most 3 pieces
        assert ndimage.label(inked.numpy(), structure=[[1, 1, 1]] * 3)[1] <= 3
        coverage += inked.float().mean().item() / len(strokes)
        corner += int(inked[0, 0])
        light_on_dark = bool((img >= bg).all()) and bool((bg <= 0.3 * 255 + 1).all())
        dark_on_light = bool((img <= bg).all()) and bool((bg >= 0.7 * 255 - 1).all())
        assert light_on_dark or dark_on_light
    assert flat <= 15 and coverage < 0.3 and corner <= 20
