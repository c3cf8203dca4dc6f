"""Fixtures for the unlearning tests (digits, class 3, the session-trained cnn)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_ood(digits_class3):
    from unlearnbench.unlearn.ood import synthetic_images

    info = digits_class3.info
    return synthetic_images(256, info.in_channels, info.image_size, seed=0)
