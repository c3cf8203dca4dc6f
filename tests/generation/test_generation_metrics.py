"""Generation metrics on toy cases with known answers: FID closed forms, k-NN precision/recall
against brute force, UA / entropy / forgotten-class probability from a hand-built classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from fid_coverage import Setting
from hypothesis import given
from hypothesis import strategies as st

from unlearnbench.core.errors import ConfigError, ModelError
from unlearnbench.eval import intervals as iv
from unlearnbench.eval.generation import (
    GenEvalConfig,
    GenEvalContext,
    batched_fid,
    bootstrap_fid,
    evaluate_generation,
    fid_from_features,
    frechet_distance,
    gen_ua,
    precision_recall,
)


def test_fid_of_a_set_with_itself_is_zero_and_a_shift_costs_its_squared_norm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))  # correlated Gaussian features
    assert abs(fid_from_features(a, a)) < 1e-6
    delta = np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0])
    # the same points shifted: equal covariances, means apart by delta -> FID = |delta|^2 exactly
    assert fid_from_features(a, a + delta) == pytest.approx(float(delta @ delta), rel=1e-6)


def test_frechet_distance_matches_the_matrix_square_root_form():
    from scipy import linalg

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(np.real(linalg.sqrtm(c1 @ c2))))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-8)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])  # variances
    expected = float((mu1 - mu2) @ (mu1 - mu2) + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


def test_batched_fid_is_the_fid_of_each_stacked_pair():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 30, 5)), rng.normal(0.4, 2.0, size=(4, 25, 5))
    expected = [fid_from_features(x, y) for x, y in zip(a, b, strict=True)]
    assert batched_fid(a, b) == pytest.approx(expected, rel=1e-10)
    assert batched_fid(a[0], b[0]) == pytest.approx(expected[0], rel=1e-10)  # no batch axis


def _scipy_fid_bootstrap(a, b, resamples, seed, method):
    """scipy.stats.bootstrap run directly, with a scalar statistic on the original FID code path."""
    from scipy.stats import bootstrap

    res = bootstrap((np.arange(len(a)), np.arange(len(b))), lambda i, j: fid_from_features(a[i], b[j]),
                    n_resamples=resamples, vectorized=False, paired=False, method=method,
                    rng=np.random.default_rng(seed))
    return res


def test_fid_interval_is_scipys_basic_bootstrap_of_both_sets():
    """The interval is scipy's two-sample basic bootstrap (the same resamples: one batch, same
    seed), i.e. the percentile interval reflected about the estimate, and the bias-corrected FID
    is 2·FID − the mean bootstrap FID."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 3)), rng.normal(loc=0.8, size=(50, 3))  # FID ≈ 1.9, far from 0: no clipping
    fid = fid_from_features(a, b)
    boot = bootstrap_fid(a, b, 200, seed=0)
    ref = _scipy_fid_bootstrap(a, b, 200, 0, "basic")
    assert (boot.lo, boot.hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), rel=1e-9)
    assert boot.bias_corrected == pytest.approx(2 * fid - ref.bootstrap_distribution.mean(), rel=1e-9)
    q_lo, q_hi = np.percentile(ref.bootstrap_distribution, [2.5, 97.5])
    assert (boot.lo, boot.hi) == pytest.approx((2 * fid - q_hi, 2 * fid - q_lo), rel=1e-9)  # by hand
    assert bootstrap_fid(a, b, 200, seed=0, method="percentile")[:2] == pytest.approx((q_lo, q_hi), rel=1e-9)
    assert boot.lo < boot.bias_corrected < boot.hi
    big = bootstrap_fid(np.concatenate([a, a + 1e-3]), np.concatenate([b, b + 1e-3]), 200, seed=0)
    assert big.hi - big.lo < boot.hi - boot.lo  # twice the points, a narrower interval
    assert bootstrap_fid(a, b, 200, seed=0) == boot  # seeded
    assert bootstrap_fid(a, b, 0, seed=0) is None and bootstrap_fid(a, b, 1, seed=0) is None


