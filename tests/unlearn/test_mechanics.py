"""Exact mechanics: saliency masks, frozen weights, OMP sparsity, the l1 schedule, SCAR's distances."""

from __future__ import annotations

import copy
import dataclasses

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

