"""Per-class feature Gaussians and SCAR's modified Mahalanobis distance.

Following ``jbonato1/SCAR: src/Unlearning_methods.py``: features are Tukey-transformed
t(z) = z^δ (δ = 0.5); per class k, μ_k and the unbiased covariance C_k of the transformed
features; C_k is shrunk twice with shrink(C) = C + γ₁·V₁·I + γ₂·V₂·(1 − I) (V₁ = mean of the
diagonal, V₂ = mean of the non-zero off-diagonal entries), normalised to a correlation matrix and
pseudo-inverted. The distance is the squared form in the L2-normalised transformed space:
d(x, k) = (ẑ − μ̂_k)ᵀ P_k (ẑ − μ̂_k), ẑ = t(z)/‖t(z)‖, μ̂_k = μ_k/‖μ_k‖ (the statistics are
estimated un-normalised, the distance is normalised — as released).

Two guards the reference lacks: the Tukey power clamps features at ``eps`` first (z^0.5 is NaN
for negative features and has an infinite gradient at 0, which post-ReLU features hit often),
and the statistics are computed in float64. Distances use one ``einsum`` instead of the
reference's K×B×B intermediate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from unlearnbench.core.errors import ConfigError

TUKEY_EPS = 1e-6


def tukey(z: torch.Tensor, delta: float, eps: float = TUKEY_EPS) -> torch.Tensor:
    """z^δ with z clamped to ≥ eps (δ = 1 leaves features unchanged)."""
    z = z.float()
    if delta == 1:
        return z
    return z.clamp_min(eps).pow(delta)


def shrink(c: torch.Tensor, gamma1: float, gamma2: float) -> torch.Tensor:
    eye = torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    v1 = torch.diagonal(c).mean()
    off = c[~eye.bool()]
    nz = off[off != 0]
    v2 = nz.mean() if nz.numel() else torch.zeros((), dtype=c.dtype, device=c.device)
    return c + gamma1 * v1 * eye + gamma2 * v2 * (1 - eye)


def correlation(c: torch.Tensor) -> torch.Tensor:
    d = torch.sqrt(torch.diagonal(c).clamp_min(torch.finfo(c.dtype).tiny))
    return c / (d[:, None] * d[None, :])


@dataclass(frozen=True)
class ClassGaussians:
    classes: torch.Tensor  # (K,) class ids
    means: torch.Tensor  # (K, D) L2-normalised means of the transformed features
    precisions: torch.Tensor  # (K, D, D) pseudo-inverses of the shrunk correlation matrices


def class_gaussians(
    features: torch.Tensor, labels: torch.Tensor, classes: list[int], *, gamma1: float = 3.0, gamma2: float = 3.0,
    min_samples: int = 2,
) -> ClassGaussians:
    """Gaussians of already Tukey-transformed ``features`` for each class in ``classes``.

    Classes with fewer than ``min_samples`` samples are skipped (a covariance needs two).
    """
    if bool((features < 0).any()):
        warnings.warn("class statistics got negative features; use delta=1 for such backbones", stacklevel=2)
    kept, means, precs = [], [], []
    f64 = features.double()
    for k in classes:
        s = f64[labels == k]
        if len(s) < min_samples:
            continue
        mu = s.mean(0)
        c = correlation(shrink(shrink(torch.cov(s.T), gamma1, gamma2), gamma1, gamma2))
        kept.append(k)
        means.append(mu / mu.norm().clamp_min(1e-12))
        precs.append(torch.linalg.pinv(c))
    if not kept:
        raise ConfigError(
            f"No class has {min_samples} or more samples to estimate feature statistics from; "
            "use a larger statistics set (stats_source, ood_size)."
        )
    prec = torch.stack(precs)
    if not bool(torch.isfinite(prec).all()):
        raise ConfigError("Feature statistics are not finite; use a larger statistics set or other gamma1/gamma2.")
    dev = features.device
    return ClassGaussians(torch.tensor(kept, device=dev), torch.stack(means).float(), prec.float())


def mahalanobis(z: torch.Tensor, g: ClassGaussians) -> torch.Tensor:
    """(B, K) modified Mahalanobis distances of transformed features ``z`` (B, D) to each class.

    Always float32, also inside a bf16 autocast region (a squared form loses too much in bf16).
    """
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        zn = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        diff = zn[:, None, :] - g.means[None]
        return torch.einsum("bkd,kde,bke->bk", diff, g.precisions, diff)


def mahalanobis_loop(z: torch.Tensor, g: ClassGaussians) -> torch.Tensor:
    """The same distances by explicit loops (reference implementation for tests)."""
    out = torch.empty(len(z), len(g.classes), dtype=z.dtype, device=z.device)
    for b in range(len(z)):
        zn = z[b] / z[b].norm().clamp_min(1e-12)
        for k in range(len(g.classes)):
            d = zn - g.means[k]
            out[b, k] = d @ g.precisions[k] @ d
    return out


def nearest_wrong_class(distances: torch.Tensor, g: ClassGaussians, labels: torch.Tensor,
                        by_position: bool = False) -> torch.Tensor:
    """Index (into ``g.classes``) of the closest class other than each sample's own label.

    ``by_position``: the SCAR release's comparison (``Unlearning_methods.py``: ``tmp =
    argsort(dists)[:, 0]; where(tmp == lab_fgt, argsort[:, 1], tmp)``), which compares the
    *position* in the list of kept classes with the label. For class-wise forgetting the list lacks
    the forgotten class c, so position c is class c + 1: it is skipped when it is the nearest. For
    random forgetting the list is every class and both comparisons agree.
    """
    if by_position:
        order = distances.argsort(dim=1, stable=True)
        first = order[:, 0]
        return torch.where(first == labels.to(first.device), order[:, 1], first)
    own = g.classes[None, :] == labels[:, None]
    return distances.masked_fill(own, float("inf")).argmin(1)
