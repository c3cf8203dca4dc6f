"""LiRA (Carlini et al., S&P 2022) and U-LiRA scoring from shadow-model signals.

Signals are LiRA's logit-scaled confidences phi (``signals.scaled_logit``). For every example
the IN and OUT observations across shadow models are summarised by Gaussians:

- location: the **median** of the observations (as the reference ``plot.py`` does);
- scale: per example (``np.std`` of that example's observations, ddof 0, as the reference), or
  one **global** scale (LiRA's "fixed variance", recommended below ~64 shadow models). The
  global scale here is the pooled within-example standard deviation, computed separately for IN
  and OUT; the reference code instead takes ``np.std`` of all IN values pooled (between-example
  spread included) and reuses it for OUT, which we do not copy.

``variance="auto"`` picks per-example scales when every example has at least
``AUTO_PER_EXAMPLE`` observations on each side, otherwise global scales.

Scores (higher = member):

- online: ``log N(phi; mu_in, sd_in) - log N(phi; mu_out, sd_out)``;
- offline: the one-sided test of the paper, ``log P(Phi_out <= phi)`` (the reference code's
  two-sided ``logpdf`` variant would also flag unusually *low* confidences as members).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Variance = Literal["auto", "per_example", "global"]
AUTO_PER_EXAMPLE = 32
_SD_FLOOR = 1e-30  # the reference adds 1e-30 to every scale


@dataclass(frozen=True)
class GaussianFit:
    mu_in: np.ndarray
    sd_in: np.ndarray
    mu_out: np.ndarray
    sd_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    variance: str

    def online(self, phi: np.ndarray) -> np.ndarray:
        phi = np.asarray(phi, dtype=np.float64)
        return stats.norm.logpdf(phi, self.mu_in, self.sd_in) - stats.norm.logpdf(phi, self.mu_out, self.sd_out)

    def offline(self, phi: np.ndarray) -> np.ndarray:
        phi = np.asarray(phi, dtype=np.float64)
        return stats.norm.logcdf(phi, self.mu_out, self.sd_out)

    def subset(self, positions: np.ndarray) -> GaussianFit:
        p = np.asarray(positions)
        return GaussianFit(self.mu_in[p], self.sd_in[p], self.mu_out[p], self.sd_out[p],
                           self.n_in[p], self.n_out[p], self.variance)


def _side(obs: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Median, per-example sd, count and pooled within-example sd of the masked observations."""
    vals = np.where(member, obs, np.nan)
    count = member.sum(0)
    with warnings.catch_warnings():
        # Examples without observations give NaN here; ``usable`` drops them from attacks.
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(vals, axis=0)
        mean = np.nanmean(vals, axis=0)
        sd = np.nanstd(vals, axis=0)
    resid = np.where(member, obs - np.nan_to_num(mean), 0.0)
    dof = int(count.sum()) - int((count > 0).sum())
    pooled = float(np.sqrt((resid**2).sum() / max(1, dof)))
    return med, sd, count, pooled


def fit_gaussians(
    phi_in: np.ndarray, in_mask: np.ndarray, phi_out: np.ndarray | None = None, out_mask: np.ndarray | None = None,
    variance: Variance = "auto",
) -> GaussianFit:
    """Per-example Gaussians from ``(models, examples)`` arrays of observations.

    LiRA: one array ``phi_in`` with ``in_mask`` True where the shadow trained on the example; OUT
    observations are the complement. U-LiRA: ``phi_in`` holds unlearned models' signals,
    ``phi_out`` retrained models' signals, each with its own mask.
    """
    phi_in = np.asarray(phi_in, dtype=np.float64)
    in_mask = np.asarray(in_mask, dtype=bool)
    if phi_out is None:
        phi_out, out_mask = phi_in, ~in_mask
    phi_out = np.asarray(phi_out, dtype=np.float64)
    out_mask = np.ones_like(phi_out, dtype=bool) if out_mask is None else np.asarray(out_mask, dtype=bool)
    mu_in, sd_in, n_in, pooled_in = _side(phi_in, in_mask)
    mu_out, sd_out, n_out, pooled_out = _side(phi_out, out_mask)
    if variance == "auto":
        enough = n_in.size > 0 and min(int(n_in.min()), int(n_out.min())) >= AUTO_PER_EXAMPLE
        variance = "per_example" if enough else "global"
    if variance == "global":
        sd_in = np.full_like(mu_in, pooled_in)
        sd_out = np.full_like(mu_out, pooled_out)
    elif variance != "per_example":
        raise ValueError(f"unknown variance mode {variance!r}")
    return GaussianFit(mu_in, sd_in + _SD_FLOOR, mu_out, sd_out + _SD_FLOOR, n_in, n_out, variance)


def usable(fit: GaussianFit, online: bool) -> np.ndarray:
    """Examples with observations on the sides the attack needs."""
    ok = fit.n_out > 0
    return ok & (fit.n_in > 0) if online else ok


def balanced_masks(n_models: int, n_examples: int, seed: int) -> np.ndarray:
    """``(n_models, n_examples)`` keep-masks in which every example is IN for exactly
    ``n_models // 2`` models (the reference ``train.py`` construction: sort uniform draws per
    example)."""
    rng = np.random.default_rng(seed)
    order = rng.uniform(size=(n_models, n_examples)).argsort(0)
    return order < n_models // 2
