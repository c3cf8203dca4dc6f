"""Real data from a registry package: Debian's dataset-fashion-mnist (installed by .ci/run)."""

from __future__ import annotations

import pytest
import torch

from unlearnbench.core.data import FASHION_MNIST_SYSTEM_DIR, DataSource, load_dataset, prepare
from unlearnbench.core.models import create_model
from unlearnbench.core.train import TrainConfig, accuracy, fit

pytestmark = pytest.mark.skipif(
    not (FASHION_MNIST_SYSTEM_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)


def test_fashion_mnist_from_debian_package(tmp_path):
    raw = load_dataset("fashion-mnist", DataSource(tmp_path))  # empty --data-root: falls back to /usr/share
    assert raw.train.x.shape == (60000, 1, 28, 28) and raw.test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(raw.train.y).tolist() == [6000] * 10


def test_fashion_mnist_class_forgetting_split_and_quick_training():
    splits, data = prepare("fashion-mnist", "class:Sandal", split_seed=0)
    assert len(splits.val) == 6000 and set(data.forget.y.tolist()) == {5}
    assert len(data.test_retained) == 9000
    info = splits.info
    model = create_model("mlp", 10, 1, 28, info.mean, info.std)
    small = splits.train.select(torch.arange(0, len(splits.train), 6))  # 9k images: seconds on 2 cores
    fit(model, small, None, info, TrainConfig(epochs=2, batch_size=128, lr=0.05, device="cpu"))
    assert accuracy(model, splits.test) > 75.0
