"""Coverage simulation of FID bootstrap intervals (docs/generation.md, "FID interval").

Gaussian features, so the population Fréchet distance (the estimand) is known in closed form.
Each replicate draws two samples, computes the plug-in FID and one two-sample bootstrap
(``scipy.stats.bootstrap``, BCa, which also returns the bootstrap distribution); the percentile,
basic and bias-corrected normal intervals come from that same distribution, so the methods are
compared on the same resamples. Run ``nice python tests/generation/fid_coverage.py`` for the
table in the docs; the deep test runs a smaller version.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap, ortho_group

from unlearnbench.eval.metrics.generation import batched_fid, fid_from_features, frechet_distance

METHODS = ("percentile", "basic", "BCa", "bc-normal")


@dataclass(frozen=True)
class Setting:
    name: str
    d: int
    n1: int
    n2: int
    shift: float  # mean shift along the first axis
    scale: float  # second covariance = rotated first one scaled by this (1.0 and shift 0: identical)
    flat: bool = False  # identity spectrum instead of 1/k: every dimension counts, the bias is largest

    def params(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        lam = np.ones(self.d) if self.flat else 1.0 / np.arange(1, self.d + 1)  # decaying, as penultimate features
        mu1, mu2 = np.zeros(self.d), np.zeros(self.d)
        mu2[0] = self.shift
        c1 = np.diag(lam)
        if self.scale == 1.0:
            return mu1, c1, mu2, c1.copy()
        q = ortho_group.rvs(self.d, random_state=seed)
        return mu1, c1, mu2, q @ np.diag(lam * self.scale) @ q.T

    def truth(self) -> float:
        return frechet_distance(*self.params())


SETTINGS = (
    Setting("same distribution", 16, 300, 300, 0.0, 1.0),
    Setting("close", 16, 300, 250, 0.3, 1.2),
    Setting("digits-like", 32, 450, 400, 0.5, 1.3),
    Setting("far", 32, 200, 200, 1.5, 2.0),
)
# where the bias outgrows the spread: a flat spectrum, d / n = 0.2 (run separately, it is slower)
HIGH_DIM = Setting("high-dimensional", 64, 300, 300, 2.0, 1.2, flat=True)



def replicate(setting: Setting, rng: np.random.Generator, resamples: int) -> dict[str, tuple[float, float] | float]:
    mu1, c1, mu2, c2 = setting.params()
    a = rng.multivariate_normal(mu1, c1, setting.n1)
    b = rng.multivariate_normal(mu2, c2, setting.n2)
    fid = fid_from_features(a, b)

    def stat(ia: np.ndarray, ib: np.ndarray, axis: int = -1) -> np.ndarray:
        return batched_fid(a[ia], b[ib])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate BCa (z0 infinite) is counted as a miss, not raised
        res = bootstrap((np.arange(setting.n1), np.arange(setting.n2)), stat, n_resamples=resamples,
                        vectorized=True, paired=False, method="BCa", batch=50, rng=rng)
    dist = res.bootstrap_distribution
    q_lo, q_hi = np.percentile(dist, [2.5, 97.5])
    bc = 2 * fid - dist.mean()
    sd = dist.std(ddof=1)
    return {"fid": fid, "bc": bc,
            "percentile": (q_lo, q_hi),
            "basic": (max(2 * fid - q_hi, 0.0), 2 * fid - q_lo),
            "BCa": (float(res.confidence_interval.low), float(res.confidence_interval.high)),
            "bc-normal": (max(bc - 1.96 * sd, 0.0), bc + 1.96 * sd)}


def coverage(setting: Setting, reps: int, resamples: int = 200, seed: int = 0) -> dict[str, float]:
    """Share of replicates whose interval holds the population distance, per method; mean width;
    share holding the plug-in estimate; mean plug-in and bias-corrected estimates."""
    rng = np.random.default_rng(seed)
    truth = setting.truth()
    rows = [replicate(setting, rng, resamples) for _ in range(reps)]
    out: dict[str, float] = {"truth": truth, "reps": reps,
                             "mean_fid": float(np.mean([r["fid"] for r in rows])),
                             "mean_bc": float(np.mean([r["bc"] for r in rows]))}
    for m in METHODS:
        iv = np.array([r[m] for r in rows])
        out[f"cover/{m}"] = float(np.mean((iv[:, 0] <= truth) & (truth <= iv[:, 1])))
        widths = iv[:, 1] - iv[:, 0]
        finite = widths[np.isfinite(widths)]  # BCa's bounds are NaN where it degenerates
        out[f"width/{m}"] = float(finite.mean()) if len(finite) else float("nan")
        fids = np.array([r["fid"] for r in rows])
        out[f"holds_fid/{m}"] = float(np.mean((iv[:, 0] <= fids) & (fids <= iv[:, 1])))
    return out


def main(reps: int = 200, settings: tuple[Setting, ...] = SETTINGS) -> None:
    for s in settings:
        r = coverage(s, reps)
        print(f"{s.name}: d={s.d} n={s.n1}/{s.n2} FD={r['truth']:.3f} mean plug-in={r['mean_fid']:.3f} "
              f"mean bias-corrected={r['mean_bc']:.3f} reps={reps}")
        for m in METHODS:
            print(f"  {m:10s} coverage {100 * r[f'cover/{m}']:5.1f} %  width {r[f'width/{m}']:.3f}  "
                  f"holds plug-in {100 * r[f'holds_fid/{m}']:5.1f} %")
        sys.stdout.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, (HIGH_DIM,) if "--high-dim" in sys.argv else SETTINGS)
