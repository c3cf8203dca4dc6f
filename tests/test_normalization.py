"""Normalisation travels with the data: mean/std given with UnlearnData become the model's first
layer in evaluate / unlearn / robust_accuracy, and a model near chance whose accuracy a usual
normalisation restores is named in a warning (a hand-built model makes every number exact)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

import unlearnbench as ub
from unlearnbench.core.errors import DataError
from unlearnbench.core.foreign import Normalized, with_normalization
from unlearnbench.core.normcheck import mismatch_hint

MEAN, STD = 0.5, 0.05


def _pairs(n: int, seed: int):
    """Class 0: grey 0.45 images, class 1: grey 0.55 (uint8 115 and 140), alternating."""
    y = torch.arange(n) % 2
    x = torch.where(y.view(-1, 1, 1, 1) == 0, torch.tensor(115, dtype=torch.uint8),
                    torch.tensor(140, dtype=torch.uint8)).expand(n, 3, 4, 4).clone()
    return x, y


def raw_model() -> nn.Module:
    """Trained (by hand) on normalised inputs: the sign of the mean normalised pixel is the class.
    On [0, 1] images every mean is positive: class 1 always, 50 % (chance)."""
    lin = nn.Linear(3 * 4 * 4, 2)
    with torch.no_grad():
        lin.weight[0].fill_(-1.0 / 48)
        lin.weight[1].fill_(1.0 / 48)
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin).eval()


def _data(**norm):
    return ub.UnlearnData.from_tensors(_pairs(8, 0), _pairs(40, 1), _pairs(20, 2), num_classes=2, **norm)


def test_mean_std_given_with_the_data_become_the_models_first_layer():
    data = _data(mean=MEAN, std=STD)
    assert data.info.normalization == ((MEAN,) * 3, (STD,) * 3)
    model = raw_model()
    report = ub.evaluate(model, data, metrics=["test_acc", "retain_acc"])
    assert report["test_acc"] == 100.0 and report["retain_acc"] == 100.0
    assert "normalization_warning" not in report.config
    res = ub.robust_accuracy(model, data, "fgsm", eps=0.001, n=20)
    assert res.clean_acc == 100.0
    # A model that already applies exactly this normalisation is not wrapped twice.
    wrapped = with_normalization(model, MEAN, STD)
    assert ub.evaluate(wrapped, data, metrics=["test_acc"])["test_acc"] == 100.0
    out = ub.unlearn("finetune", model, data, {"epochs": 1, "lr": 1e-6}, seed=0, device="cpu")
    assert isinstance(out.model, Normalized) and not isinstance(model, Normalized)  # the input is untouched
    assert ub.evaluate(out.model, data, metrics=["test_acc"])["test_acc"] == 100.0


def test_a_missing_normalisation_is_named():
    data = _data()
    with pytest.warns(UserWarning, match=r"near chance \(50\.0%\) on these \[0, 1\] images but reaches 100\.0% "
                      r"\(n=20\) with the data's own statistics"):
        report = ub.evaluate(raw_model(), data, metrics=["test_acc"])
    assert report["test_acc"] == 50.0 and "mean=..., std=..." in report.config["normalization_warning"]


def test_mean_std_in_0_255_units():
    with pytest.raises(DataError, match=r"in 0-255 units, but the images are in \[0, 1\]: divide both by 255 "
                       r"\(mean \(0\.5, 0\.5, 0\.5\), std \(0\.05, 0\.05, 0\.05\)\)"):
        _data(mean=127.5, std=12.75)
    # The same mistake made in the model: the hint says to divide by 255.
    data = _data()
    hint = mismatch_hint(with_normalization(raw_model(), 127.5, 12.75), data.test, data.info, 2)
    assert hint is not None and "divided by 255" in hint and "reaches 100.0%" in hint


def test_no_warning_without_evidence():
    """At chance with no normalisation helping (labels unrelated to the images): silent."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (60, 3, 4, 4), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 2, (60,), generator=g)
    data = ub.UnlearnData.from_tensors((x[:8], y[:8]), (x[8:40], y[8:40]), (x[40:], y[40:]), num_classes=2)
    assert mismatch_hint(raw_model(), data.test, data.info, 2) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ub.evaluate(raw_model(), data, metrics=["test_acc"])


@pytest.mark.parametrize("bad", [{"mean": 0.5}, {"mean": (0.5, 0.5), "std": 0.1}, {"mean": 0.5, "std": 0.0}])
def test_bad_normalisation_is_one_sentence(bad):
    with pytest.raises(DataError):
        _data(**bad)
