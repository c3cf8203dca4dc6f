"""Generation metrics (conditional DDPMs after class-wise unlearning); ``eval.generation`` runs them.

Metrics (registered in ``METRICS`` with ``task="generation"``; they read a
:class:`GenEvalContext`, never the classifier ``EvalContext``):

- ``gen_ua``: UA = share of samples generated for the forgotten class(es) that a classifier of
  the same data does *not* assign to the forgotten class (Wilson interval over the n samples),
  with the mean entropy of its softmax and the mean forgotten-class probability (normal
  intervals of the means) — the reference's ``classifier_evaluation.py`` (accuracy, entropy,
  prob of the forgotten class), reported as 100 − accuracy.
- ``gen_fid``: Fréchet distance between features of generated remembered-class samples and the
  real test images of the remembered classes (plug-in), with a basic bootstrap interval of the
  population distance (both sets resampled) and the bootstrap bias-corrected FID ``gen/fid_bc``.
  The extractor is named in every result: the classifier's penultimate features by default;
  ``inception:PATH`` uses torchvision's Inception-v3 pool features with weights the user
  supplies (nothing is downloaded).
- ``gen_precision_recall``: k-NN precision and recall (Kynkäänniemi et al. 2019, k = 3) on the
  same features, as the reference's ``evaluator.py`` reports.
- ``gen_acc_retained``: share of remembered-class samples the classifier assigns to the class
  they were generated for (Wilson interval): does the model still draw what it is asked?
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from unlearnbench.core.config import check, configclass
from unlearnbench.core.data import UnlearnData
from unlearnbench.core.errors import ConfigError, ModelError
from unlearnbench.eval import intervals as iv
from unlearnbench.eval.metrics.base import METRICS, MetricOutput, register_metric

log = logging.getLogger(__name__)


@configclass
class GenEvalConfig:
    """How many samples, how they are drawn, and the FID feature extractor."""

    n_forget: int = 500  # samples of each forgotten class for UA (the reference: 500)
    n_per_class: int = 100  # samples of each remembered class for FID (the reference: 5000)
    n_real: int | None = None  # real remembered-class test images for FID (None: all)
    guidance: float = 2.0
    steps: int = 50  # DDIM steps
    eta: float = 0.0
    batch_size: int = 500
    extractor: str = "classifier"  # or inception:PATH (torchvision Inception-v3 weights you supply)
    bootstrap: int = 200  # resamples of the FID interval
    knn: int = 3  # k of precision / recall
    grid_per_class: int = 8  # images per class in the sample grids
    seed: int = 0
    metrics: tuple[str, ...] = ()  # empty: every generation metric

    def __post_init__(self) -> None:
        check(self.n_forget >= 1 and self.n_per_class >= 2, "n_forget must be at least 1 and n_per_class at least 2.")
        check(self.n_real is None or self.n_real >= 2, "n_real must be at least 2 (or null for all).")
        check(self.steps >= 1 and self.batch_size >= 1, "steps and batch_size must be at least 1.")
        check(self.bootstrap >= 0 and self.knn >= 1, "bootstrap must be 0 or more and knn at least 1.")
        check(self.extractor == "classifier" or self.extractor.startswith("inception:"),
              f"extractor must be classifier or inception:PATH, not {self.extractor!r}.")
        for m in self.metrics:
            if m not in generation_metrics():
                raise ConfigError(f"Unknown generation metric {m!r}; choose from {', '.join(generation_metrics())}.")


def generation_metrics() -> list[str]:
    return [n for n in METRICS.names() if METRICS.info(n).get("task") == "generation"]


# ----------------------------------------------------------------------------- closed forms


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr (Σ1 Σ2)^½ (Dowson & Landau 1982; the FID formula).

    Tr (Σ1 Σ2)^½ is the sum of the square roots of the eigenvalues of Σ1 Σ2 (real and ≥ 0 for
    covariance matrices, as Σ1 Σ2 is similar to Σ1^½ Σ2 Σ1^½): the same number as a matrix square
    root, several times faster, which the bootstrap's hundreds of FIDs need."""
    diff = mu1 - mu2
    eig = np.linalg.eigvals(cov1 @ cov2)
    trace_sqrt = float(np.sqrt(np.clip(eig.real, 0, None)).sum())  # rounding leaves tiny negative/imaginary parts
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def batched_fid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """FID of feature sets stacked on leading axes: ``a`` (..., n1, d), ``b`` (..., n2, d) -> (...).

    The same formula as :func:`fid_from_features` (covariances with n − 1), one call for a whole
    batch of bootstrap or jackknife resamples."""
    def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = x.mean(-2)
        xc = x - mu[..., None, :]
        return mu, np.swapaxes(xc, -1, -2) @ xc / (x.shape[-2] - 1)

    (mu1, c1), (mu2, c2) = moments(a), moments(b)
    diff = mu1 - mu2
    eig = np.linalg.eigvals(c1 @ c2)
    trace_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum(-1)
    return (diff * diff).sum(-1) + np.trace(c1, axis1=-2, axis2=-1) + np.trace(c2, axis1=-2, axis2=-1) - 2 * trace_sqrt


