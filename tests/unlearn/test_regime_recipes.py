"""Defaults that fit the data: a method starts from the recipe for the data's regime, presets go
through the API as through the CLI, and a large utility drop is said in one line."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

import unlearnbench as ub
from unlearnbench.cli import app
from unlearnbench.core.errors import ConfigError
from unlearnbench.unlearn.presets import PRESETS
from unlearnbench.unlearn.recipes import recipe_for, recipes_by_regime, regime_of, utility_drop


def test_regimes_by_shape():
    assert regime_of(1, 8) == regime_of(3, 16) == "small"
    assert regime_of(3, 32) == regime_of(3, 64) == "natural-32"
    assert regime_of(1, 28) == regime_of(3, 224) == "other"


def test_recipe_choice_follows_the_data_and_the_forget_kind():
    assert recipe_for("salun", 1, 8, 10).name == "defaults"
    random, classwise = recipe_for("salun", 3, 32, 10, False), recipe_for("salun", 3, 32, 10, True)
    # of SalUn's two releases (9576623 behind the tables, a6e89fd today) the newest is the default
    assert random.name == "salun-cifar10-random10-current" and random.config == PRESETS.get(random.name).config
    assert classwise.name == "salun-cifar10-class-current"
    # A method with no preset for CIFAR-shaped data keeps its defaults and says they were not made for it.
    none = recipe_for("grad_ascent", 3, 32, 10, False)
    assert none.name == "defaults" and not none.fits
    lines = recipes_by_regime("salun")
    assert lines[0].startswith("small") and "salun-cifar10-random10-current" in lines[1]
    assert "salun-cifar10-class-current" in lines[1]


def _cifar_shaped(n_train=120, n_test=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n_train + n_test, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(n_train + n_test) % 10
    forget = (x[:12], y[:12])
    retain = (x[12:n_train], y[12:n_train])
    test = (x[n_train:], y[n_train:])
    return ub.UnlearnData.from_tensors(forget, retain, test, num_classes=10)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_salun_on_cifar_shaped_data_starts_from_the_cifar_recipe():
    data = _cifar_shaped()
    fast = {"epochs": 1, "mask_batch_size": 64, "batch_size": 64}
    result = ub.unlearn("salun", _tiny(), data, fast, seed=0, device="cpu")
    preset = PRESETS.get("salun-cifar10-random10-current")
    assert result.info["recipe"] == "salun-cifar10-random10-current"
    assert result.config.lr == preset.config["lr"] and result.config.mask_ratio == preset.config["mask_ratio"]
    assert result.config.epochs == 1  # explicit keys win over the recipe
    defaults = ub.unlearn("salun", _tiny(), data, fast, recipe=None, seed=0, device="cpu")
    assert defaults.info["recipe"] == "given" and defaults.config.lr != preset.config["lr"]


def test_the_api_takes_a_preset_like_the_cli():
    data = _cifar_shaped()
    result = ub.unlearn(None, _tiny(), data, {"epochs": 1}, preset="salun-cifar10-class", seed=0, device="cpu")
    preset = PRESETS.get("salun-cifar10-class")
    assert result.method == "salun" and result.info["recipe"] == "salun-cifar10-class"
    assert result.config.lr == preset.config["lr"]
    with pytest.raises(ConfigError, match="uses method 'salun', not 'scar'"):
        ub.unlearn("scar", _tiny(), data, preset="salun-cifar10-class")
    with pytest.raises(ConfigError, match="Name a method"):
        ub.unlearn(None, _tiny(), data)


def test_a_method_without_a_fitting_recipe_warns_before_running():
    with pytest.warns(UserWarning, match="grad_ascent has no recipe for 3x32x32 images"):
        ub.unlearn("grad_ascent", _tiny(), _cifar_shaped(), {"epochs": 1}, seed=0, device="cpu",
                   check_utility=False)


def test_utility_drop_line():
    assert utility_drop("salun", {"retain_acc": 90.0, "test_acc": 80.0}, {"retain_acc": 81.0, "test_acc": 70.5}) is None
    line = utility_drop("salun", {"retain_acc": 90.0, "test_acc": 91.0}, {"retain_acc": 85.0, "test_acc": 35.0},
                        "defaults", fits=False)
    assert line.startswith("salun cut test accuracy from 91.0% to 35.0% (56.0 points): likely salun's defaults "
                           "were tuned on 8x8 digits")
    assert "salun-cifar10-random10" in line and "--set lr=" in line
    assert "\n" not in line


def test_a_wrecked_model_warns_through_the_api():
    """Ascent with a huge learning rate ruins a trained digits model: the warning says so, once."""
    from unlearnbench.core.data import prepare

    _, data = prepare("digits", "random:0.1", split_seed=0)
    from unlearnbench.core.models import create_model
    from unlearnbench.core.train import TrainConfig, fit

    torch.manual_seed(0)
    model = create_model("cnn", 10, 1, 8, data.info.mean, data.info.std)
    fit(model, data.retain, data.val, data.info, TrainConfig(epochs=3, batch_size=64, lr=0.05, seed=0, device="cpu"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ub.unlearn("grad_ascent", model.eval(), data, {"epochs": 2, "lr": 5.0, "stop_forget_acc": None},
                            seed=0, device="cpu")
    notes = [str(w.message) for w in caught if "points): likely" in str(w.message)]
    assert len(notes) == 1 and result.info["utility_warning"] == notes[0]
    # The report says it too, given the original (a model here; a Report or dict works alike).
    with pytest.warns(UserWarning, match=r"cut (test|retain) accuracy from"):
        report = ub.evaluate(result.model, data, original=model, metrics=["retain_acc", "test_acc"])
    assert "points): likely" in report.config["utility_warning"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the original against itself: no drop, no warning
        assert "utility_warning" not in ub.evaluate(model, data, original=model, metrics=["retain_acc", "test_acc"]).config


def test_ls_methods_name_says_which_recipe():
    out = CliRunner().invoke(app, ["ls", "methods", "salun"])
    assert out.exit_code == 0, out.output
    assert "natural-32" in out.stdout and "salun-cifar10-random10" in out.stdout


# ----------------------------------------------------------------------------- recipe_for's choice, rule by rule


def test_regime_edges():
    assert regime_of(3, 16) == "small" and regime_of(3, 17) == "other" and regime_of(1, 16) == "small"
    assert regime_of(3, 23) == "other" and regime_of(3, 24) == "natural-32"
    assert regime_of(3, 64) == "natural-32" and regime_of(3, 65) == "other"
    assert regime_of(1, 32) == regime_of(4, 32) == "other"  # natural-32 is RGB only


class _FakePresets:
    def __init__(self, presets):
        self.presets = {p.name: p for p in presets}

    def names(self):
        return sorted(self.presets)

    def get(self, name):
        return self.presets[name]


def _fake_preset(name, dataset, forget, release="", method="m", **config):
    from unlearnbench.unlearn.presets import Preset

    return Preset(name=name, method=method, dataset=dataset, forget=forget, config=config, release=release)


def test_recipe_for_prefers_the_forget_kind_then_the_class_count_then_the_newest_release(monkeypatch):
    import unlearnbench.unlearn.presets as presets_mod
    from unlearnbench.unlearn.recipes import _release_day

    fake = _FakePresets([
        _fake_preset("a-c100-class", "cifar100", "class:0", "o/r@1234567 (2024-01-01)", lr=1),
        _fake_preset("b-c10-random-old", "cifar10", "random:0.1", "o/r@1234567 (2023-01-01)", lr=2),
        _fake_preset("c-c10-random-new", "cifar10", "random:0.1", "o/r@1234567 (2025-01-01)", lr=3),
        _fake_preset("aa-c10-random-undated", "cifar10", "random:0.1", lr=4),
        _fake_preset("d-digits", "digits", "class:3", lr=5),  # the small regime: never a natural-32 recipe
        _fake_preset("e-other-method", "cifar10", "random:0.1", method="other", lr=6),
        _fake_preset("f-unknown-data", "nowhere", "random:0.1", lr=7),
        _fake_preset("g-c20-subclass", "cifar20", "subclass:0", "o/r@1234567 (2020-01-01)", lr=8),
    ])
    monkeypatch.setattr(presets_mod, "PRESETS", fake)
    assert _release_day("o/r@1234567 (2025-01-02)") == 20250102 and _release_day("") == 0
    assert recipe_for("m", 3, 32, 10, False).name == "c-c10-random-new"  # newest of the equally close
    assert recipe_for("m", 3, 32, 10, None).name == "c-c10-random-new"
    assert recipe_for("m", 3, 32, 10, True).name == "g-c20-subclass"  # the kind first (subclass is class-wise)
    assert recipe_for("m", 3, 32, 100, True).name == "a-c100-class"  # then the nearest class count
    assert recipe_for("m", 3, 32, 100, None).name == "a-c100-class"
    assert recipe_for("m", 3, 32, 100, False).name == "c-c10-random-new"  # the kind outweighs the class count
    r = recipe_for("m", 3, 32, 10, False)
    assert (r.method, r.regime, r.fits, r.config) == ("m", "natural-32", True, {"lr": 3})
    assert r.config is not fake.get(r.name).config  # a copy: changing it cannot change the preset
    small = recipe_for("m", 1, 8, 10, True)
    assert (small.name, small.regime, small.fits, small.config) == ("defaults", "small", True, {})
    other = recipe_for("m", 1, 28, 10, True)
    assert (other.name, other.regime, other.fits) == ("defaults", "other", False)
    assert recipe_for("other", 3, 32, 10, True).name == "e-other-method"  # the kind is a preference only
    none = recipe_for("nobody", 3, 32, 10, True)
    assert (none.name, none.fits) == ("defaults", False)


def test_recipe_describe_and_the_lines_by_regime(monkeypatch):
    from unlearnbench.unlearn.recipes import MethodRecipe

    assert MethodRecipe("m", "small", "defaults").describe() == \
        "small (images of at most 16 px (digits-like)): the method's defaults (tuned on digits)"
    assert MethodRecipe("m", "other", "defaults", fits=False).describe() == \
        "other (any other shape): the method's defaults (tuned on digits), not tuned for it"
    assert MethodRecipe("m", "natural-32", "p").describe() == "natural-32 (RGB images of 24-64 px (CIFAR-like)): preset p"
    assert MethodRecipe("m", "natural-32", "a-c10").describe().endswith("): preset a-c10")  # sorts before "defaults"
    import unlearnbench.unlearn.presets as presets_mod

    monkeypatch.setattr(presets_mod, "PRESETS", _FakePresets([_fake_preset("p", "cifar10", "random:0.1")]))
    assert recipes_by_regime("m") == [
        "small (images of at most 16 px (digits-like)): the method's defaults (tuned on digits)",
        "natural-32 (RGB images of 24-64 px (CIFAR-like)): preset p",  # one recipe for both kinds: one line
        "other (any other shape): the method's defaults, not tuned for it",
    ]
    monkeypatch.setattr(presets_mod, "PRESETS", _FakePresets([_fake_preset("p", "cifar10", "random:0.1"),
                                                              _fake_preset("q", "cifar10", "class:1")]))
    assert recipes_by_regime("m")[1] == ("natural-32 (RGB images of 24-64 px (CIFAR-like)): preset p for random "
                                         "forgetting; preset q for class-wise")


def test_utility_drop_threshold_causes_and_suggestions(monkeypatch):
    import unlearnbench.unlearn.presets as presets_mod

    before = {"retain_acc": 90.0, "test_acc": 80.0}
    assert utility_drop("m", before, {"retain_acc": 80.0, "test_acc": 70.0}) is None  # exactly 10 points: not reported
    assert utility_drop("m", before, {"retain_acc": 79.9}) is not None  # one key is enough
    assert utility_drop("m", {"forget_acc": 90.0}, {"forget_acc": 0.0}) is None  # forgetting is not a utility drop
    monkeypatch.setattr(presets_mod, "PRESETS", _FakePresets([_fake_preset("p", "cifar10", "random:0.1"),
                                                              _fake_preset("q", "cifar10", "class:1")]))
    line = utility_drop("m", before, {"retain_acc": 60.0, "test_acc": 65.0}, "given")
    assert line == ("m cut retain accuracy from 90.0% to 60.0% (30.0 points): likely the learning rate or number of "
                    "epochs is too aggressive for this model; try a preset (p, q; `ls presets`) or a lower lr "
                    "(--set lr=...).")
    line = utility_drop("m", before, {"retain_acc": 85.0, "test_acc": 50.0}, "p")
    assert line.startswith("m cut test accuracy from 80.0% to 50.0% (30.0 points): likely the recipe p was made for "
                           "another model or dataset than this one; try a preset (q; `ls presets`)")
    assert "likely the learning rate" in utility_drop("m", before, {"retain_acc": 0.0}, "defaults", fits=True)
    assert "likely the learning rate" in utility_drop("m", before, {"retain_acc": 0.0})  # fits unless told otherwise
    assert "tuned on 8x8 digits" in utility_drop("m", before, {"retain_acc": 0.0}, "", fits=False)
    assert "made for another model" in utility_drop("m", before, {"retain_acc": 0.0}, "p", fits=False)
    assert utility_drop("nobody", before, {"retain_acc": 0.0}, "given").endswith(
        "too aggressive for this model; try a lower lr (--set lr=...).")  # no preset to suggest
