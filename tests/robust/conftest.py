"""Fixtures for the robustness tests: a private copy of the digits cnn and a few test points."""

from __future__ import annotations

import copy

import pytest
import torch


@pytest.fixture(scope="module")
def cnn(digits_cnn):
    """A copy of the session cnn that tests may put in train mode (never mutate digits_cnn)."""
    return copy.deepcopy(digits_cnn).eval()


@pytest.fixture(scope="session")
def digits_points(digits_splits):
    """The first 200 digits test images as floats in [0, 1] with labels."""
    test = digits_splits.test
    return test.x[:200].float() / 255, test.y[:200].clone()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Attacks here run thousands of ops on tiny tensors (a few dozen 8x8 images), where a second
    thread has little to gain, while on a busy shared 2-core machine OpenMP hand-off made them far
    slower (FAB: 0.14 s on 1 thread vs 6.8 s on 2). Module scope: restored before other test
    directories run; the session-scoped digits_cnn is built before this applies."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
