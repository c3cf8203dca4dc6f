"""Fixtures of the generation tests: a tiny conditional DDPM briefly trained on digits."""

from __future__ import annotations

import pytest
import torch

from unlearnbench.core.diffusion import DiffusionTrainConfig, fit_diffusion
from unlearnbench.core.models import create_model


@pytest.fixture(scope="session")
def tiny_ddpm(digits_splits):
    """ddpm_tiny after 20 training steps on digits (enough to be a non-trivial function). Do not mutate."""
    info = digits_splits.info
    with torch.random.fork_rng(devices=[]):  # the init must not depend on which tests ran before
        torch.manual_seed(0)
        model = create_model("ddpm_tiny", info.num_classes, info.in_channels, info.image_size)
    fit_diffusion(model, digits_splits.train, info, DiffusionTrainConfig(steps=20, batch_size=64, warmup=5, device="cpu"))
    return model.eval()