FID_INTERVAL_METHOD = "basic"  # chosen by the coverage simulation in docs/generation.md ("FID interval")


class FidBootstrap(NamedTuple):
    lo: float
    hi: float
    bias_corrected: float  # 2·FID − mean of the bootstrap FIDs, at least 0


def bootstrap_fid(a: np.ndarray, b: np.ndarray, resamples: int, seed: int,
                  method: str = FID_INTERVAL_METHOD) -> FidBootstrap | None:
    """95 % bootstrap interval of the population Fréchet distance between the two feature
    distributions, both sets resampled independently with replacement (``scipy.stats.bootstrap``,
    two samples; ``method`` basic, percentile or BCa), and the bootstrap bias-corrected FID.

    The default is the basic (reverse-percentile) interval: the plug-in FID is biased upwards
    (≈ c/n) and a resample's FIDs are biased upwards again by about as much, so the percentile
    interval sits above the estimate and misses the population value (38 % coverage in the
    simulation of docs/generation.md, basic 95 %); BCa fails outright when the estimate lies
    below every resample. Reflecting the bootstrap distribution about the estimate removes the
    bias to first order, so the interval is centred near the bias-corrected FID, not the plug-in
    one, and need not hold the plug-in when the bias exceeds the spread. Both the lower end and
    the bias-corrected value are clipped at 0, the bound of a Fréchet distance."""
    if resamples < 2:
        return None
    from scipy.stats import bootstrap

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)

    def stat(ia: np.ndarray, ib: np.ndarray, axis: int = -1) -> np.ndarray:
        return batched_fid(a[ia], b[ib])  # the resampled index arrays pick the feature rows

    # batch bounds the memory of the stacked resamples (batch x n x d doubles, ~20 MB)
    batch = max(1, int(2e7 // (max(len(a), len(b)) * a.shape[1] * 8)))
    res = bootstrap((np.arange(len(a)), np.arange(len(b))), stat, n_resamples=resamples, vectorized=True,
                    paired=False, method=method, batch=batch, rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    bc = 2 * fid_from_features(a, b) - float(np.mean(res.bootstrap_distribution))
    return FidBootstrap(max(lo, 0.0), hi, max(bc, 0.0))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision/recall: a fake point is "precise" inside some real point's k-NN ball, a real
    point is "recalled" inside some fake point's ball (Kynkäänniemi et al., NeurIPS 2019)."""
    real, fake = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)

    def radii(x: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(x, x)
        return d.kthvalue(min(k + 1, len(x)), dim=1).values  # +1: the point itself is at distance 0

    def covered(points: torch.Tensor, centres: torch.Tensor, r: torch.Tensor) -> float:
        return float((torch.cdist(points, centres) <= r.unsqueeze(0)).any(dim=1).double().mean())

    return covered(fake, real, radii(real)), covered(real, fake, radii(fake))


def mean_interval(values: np.ndarray) -> tuple[float, float] | None:
    """Normal 95 % interval of a mean (n large: the central limit theorem)."""
    n = len(values)
    if n < 2:
        return None
    m, s = float(np.mean(values)), float(np.std(values, ddof=1))
    h = iv.Z95 * s / math.sqrt(n)
    return m - h, m + h


# ----------------------------------------------------------------------------- feature extractors


def classifier_features(classifier: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    from unlearnbench.core.models import penultimate_features

    def f(x: torch.Tensor) -> torch.Tensor:
        return penultimate_features(classifier, x)

    return f


def inception_features(path: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchvision Inception-v3 pool features (2048-d) with the user's weights file (nothing downloaded).

    Images are resized to 299x299 (bilinear), grey ones repeated to 3 channels, and normalised as
    torchvision's ImageNet weights expect."""
    import torch.nn.functional as F
    import torchvision

    from unlearnbench.core.checkpoint import read_state_dict

    state, _ = read_state_dict(path)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError:
        raise ModelError(f"{path} does not hold torchvision Inception-v3 weights (inception_v3 state dict).") from None
    net.fc = nn.Identity()
    net.eval().to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)

    def f(x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return net((x - mean) / std)

    return f


@torch.no_grad()
def features(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, device: torch.device,
             batch_size: int = 500) -> np.ndarray:
    out = [fn(images[i:i + batch_size].to(device)).flatten(1).double().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


@torch.no_grad()
def probabilities(classifier: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    out = [classifier(images[i:i + batch_size].to(device)).float().softmax(-1).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out)


# ----------------------------------------------------------------------------- context and metrics


@dataclass
class GenEvalContext:
    """What a generation metric reads: the samples (drawn once) and the evaluating classifier."""

    model: nn.Module
    data: UnlearnData
    classifier: nn.Module
    classifier_name: str
    config: GenEvalConfig
    forget_classes: tuple[int, ...]
    forget_samples: torch.Tensor  # (n_forget * |forgotten|, C, H, W) in [0, 1]
    forget_labels: torch.Tensor
    kept_samples: torch.Tensor
    kept_labels: torch.Tensor
    real_kept: torch.Tensor  # real test images of the remembered classes, [0, 1]
    device: torch.device
    extractor_name: str = "classifier"
    _features: dict[str, np.ndarray] = field(default_factory=dict)

    def feats(self, which: str) -> np.ndarray:
        if which not in self._features:
            fn = (classifier_features(self.classifier) if self.config.extractor == "classifier"
                  else inception_features(self.config.extractor.partition(":")[2], self.device))
            imgs = self.kept_samples if which == "fake" else self.real_kept
            self._features[which] = features(fn, imgs, self.device, self.config.batch_size)
        return self._features[which]


def register_gen_metric(name: str, *, direction: str, summary: str):
    return register_metric(name, direction=direction, summary=summary, default=False, gap=False, task="generation")


@register_gen_metric("gen_ua", direction="reference",
                     summary="UA of a generator: % of forgotten-class samples the classifier does not call that class")
def gen_ua(ctx: GenEvalContext) -> MetricOutput:
    probs = probabilities(ctx.classifier, ctx.forget_samples, ctx.device, ctx.config.batch_size)
    labels = ctx.forget_labels
    n = len(labels)
    hit = (probs.argmax(-1) == labels).double()
    p_forgot = probs.gather(1, labels.view(-1, 1)).squeeze(1).double().numpy()
    entropy = (-(probs.clamp_min(1e-12).log() * probs).sum(-1)).double().numpy()
    ua = 1 - float(hit.mean())
    out = MetricOutput(values={"gen/ua": 100 * ua, "gen/entropy": float(entropy.mean()),
                               "gen/forgotten_prob": float(p_forgot.mean())},
                       counts={"n/gen/ua": n, "n/gen/entropy": n, "n/gen/forgotten_prob": n})
    w = iv.wilson(ua, n)
    out.values.update({"gen/ua_lo": 100 * w[0], "gen/ua_hi": 100 * w[1]})
    for key, arr in (("gen/entropy", entropy), ("gen/forgotten_prob", p_forgot)):
        ci = mean_interval(arr)
        if ci is not None:
            out.values.update({f"{key}_lo": ci[0], f"{key}_hi": ci[1]})
    return out


@register_gen_metric("gen_acc_retained", direction="higher",
                     summary="% of remembered-class samples the classifier assigns to the class asked for")
def gen_acc_retained(ctx: GenEvalContext) -> MetricOutput:
    probs = probabilities(ctx.classifier, ctx.kept_samples, ctx.device, ctx.config.batch_size)
    n = len(ctx.kept_labels)
    acc = float((probs.argmax(-1) == ctx.kept_labels).double().mean())
    w = iv.wilson(acc, n)
    return MetricOutput(values={"gen/acc_retained": 100 * acc, "gen/acc_retained_lo": 100 * w[0],
                                "gen/acc_retained_hi": 100 * w[1]}, counts={"n/gen/acc_retained": n})


@register_gen_metric("gen_fid", direction="lower",
                     summary="FID of remembered-class samples vs real test images (extractor named), basic bootstrap interval")
def gen_fid(ctx: GenEvalContext) -> MetricOutput:
    fake, real = ctx.feats("fake"), ctx.feats("real")
    fid = fid_from_features(fake, real)
    out = MetricOutput(values={"gen/fid": fid}, counts={"n/gen/fid_generated": len(fake), "n/gen/fid_real": len(real)})
    boot = bootstrap_fid(fake, real, ctx.config.bootstrap, ctx.config.seed)
    if boot is not None:  # the interval is of the population distance (basic bootstrap), see bootstrap_fid
        out.values.update({"gen/fid_lo": boot.lo, "gen/fid_hi": boot.hi, "gen/fid_bc": boot.bias_corrected})
    return out


@register_gen_metric("gen_precision_recall", direction="higher",
                     summary="k-NN precision and recall of remembered-class samples on the FID features")
def gen_precision_recall(ctx: GenEvalContext) -> MetricOutput:
    fake, real = ctx.feats("fake"), ctx.feats("real")
    p, r = precision_recall(real, fake, ctx.config.knn)
    out = MetricOutput(values={"gen/precision": 100 * p, "gen/recall": 100 * r},
                       counts={"n/gen/precision": len(fake), "n/gen/recall": len(real)})
    for key, v, n in (("gen/precision", p, len(fake)), ("gen/recall", r, len(real))):
        w = iv.wilson(v, n)  # treats the points as independent given the other set (a lower bound on the spread)
        out.values.update({f"{key}_lo": 100 * w[0], f"{key}_hi": 100 * w[1]})
    return out
