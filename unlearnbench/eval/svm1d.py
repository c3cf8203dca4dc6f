"""Exact RBF-kernel SVC on one input feature, solved in the kernel's finite feature map.

MIA-Efficacy fits ``SVC(C=3, kernel="rbf", gamma="auto")`` on a single feature (a confidence or an
entropy) for 2·|test| points. libsvm's SMO needs ~|points| iterations, each computing two kernel
columns, so 20k points take seconds of ``exp`` calls even though the problem is tiny in one
respect: for one feature the Gaussian kernel has an explicit expansion

    exp(-γ (x - x')²) = Σ_k φ_k(x) φ_k(x'),   φ_k(x) = exp(-d²) (√2 d)^k / √(k!),   d = √γ (x - c)

(the Taylor series of exp(2 d d')). With |d| ≤ R every term is bounded by (2R²)^k / k!, so a
truncation after K terms reproduces every kernel value to below 1e-14: the Gram matrix *is* a
rank-K product to rounding. The dual QP then has a low-rank Hessian and a primal–dual
interior-point method (Mehrotra predictor–corrector, Woodbury solves) converges in a few dozen
iterations of O(n K²) each.

The problem solved is libsvm's, with the same conventions, so the answer is scikit-learn's up to
libsvm's own stopping tolerance (``tol=1e-3``): the weight vector is the unique optimum, and the
intercept follows libsvm's rule: pinned by a margin point when there is one, else the midpoint of
the interval of optimal intercepts. Samples may carry weights (libsvm's ``sample_weight``: the box
bound of point i is C·weight_i), which is what makes merging duplicated points exact.

When the feature spans too wide a range for a short expansion (R > 4.3, i.e. a span > 8.6/√γ), or the
interior point method does not converge, :func:`fit` returns ``None`` and the caller uses libsvm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TRUNCATION = 1e-14  # bound on every kernel value's truncation error
MAX_TERMS = 128  # R = 4.3 needs 127 terms; wider spans go to libsvm


@dataclass(frozen=True)
class Svc1D:
    """A fitted model: decision(x) = φ(x)·w + b; label 1 where decision > 0 (scikit-learn's rule)."""

    w: np.ndarray
    b: float
    center: float
    scale: float  # √γ
    iterations: int

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        phi = features(np.asarray(x, np.float64).ravel(), self.center, self.scale, len(self.w))
        return phi @ self.w + self.b

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.decision_function(x) > 0).astype(np.float64)


def n_terms(radius: float, tol: float = TRUNCATION) -> int | None:
    """Smallest K with Σ_{k≥K} (2R²)^k/k! < tol, or None when K would exceed ``MAX_TERMS``."""
    a = 2.0 * radius * radius
    if a == 0.0:
        return 1
    for k in range(1, MAX_TERMS + 1):
        if k + 1 > a:  # terms decrease from here on: the tail is below a geometric series
            log_term = k * math.log(a) - math.lgamma(k + 1)
            if log_term - math.log1p(-a / (k + 1)) < math.log(tol):
                return k
    return None


def features(x: np.ndarray, center: float, scale: float, terms: int) -> np.ndarray:
    """φ_0..φ_{terms-1} of ``x`` (by recursion, so no power or factorial overflows)."""
    d = scale * (x - center)
    phi = np.empty((len(x), terms))
    phi[:, 0] = np.exp(-d * d)
    step = math.sqrt(2.0) * d
    for k in range(1, terms):
        phi[:, k] = phi[:, k - 1] * step / math.sqrt(k)
    return phi


