"""Fixtures for the unlearning tests (digits, class 3, the session-trained cnn)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The models here are tiny: intra-op threads only add contention (on a busy 2-core machine
    two threads made these tests ~10x slower). Restored after each module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_ood(digits_class3):
    from unlearnbench.unlearn.ood import synthetic_images

    info = digits_class3.info
    return synthetic_images(256, info.in_channels, info.image_size, seed=0)
