"""Shared fixtures. Expensive things (trained digits model, MLflow store) are session-scoped."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from unlearnbench.core.data import prepare
from unlearnbench.core.models import create_model
from unlearnbench.core.runtime import seed_everything
from unlearnbench.core.train import TrainConfig, fit

# One intra-op thread for the whole suite: the models here are tiny, so a second OpenMP thread
# barely helps and was 10-50x slower whenever the 2 cores were shared; and a fixed thread count
# keeps the session-trained models bit-identical whichever test happens to create them first.
torch.set_num_threads(1)

# Hypothesis profiles: `ci` (the default, what `make test` runs) keeps generated-input tests
# bounded so the suite stays fast; `deep` (`make test-deep`) runs many more examples.
# Derandomized in CI so a red build can be replayed exactly; `deep` explores fresh inputs.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# Every CLI run of the suite (in-process or a subprocess, which inherits the environment) writes the
# traceback of an escaping exception here; a test after which a new file appears fails, so an
# internal error (exit 70) is never mistaken for a refused input, whatever the test asserted.
_CRASH_DIR = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"unlearnbench-test-crashes-{os.getpid()}")
os.environ["UNLEARNBENCH_CRASH_DIR"] = _CRASH_DIR


@pytest.fixture(autouse=True)
def _no_internal_errors(request):
    before = set(os.listdir(_CRASH_DIR)) if os.path.isdir(_CRASH_DIR) else set()
    yield
    if request.node.get_closest_marker("internal_error"):
        return  # a test of the last line of defence itself
    new = sorted(set(os.listdir(_CRASH_DIR)) - before) if os.path.isdir(_CRASH_DIR) else []
    if new:
        with open(os.path.join(_CRASH_DIR, new[0]), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        pytest.fail(f"a CLI run ended in an internal error (exit 70); traceback {new[0]}:\n{text}", pytrace=False)


def pytest_addoption(parser):
    parser.addoption("--deep", action="store_true", help="also run tests marked `deep` (make test-deep)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--deep"):
        return
    skip = pytest.mark.skip(reason="deep: run by `make test-deep`")
    for item in items:
        if "deep" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def digits_splits():
    splits, _ = prepare("digits", split_seed=0)
    return splits


@pytest.fixture(scope="session")
def digits_class3():
    """UnlearnData for forgetting class 3 of digits (split_seed 0)."""
    _, data = prepare("digits", "class:3", split_seed=0)
    return data


@pytest.fixture(scope="session")
def digits_random():
    _, data = prepare("digits", "random:0.1", split_seed=0)
    return data


def train_digits_cnn(train_set, splits, epochs: int = 20, seed: int = 0):
    info = splits.info
    seed_everything(seed)  # the init must not depend on which tests ran before
    model = create_model("cnn", info.num_classes, info.in_channels, info.image_size, info.mean, info.std)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, seed=seed, device="cpu")
    fit(model, train_set, splits.val, info, cfg)
    return model.eval()


@pytest.fixture(scope="session")
def digits_cnn(digits_splits):
    """A cnn trained on the full digits training split (the 'original' model). Do not mutate."""
    return train_digits_cnn(digits_splits.train, digits_splits)


@pytest.fixture(scope="session")
def digits_cnn_retrain_class3(digits_splits, digits_class3):
    """The retrain-from-scratch reference for forgetting class 3."""
    return train_digits_cnn(digits_class3.retain, digits_splits)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    """One SQLite MLflow store per test session (schema migrations take seconds); isolate runs
    by experiment name."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Caches (the imagefolder decode cache) go to a temp folder, never the user's ~/.cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("UNLEARNBENCH_CACHE", str(tmp_path_factory.mktemp("unlearnbench-cache")))
    yield
    patch.undo()
