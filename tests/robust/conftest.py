"""Fixtures for the robustness tests: a private copy of the digits cnn and a few test points."""

from __future__ import annotations

import copy

import pytest


@pytest.fixture(scope="module")
def cnn(digits_cnn):
    """A copy of the session cnn that tests may put in train mode (never mutate digits_cnn)."""
    return copy.deepcopy(digits_cnn).eval()


@pytest.fixture(scope="session")
def digits_points(digits_splits):
    """The first 200 digits test images as floats in [0, 1] with labels."""
    test = digits_splits.test
    return test.x[:200].float() / 255, test.y[:200].clone()