def fit(
    x: np.ndarray, y: np.ndarray, C: float = 1.0, gamma: float = 1.0, sample_weight: np.ndarray | None = None,
    span: tuple[float, float] | None = None,
) -> Svc1D | None:
    """Fit an RBF SVC on one feature ``x`` with labels ``y`` in {0, 1}.

    ``span`` widens the range the expansion must be exact on (pass the values you will predict).
    Returns None when the expansion would be too long or the solver did not converge.
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.where(np.asarray(y).ravel() > 0, 1.0, -1.0)
    if len(np.unique(y)) < 2:
        raise ValueError("an SVC needs samples of both classes")
    weight = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, np.float64).ravel()
    lo, hi = float(x.min()), float(x.max())
    if span is not None:
        lo, hi = min(lo, span[0]), max(hi, span[1])
    scale = math.sqrt(gamma)
    center = (lo + hi) / 2
    terms = n_terms(scale * (hi - lo) / 2)
    if terms is None:
        return None
    phi = features(x, center, scale, terms)
    solved = _interior_point(y[:, None] * phi, y, C * weight)
    if solved is None:
        return None
    alpha, iterations = solved
    w = phi.T @ (alpha * y)
    b = _intercept(phi @ w, y, C * weight)
    return Svc1D(w=w, b=b, center=center, scale=scale, iterations=iterations)


def _interior_point(A: np.ndarray, y: np.ndarray, u: np.ndarray, tol: float = 1e-9, max_iter: int = 100):
    """min ½ αᵀ(AAᵀ)α − Σα  s.t.  yᵀα = 0, 0 ≤ α ≤ u  (libsvm's dual with Q = AAᵀ).

    Lagrangian stationarity: AAᵀα − 1 − λy − z + v = 0 with z, v ≥ 0 the multipliers of the
    bounds α ≥ 0 and α ≤ u. Returns (α, iterations) or None if not converged.
    """
    n = len(A)
    # s = u − α is carried as its own variable: recomputing it would round to 0 next to the bound.
    alpha, s, z, v, lam = u / 2, u / 2, np.ones(n), np.ones(n), 0.0
    for it in range(1, max_iter + 1):
        q_alpha = A @ (A.T @ alpha)
        rd = q_alpha - 1.0 - lam * y - z + v
        rp = float(y @ alpha)
        mu = (alpha @ z + s @ v) / (2 * n)
        # All relative: the Newton solves lose digits in proportion to the gradient's size, and
        # pushing μ further only lets that rounding grow (D spans ~1e±12 by then).
        objective = 0.5 * float(alpha @ q_alpha) - float(alpha.sum())
        if (np.abs(rd).max() < tol * (1.0 + np.abs(q_alpha).max()) and abs(rp) < tol * (1.0 + u.sum())
                and 2 * n * mu < 0.1 * tol * (1.0 + abs(objective))):
            return alpha, it
        try:
            newton = _Newton(A, y, alpha, s, z, v, rd, rp)
        except np.linalg.LinAlgError:  # free points' D⁻¹ blew up before the tolerance was met
            return None
        da, _, dz, dv = newton.direction(-alpha * z, -s * v)  # affine (predictor) step
        t = min(1.0, _max_step(alpha, s, z, v, da, dz, dv))
        mu_aff = ((alpha + t * da) @ (z + t * dz) + (s - t * da) @ (v + t * dv)) / (2 * n)
        sigma = (mu_aff / mu) ** 3
        da, dlam, dz, dv = newton.direction(sigma * mu - alpha * z - da * dz, sigma * mu - s * v + da * dv)
        t = min(1.0, 0.995 * _max_step(alpha, s, z, v, da, dz, dv))
        alpha, s, lam, z, v = alpha + t * da, s - t * da, lam + t * dlam, z + t * dz, v + t * dv
    return None


class _Newton:
    """One interior-point iterate's Newton system. Eliminating the bound multipliers leaves
    (AAᵀ + D) Δα − yΔλ = r, yᵀΔα = −r_p with D = z/α + v/s diagonal, solved by Woodbury through an
    r × r Cholesky factor."""

    def __init__(self, A, y, alpha, s, z, v, rd, rp) -> None:
        self.A, self.y, self.alpha, self.s, self.z, self.v, self.rd, self.rp = A, y, alpha, s, z, v, rd, rp
        self.d = z / alpha + v / s
        self.dinv = 1.0 / self.d
        self.chol = np.linalg.cholesky(np.eye(A.shape[1]) + (A.T * self.dinv) @ A)
        self.m_y = self._solve(y)
        self.y_m_y = float(y @ self.m_y)

    def _woodbury(self, rhs: np.ndarray) -> np.ndarray:  # (AAᵀ + D)⁻¹ rhs
        t = self.dinv * rhs
        inner = np.linalg.solve(self.chol.T, np.linalg.solve(self.chol, self.A.T @ t))
        return t - self.dinv * (self.A @ inner)

    def _solve(self, rhs: np.ndarray) -> np.ndarray:
        # One step of iterative refinement: D spans many orders of magnitude near the end.
        sol = self._woodbury(rhs)
        return sol + self._woodbury(rhs - self.A @ (self.A.T @ sol) - self.d * sol)

    def direction(self, rz: np.ndarray, rv: np.ndarray):
        """(Δα, Δλ, Δz, Δv) for complementarity targets α·z → α·z + rz and s·v → s·v + rv."""
        m_r = self._solve(-self.rd + rz / self.alpha - rv / self.s)
        dlam = (-self.rp - float(self.y @ m_r)) / self.y_m_y
        da = m_r + self.m_y * dlam
        return da, dlam, (rz - self.z * da) / self.alpha, (rv + self.v * da) / self.s


def _max_step(alpha, s, z, v, da, dz, dv) -> float:
    """Largest t ≤ 1/0.995·… keeping α, u − α, z, v positive (infinite if no bound binds)."""
    t = np.inf
    for value, delta in ((alpha, da), (s, -da), (z, dz), (v, dv)):
        neg = delta < 0
        if neg.any():
            t = min(t, float((-value[neg] / delta[neg]).min()))
    return min(t, 1.0 / 0.995)


def _intercept(g: np.ndarray, y: np.ndarray, c: np.ndarray) -> float:
    """libsvm's intercept for the optimal weights: b minimises Σ c_i max(0, 1 − y_i (g_i + b)).

    That function of b is convex and piecewise linear with kinks at t_i = y_i − g_i; its slope is
    the weight of violating negatives left of b minus that of violating positives right of b. The
    minimiser is the kink where the slope turns non-negative or, where the slope is exactly zero
    on a whole interval (no point on the margin), that interval's midpoint, as libsvm takes.
    """
    t = y - g
    order = np.argsort(t, kind="stable")
    ts, ys, cs = t[order], y[order], c[order]
    pos = np.where(ys > 0, cs, 0.0)
    slope = np.cumsum(np.where(ys < 0, cs, 0.0)) - (pos.sum() - np.cumsum(pos))  # just right of ts[k]
    last_of_tie = np.r_[ts[1:] > ts[:-1], True]
    eps = 1e-12 * cs.sum()
    k = int(np.flatnonzero(last_of_tie & (slope >= -eps))[0])
    if abs(slope[k]) <= eps and k + 1 < len(ts):
        return float((ts[k] + ts[k + 1]) / 2)
    return float(ts[k])
