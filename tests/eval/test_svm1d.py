"""The low-rank one-feature SVC (eval.svm1d) against scikit-learn's libsvm on the same problems."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from unlearnbench.eval import svm1d


def libsvm(x, y, weight=None, tol=1e-8):
    return SVC(C=3, gamma="auto", kernel="rbf", tol=tol).fit(x[:, None], y, sample_weight=weight)


def problem(kind: str, n: int, rng: np.random.Generator):
    members, nonmembers = {
        "overlap": lambda: (rng.beta(5, 1.2, n), rng.beta(4, 1.5, n)),
        "separated": lambda: (rng.normal(0.8, 0.05, n), rng.normal(0.3, 0.05, n)),
        "saturated": lambda: (np.where(rng.random(n) < 0.6, 1.0, rng.beta(30, 1, n)),
                              np.where(rng.random(n) < 0.3, 1.0, rng.beta(8, 2, n))),
        "entropy": lambda: (rng.gamma(0.5, 0.3, n), np.minimum(rng.gamma(1.5, 0.8, n), 4.6)),
        "unequal": lambda: (rng.beta(5, 1.2, n // 3), rng.beta(4, 1.5, n)),
    }[kind]()
    return np.r_[members, nonmembers], np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]


@pytest.mark.parametrize("gamma", [1.0, 0.25, 2.5])
@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-2.0, 3.0), (0.0, 4.6)])
def test_feature_map_reproduces_the_gaussian_kernel(lo, hi, gamma):
    x = np.linspace(lo, hi, 301)
    terms = svm1d.n_terms(np.sqrt(gamma) * (hi - lo) / 2)
    phi = svm1d.features(x, (lo + hi) / 2, np.sqrt(gamma), terms)
    kernel = np.exp(-gamma * (x[:, None] - x[None, :]) ** 2)
    assert np.abs(phi @ phi.T - kernel).max() < 1e-13
    half = phi[:, : terms // 2]  # the truncation is what makes it exact: half the terms are not
    assert np.abs(half @ half.T - kernel).max() > 1e-9


def test_too_wide_a_feature_is_refused():
    assert svm1d.n_terms(4.3) is not None and svm1d.n_terms(4.4) is None
    x, y = np.r_[np.zeros(5), np.full(5, 30.0)], np.r_[np.ones(5), np.zeros(5)]
    assert svm1d.fit(x, y, C=3.0) is None


@pytest.mark.parametrize("kind", ["overlap", "separated", "saturated", "entropy", "unequal"])
@pytest.mark.parametrize("seed", [0, 1])
def test_decision_function_equals_libsvm_at_a_tight_tolerance(kind, seed):
    rng = np.random.default_rng(seed)
    x, y = problem(kind, 400, rng)
    grid = np.linspace(x.min(), x.max(), 2001)
    ref = libsvm(x, y).decision_function(grid[:, None])
    model = svm1d.fit(x, y, C=3.0)
    assert model is not None
    mine = model.decision_function(grid)
    assert np.abs(mine - ref).max() < 1e-4
    clear = np.abs(ref) > 1e-4
    assert np.array_equal(model.predict(grid)[clear], (ref[clear] > 0).astype(float))


def test_weights_are_libsvm_sample_weights_and_equal_duplicated_points():
    rng = np.random.default_rng(3)
    values = np.round(rng.beta(4, 2, 300), 2)  # many exact duplicates
    labels = (rng.random(300) < 0.5 + 0.4 * (values - 0.5)).astype(float)
    pairs, counts = np.unique(np.stack([values, labels], 1), axis=0, return_counts=True)
    grid = np.linspace(0, 1, 501)
    merged = svm1d.fit(pairs[:, 0], pairs[:, 1], C=3.0, sample_weight=counts).decision_function(grid)
    duplicated = svm1d.fit(values, labels, C=3.0).decision_function(grid)
    weighted_ref = libsvm(pairs[:, 0], pairs[:, 1], weight=counts.astype(float)).decision_function(grid[:, None])
    assert np.abs(merged - duplicated).max() < 1e-5
    assert np.abs(merged - weighted_ref).max() < 1e-4


@pytest.mark.parametrize("n_members,n_nonmembers", [(10, 10), (12, 8), (7, 11)])
def test_intercept_follows_libsvm_when_the_classes_coincide(n_members, n_nonmembers):
    # Every point at one value: the weights vanish and only the intercept decides. With equal
    # counts every point is a bounded support vector and the optimal intercepts form an interval
    # (libsvm takes its midpoint); otherwise the larger class sits on the margin.
    x = np.full(n_members + n_nonmembers, 0.5)
    y = np.r_[np.ones(n_members), np.zeros(n_nonmembers)]
    model = svm1d.fit(x, y, C=3.0)
    ref = libsvm(x, y)
    assert model.b == pytest.approx(float(ref.intercept_[0]), abs=1e-6)
    assert model.decision_function(np.array([0.5]))[0] == pytest.approx(ref.decision_function([[0.5]])[0], abs=1e-6)


def test_a_large_overlapping_problem_converges_and_agrees_with_libsvm():
    rng = np.random.default_rng(0)
    x, y = problem("overlap", 3000, rng)
    model = svm1d.fit(x, y, C=3.0)
    assert model is not None and model.iterations < 60
    grid = np.linspace(0, 1, 1001)
    assert np.abs(model.decision_function(grid) - libsvm(x, y, tol=1e-6).decision_function(grid[:, None])).max() < 1e-3


def test_a_single_class_is_an_error():
    with pytest.raises(ValueError, match="both classes"):
        svm1d.fit(np.linspace(0, 1, 10), np.ones(10))
