"""The low-rank one-feature SVC (eval.svm1d) against scikit-learn's libsvm on the same problems."""

from __future__ import annotations

import dataclasses

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
        # modified entropy: most values near 0, the misclassified ones spread up to ~20
        "wide": lambda: (rng.gamma(0.3, 0.01, n), np.where(rng.random(n) < 0.1, rng.uniform(0.5, 20, n),
                                                           rng.gamma(0.3, 0.1, n))),
        "unequal": lambda: (rng.beta(5, 1.2, n // 3), rng.beta(4, 1.5, n)),
    }[kind]()
    return np.r_[members, nonmembers], np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]


@pytest.mark.parametrize("gamma", [1.0, 0.25, 2.5])
@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-2.0, 3.0), (0.0, 69.0)])
def test_pivoted_cholesky_reproduces_the_gaussian_kernel(lo, hi, gamma):
    rng = np.random.default_rng(0)
    values = np.sort(np.r_[rng.uniform(lo, hi, 400), lo, hi])
    factor, pivots = svm1d.pivoted_cholesky(values, gamma)
    kernel = np.exp(-gamma * (values[:, None] - values[None, :]) ** 2)
    assert np.abs(factor @ factor.T - kernel).max() <= 1.01 * svm1d.TOLERANCE
    # stopping one column early is not exact: the tolerance is what stops it
    short = factor[:, :-1]
    assert np.abs(short @ short.T - kernel).max() > svm1d.TOLERANCE


def test_rank_grows_with_the_span_and_is_capped():
    ranks = [len(svm1d.pivoted_cholesky(np.linspace(0, span, 2000))[1]) for span in (1, 4.6, 15, 69)]
    assert ranks == sorted(ranks) and ranks[0] <= 12 and ranks[-1] < svm1d.MAX_RANK
    assert svm1d.pivoted_cholesky(np.linspace(0, 69, 2000), max_rank=50) is None


def test_new_values_map_through_the_pivots():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 3, 300), (rng.random(300) < 0.5).astype(float)
    model = svm1d.fit(x, y, C=3.0, points=[3.5])
    new = np.array([0.1, 1.7, 2.9, 3.5])
    kernel = np.exp(-((new[:, None] - new[None, :]) ** 2))
    assert np.abs(model.features(new) @ model.features(new).T - kernel).max() < 1e-10


@pytest.mark.parametrize("kind", ["overlap", "separated", "saturated", "entropy", "wide", "unequal"])
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
    # a fitted model is a value: it cannot be changed after the fit by assigning to it
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.b = 0.0  # type: ignore[misc]


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


def test_a_single_class_or_a_nan_is_an_error():
    with pytest.raises(ValueError, match="both classes"):
        svm1d.fit(np.linspace(0, 1, 10), np.ones(10))
    with pytest.raises(ValueError, match="NaN"):
        svm1d.fit(np.r_[np.linspace(0, 1, 9), np.nan], np.r_[np.ones(5), np.zeros(5)])