def test_fid_interval_corrects_the_upward_bias_on_gaussian_features():
    """Gaussian features with a closed-form population distance (the "digits-like" setting of the
    coverage simulation, one seeded draw): the plug-in FID lies above the population value, the
    bootstrap FIDs lie higher again, so the percentile interval misses it; the basic interval
    and the bias-corrected FID land on it."""
    setting = Setting("digits-like", 32, 450, 400, 0.5, 1.3)
    mu1, c1, mu2, c2 = setting.params()
    truth = frechet_distance(mu1, c1, mu2, c2)
    rng = np.random.default_rng(0)
    a, b = rng.multivariate_normal(mu1, c1, 450), rng.multivariate_normal(mu2, c2, 400)
    fid = fid_from_features(a, b)
    boot = bootstrap_fid(a, b, 200, seed=0)
    pct = bootstrap_fid(a, b, 200, seed=0, method="percentile")
    assert truth < fid and truth < pct.lo  # the bias: the estimate and its resamples lie above the truth
    assert boot.lo <= truth <= boot.hi
    assert abs(boot.bias_corrected - truth) < fid - truth


def test_fid_interval_lower_end_and_bias_corrected_value_are_clipped_at_zero():
    """Two samples of one distribution: the population distance is 0 and the plug-in FID is all
    bias; the reflected lower end would be negative, and a Fréchet distance cannot be."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    boot = bootstrap_fid(a, b, 200, seed=0)
    raw = _scipy_fid_bootstrap(a, b, 200, 0, "basic")
    assert raw.confidence_interval.low < 0 and boot.lo == 0.0
    assert boot.hi == pytest.approx(raw.confidence_interval.high, rel=1e-9)
    assert boot.bias_corrected >= 0.0


def _brute_pr(real, fake, k):
    def radius(x, i):
        d = sorted(float(np.linalg.norm(x[i] - x[j])) for j in range(len(x)))
        return d[min(k, len(x) - 1)]  # d[0] is the point itself

    rr = [radius(real, i) for i in range(len(real))]
    fr = [radius(fake, i) for i in range(len(fake))]
    p = np.mean([any(np.linalg.norm(f - real[i]) <= rr[i] for i in range(len(real))) for f in fake])
    r = np.mean([any(np.linalg.norm(x - fake[i]) <= fr[i] for i in range(len(fake))) for x in real])
    return p, r


@given(st.integers(0, 10_000), st.integers(5, 25), st.integers(5, 25), st.integers(1, 4))
def test_precision_recall_match_brute_force(seed, n_real, n_fake, k):
    rng = np.random.default_rng(seed)
    real, fake = rng.normal(size=(n_real, 3)), rng.normal(loc=0.7, size=(n_fake, 3))
    p, r = precision_recall(real, fake, k)
    bp, br = _brute_pr(real, fake, k)
    assert p == pytest.approx(bp) and r == pytest.approx(br)


def test_precision_recall_extremes():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(50, 3))
    assert precision_recall(real, real.copy(), 3) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0, 3) == (0.0, 0.0)


class Brightness(nn.Module):
    """Dark images -> class 3 (logit 4 vs 0), bright images -> class 5: a classifier with known output."""

    def forward(self, x):
        bright = (x.flatten(1).mean(1) > 0.5).float()
        logits = torch.zeros(x.shape[0], 10)
        logits[:, 3] = 4 * (1 - bright)
        logits[:, 5] = 4 * bright
        return logits


def test_ua_entropy_and_forgotten_probability_on_a_known_classifier(digits_class3):
    forget = torch.cat([torch.zeros(7, 1, 8, 8), torch.ones(3, 1, 8, 8)])  # 7 still look like a 3
    ctx = GenEvalContext(model=None, data=digits_class3, classifier=Brightness(), classifier_name="brightness",
                         config=GenEvalConfig(), forget_classes=(3,), forget_samples=forget,
                         forget_labels=torch.full((10,), 3), kept_samples=torch.zeros(0, 1, 8, 8),
                         kept_labels=torch.zeros(0, dtype=torch.long), real_kept=torch.zeros(0, 1, 8, 8),
                         device=torch.device("cpu"))
    out = gen_ua(ctx)
    p_top = math.exp(4) / (math.exp(4) + 9)  # softmax of one logit 4 among nine zeros
    p_rest = 1 / (math.exp(4) + 9)
    entropy = -(p_top * math.log(p_top) + 9 * p_rest * math.log(p_rest))
    assert out.values["gen/ua"] == pytest.approx(30.0)
    assert out.counts["n/gen/ua"] == 10
    lo, hi = iv.wilson(0.3, 10)
    assert (out.values["gen/ua_lo"], out.values["gen/ua_hi"]) == pytest.approx((100 * lo, 100 * hi))
    assert out.values["gen/entropy"] == pytest.approx(entropy, rel=1e-5)
    assert out.values["gen/forgotten_prob"] == pytest.approx(0.7 * p_top + 0.3 * p_rest, rel=1e-5)


def test_evaluate_generation_end_to_end(tiny_ddpm, digits_class3, digits_cnn):
    cfg = GenEvalConfig(n_forget=6, n_per_class=3, steps=2, bootstrap=5, grid_per_class=2)
    rep = evaluate_generation(tiny_ddpm, digits_class3, digits_cnn, cfg, classifier_name="digits cnn")
    assert rep.counts["n/gen/ua"] == 6 and rep.counts["n/gen/fid_generated"] == 27
    assert rep.counts["n/gen/fid_real"] == len(digits_class3.test_retained)
    assert rep.meta["extractor"] == "penultimate features of digits cnn" and rep.meta["forget_classes"] == [3]
    for key in ("gen/ua", "gen/fid", "gen/precision", "gen/recall", "gen/acc_retained"):
        assert key in rep.values and math.isfinite(rep.values[key])
    assert rep.values["gen/fid_lo"] <= rep.values["gen/fid_hi"]
    assert rep.grids["forgotten"].shape == (1, 10, 19) and rep.grids["remembered"].shape[1] == 9 * 9 + 1
    assert not digits_cnn.training and not tiny_ddpm.training


def test_evaluate_generation_refuses_swapped_models(tiny_ddpm, digits_class3, digits_cnn):
    from unlearnbench.core.errors import ConfigError, ModelError

    with pytest.raises(ModelError, match="conditional DDPM"):
        evaluate_generation(digits_cnn, digits_class3, digits_cnn)
    with pytest.raises(ModelError, match="generation model"):
        evaluate_generation(tiny_ddpm, digits_class3, tiny_ddpm)
    with pytest.raises(ConfigError, match="extractor"):
        GenEvalConfig(extractor="vgg")


def _feature_ctx(fake, real, kept=None, kept_labels=None, **config):
    """A generation context whose FID features are given (no extractor runs)."""
    kept = torch.zeros(0, 1, 8, 8) if kept is None else kept
    kept_labels = torch.zeros(0, dtype=torch.long) if kept_labels is None else kept_labels
    ctx = GenEvalContext(model=None, data=None, classifier=Brightness(), classifier_name="brightness",
                         config=GenEvalConfig(**config), forget_classes=(3,), forget_samples=torch.zeros(0, 1, 8, 8),
                         forget_labels=torch.zeros(0, dtype=torch.long), kept_samples=kept, kept_labels=kept_labels,
                         real_kept=torch.zeros(0, 1, 8, 8), device=torch.device("cpu"))
    ctx._features.update(fake=fake, real=real)
    return ctx


def test_fid_precision_recall_and_retained_accuracy_metrics():
    """The metrics report the closed forms above on their features, as percentages where they are
    shares, each with its n and a Wilson interval; retained accuracy counts the samples drawn as
    the class asked for (the brightness classifier: dark = 3, bright = 5)."""
    from unlearnbench.eval.metrics.generation import gen_acc_retained, gen_fid, gen_precision_recall

    rng = np.random.default_rng(0)
    fake, real = rng.normal(0.3, 1, (30, 4)), rng.normal(0, 1, (40, 4))
    kept = torch.cat([torch.zeros(3, 1, 8, 8), torch.ones(5, 1, 8, 8)])
    ctx = _feature_ctx(fake, real, kept, torch.tensor([3, 3, 5, 5, 5, 5, 5, 3]), knn=3, bootstrap=20, seed=1)
    out = gen_fid(ctx)
    assert out.values["gen/fid"] == pytest.approx(fid_from_features(fake, real))
    boot = bootstrap_fid(fake, real, 20, 1)
    assert (out.values["gen/fid_lo"], out.values["gen/fid_hi"], out.values["gen/fid_bc"]) == pytest.approx(tuple(boot))
    assert out.counts == {"n/gen/fid_generated": 30, "n/gen/fid_real": 40}
    p, r = precision_recall(real, fake, 3)
    out = gen_precision_recall(ctx)
    assert (out.values["gen/precision"], out.values["gen/recall"]) == pytest.approx((100 * p, 100 * r))
    assert out.counts == {"n/gen/precision": 30, "n/gen/recall": 40}
    for key, v, n in (("gen/precision", p, 30), ("gen/recall", r, 40)):
        assert (out.values[f"{key}_lo"], out.values[f"{key}_hi"]) == pytest.approx(tuple(100 * w for w in iv.wilson(v, n)))
    out = gen_acc_retained(ctx)
    assert out.values["gen/acc_retained"] == pytest.approx(100 * 6 / 8) and out.counts == {"n/gen/acc_retained": 8}
    lo, hi = iv.wilson(6 / 8, 8)
    assert (out.values["gen/acc_retained_lo"], out.values["gen/acc_retained_hi"]) == pytest.approx((100 * lo, 100 * hi))


def test_inception_features_of_grey_images(tmp_path, monkeypatch):
    """Inception-v3 pool features with the user's weights: grey images repeated to three channels,
    resized to 299 x 299 (bilinear, corners not aligned), ImageNet-normalised; the classifier head
    is dropped. A small stand-in with Inception's ``fc`` takes the network's place (the real one
    costs seconds per image on a CPU); it records what it is fed."""
    import torch.nn.functional as F
    import torchvision

    from unlearnbench.eval.metrics.generation import inception_features

    class StandIn(nn.Module):
        def __init__(self, **kwargs):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.fc = nn.Linear(3, 1000)

        def forward(self, x):
            self.seen = x
            return self.fc(x.mean((2, 3)) * self.scale)

    made = []
    monkeypatch.setattr(torchvision.models, "inception_v3", lambda **kw: made.append(StandIn(**kw)) or made[-1])
    weights = StandIn().state_dict()
    weights["scale"] = torch.tensor([1.0, 2.0, 3.0])
    torch.save(weights, tmp_path / "inception.pt")
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    got = inception_features(str(tmp_path / "inception.pt"), torch.device("cpu"))(x)
    rgb = F.interpolate(x.repeat(1, 3, 1, 1), size=(299, 299), mode="bilinear", align_corners=False)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    want = (rgb - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert torch.allclose(made[0].seen, want, atol=1e-6)
    assert torch.allclose(got, want.mean((2, 3)) * torch.tensor([1.0, 2.0, 3.0]), atol=1e-6)  # the weights, no head
    # the context's features come from the file named by extractor="inception:PATH"
    ctx = _feature_ctx(None, None, extractor=f"inception:{tmp_path / 'inception.pt'}")
    ctx._features.clear()
    ctx.real_kept = x
    assert np.allclose(ctx.feats("real"), got.detach().double().numpy())
    torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="does not hold torchvision Inception-v3 weights"):
        inception_features(str(tmp_path / "bad.pt"), torch.device("cpu"))


def test_generation_metrics_registry_config_and_batched_features():
    from unlearnbench.eval.metrics.generation import features, generation_metrics

    assert set(generation_metrics()) == {"gen_ua", "gen_acc_retained", "gen_fid", "gen_precision_recall"}
    assert GenEvalConfig(batch_size=1, steps=1, n_forget=1, n_per_class=2).batch_size == 1  # the smallest valid values
    for bad in ({"batch_size": 0}, {"steps": 0}, {"n_forget": 0}, {"n_per_class": 1}):
        with pytest.raises(ConfigError):
            GenEvalConfig(**bad)
    images = torch.arange(5 * 4, dtype=torch.float32).view(5, 1, 2, 2)
    feats = features(lambda x: 2 * x, images, torch.device("cpu"), batch_size=2)  # batches of 2, 2 and 1
    assert feats.shape == (5, 4) and np.array_equal(feats, 2 * images.flatten(1).double().numpy())
