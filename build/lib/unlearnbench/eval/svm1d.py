"""Exact RBF-kernel SVC on one input feature, solved through a low-rank factor of its kernel.

MIA-Efficacy fits ``SVC(C=3, kernel="rbf", gamma="auto")`` on a single feature (a confidence or an
entropy) for 2·|test| points. libsvm's SMO needs ~|points| iterations, each computing two kernel
columns, so 20k points take seconds of ``exp`` calls. Yet on one feature the Gaussian kernel
matrix has a small numerical rank: about 10 for values in [0, 1], growing linearly with the span
(~60 for a span of 15, ~260 for 69). A greedily pivoted Cholesky factorisation K ≈ LLᵀ over the
distinct values stops once every residual diagonal entry is below ``TOLERANCE``; the residual
K − LLᵀ is positive semi-definite, so that also bounds every entry: the Gram matrix equals a rank-r
product to 1e-12, checked, not assumed. The dual QP then has a low-rank Hessian, and a primal–dual
interior-point method (Mehrotra predictor–corrector, Woodbury solves) converges in a few dozen
iterations of O(n r²) each.

The problem solved is libsvm's, with the same conventions, so the answer is scikit-learn's up to
libsvm's own stopping tolerance (``tol=1e-3``): the weight vector is the unique optimum, and the
intercept follows libsvm's rule: pinned by a margin point when there is one, else the midpoint of
the interval of optimal intercepts. Samples may carry weights (libsvm's ``sample_weight``: the box
bound of point i is C·weight_i), which is what makes merging duplicated points exact.

New values are mapped through the pivots (φ(x) solves L_P φ = k_P(x)); pass the values you will
predict as ``points`` so the factorisation is exact on them too. When more than ``MAX_RANK``
columns would be needed, or the interior point method does not converge, :func:`fit` returns
``None`` and the caller uses libsvm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

TOLERANCE = 1e-12  # bound on every kernel entry's error
MAX_RANK = 400  # a span of ~110/√γ; the widest MIA feature (modified entropy, ≤ 69) needs ~260


@dataclass(frozen=True)
class Svc1D:
    """A fitted model: decision(x) = φ(x)·w + b; label 1 where decision > 0 (scikit-learn's rule)."""

    w: np.ndarray
    b: float
    pivots: np.ndarray  # the r values the factor is built on
    factor: np.ndarray  # L_P: the factor's rows at the pivots (r × r, lower triangular)
    gamma: float
    iterations: int

    def features(self, x: np.ndarray) -> np.ndarray:
        k = np.exp(-self.gamma * (np.asarray(x, np.float64).ravel()[None, :] - self.pivots[:, None]) ** 2)
        return solve_triangular(self.factor, k, lower=True).T

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.features(x) @ self.w + self.b

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.decision_function(x) > 0).astype(np.float64)


def pivoted_cholesky(
    values: np.ndarray, gamma: float = 1.0, tol: float = TOLERANCE, max_rank: int = MAX_RANK
) -> tuple[np.ndarray, np.ndarray] | None:
    """L (len(values) × r) and the pivot indices with |exp(-γ(vᵢ-vⱼ)²) − (LLᵀ)ᵢⱼ| ≤ tol for all i, j,
    or None when that needs more than ``max_rank`` columns."""
    m = len(values)
    residual = np.ones(m)  # diagonal of K − LLᵀ; K's diagonal is 1
    factor = np.zeros((m, min(max_rank, m)))
    pivots: list[int] = []
    for k in range(factor.shape[1]):
        i = int(np.argmax(residual))
        if residual[i] <= tol:
            return factor[:, :k], np.asarray(pivots, dtype=np.int64)
        column = np.exp(-gamma * (values - values[i]) ** 2) - factor[:, :k] @ factor[i, :k]
        factor[:, k] = column / np.sqrt(residual[i])
        residual -= factor[:, k] ** 2
        residual[i] = 0.0  # exactly reproduced; rounding must not pick it again
        pivots.append(i)
    return (factor, np.asarray(pivots, dtype=np.int64)) if residual.max() <= tol else None


def fit(
    x: np.ndarray, y: np.ndarray, C: float = 1.0, gamma: float = 1.0, sample_weight: np.ndarray | None = None,
    points: np.ndarray | None = None,
) -> Svc1D | None:
    """Fit an RBF SVC on one feature ``x`` with labels ``y`` in {0, 1}.

    ``points``: values to be predicted later, on which the factorisation is made exact as well.
    Returns None when the kernel's rank is too high or the solver did not converge.
    """
    x = np.asarray(x, np.float64).ravel()
    y = np.where(np.asarray(y).ravel() > 0, 1.0, -1.0)
    if len(np.unique(y)) < 2:
        raise ValueError("an SVC needs samples of both classes")
    extra = np.empty(0) if points is None else np.asarray(points, np.float64).ravel()
    if not (np.isfinite(x).all() and np.isfinite(extra).all()):
        raise ValueError("the SVC feature contains NaN or infinite values")
    weight = np.ones_like(x) if sample_weight is None else np.asarray(sample_weight, np.float64).ravel()
    values, where = np.unique(np.r_[x, extra], return_inverse=True)
    factored = pivoted_cholesky(values, gamma, max_rank=MAX_RANK)
    if factored is None:
        return None
    factor, pivots = factored
    phi = factor[where.ravel()[: len(x)]]
    solved = _interior_point(y[:, None] * phi, y, C * weight)
    if solved is None:
        return None
    alpha, iterations = solved
    w = phi.T @ (alpha * y)
    b = _intercept(phi @ w, y, C * weight)
    return Svc1D(w=w, b=b, pivots=values[pivots], factor=factor[pivots], gamma=gamma, iterations=iterations)


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
