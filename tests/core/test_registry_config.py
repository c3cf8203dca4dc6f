from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Literal

import pytest

from unlearnbench.core import registry as registry_mod
from unlearnbench.core.config import configclass, flatten, from_dict, load_yaml, parse_overrides
from unlearnbench.core.errors import ConfigError, UnknownNameError, UserError
from unlearnbench.core.registry import Registry


def test_register_get_and_info():
    reg: Registry = Registry("widgets")

    @reg.register("alpha", summary="first", reads=("forget",))
    def alpha():
        """Docstring summary."""

    assert reg.get("alpha") is alpha
    assert reg.info("alpha")["reads"] == ("forget",)
    assert reg.entry("alpha").summary == "first"
    assert "alpha" in reg and len(reg) == 1 and reg.names() == ["alpha"]


def test_summary_falls_back_to_docstring():
    reg: Registry = Registry("widgets")

    @reg.register()
    def beta():
        """Beta does things.

        More text."""

    assert reg.entry("beta").summary == "Beta does things."


def test_duplicate_name_rejected():
    reg: Registry = Registry("widgets")
    reg.add("x", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", 2)


def test_unknown_name_suggests_and_lists():
    reg: Registry = Registry("methods")
    for n in ("salun", "scar", "retrain"):
        reg.add(n, n)
    with pytest.raises(UnknownNameError) as exc:
        reg.get("salon")
    msg = str(exc.value)
    assert "Unknown method 'salon'" in msg and "Did you mean 'salun'?" in msg
    assert "retrain, salun, scar" in msg
    assert isinstance(exc.value, UserError)


def test_entry_points_loaded_lazily(monkeypatch):
    reg: Registry = Registry("attacks")
    loaded = []

    class FakeEP:
        name = "plugged"

        def load(self):
            loaded.append(True)
            reg.add("plugged", "obj")

    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return [FakeEP()]

    monkeypatch.setattr(registry_mod.metadata, "entry_points", fake_entry_points)
    assert calls == []  # nothing loaded at construction
    assert reg.get("plugged") == "obj"
    assert calls == ["unlearnbench.attacks"] and loaded == [True]
    reg.names()
    assert calls == ["unlearnbench.attacks"]  # loaded once


def test_broken_plugin_does_not_break_registry(monkeypatch, caplog):
    reg: Registry = Registry("metrics")
    reg.add("ok", 1)

    class BadEP:
        name = "bad"

        def load(self):
            raise ImportError("boom")

    monkeypatch.setattr(registry_mod.metadata, "entry_points", lambda group: [BadEP()])
    assert reg.names() == ["ok"]
    assert "could not load" in caplog.text


@configclass
class Demo:
    lr: float = 0.1
    epochs: int = 3
    name: str = "x"
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    milestones: tuple[int, ...] = (1, 2)
    maybe: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError("epochs must be at least 1.")


def test_from_dict_rejects_unknown_keys_naming_valid_ones():
    with pytest.raises(ConfigError) as exc:
        from_dict(Demo, {"lr": 0.2, "lrr": 1})
    assert "'lrr'" in str(exc.value) and "valid keys: epochs, flag, lr" in str(exc.value)


def test_from_dict_coerces_cli_strings():
    cfg = from_dict(Demo, parse_overrides(["lr=8/255", "epochs=5", "flag=true", "mode=b", "milestones=3,4", "maybe=none"]))
    assert cfg.lr == pytest.approx(8 / 255) and cfg.epochs == 5 and cfg.flag is True
    assert cfg.mode == "b" and cfg.milestones == (3, 4) and cfg.maybe is None


@pytest.mark.parametrize(
    "bad", [{"epochs": "three"}, {"epochs": 2.5}, {"mode": "c"}, {"flag": "maybe"}, {"epochs": 0}, {"lr": True}]
)
def test_from_dict_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        from_dict(Demo, bad)


def test_config_is_frozen_and_keyword_only():
    cfg = Demo()
    with pytest.raises(FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Demo(0.1)  # type: ignore[misc]


def test_parse_overrides_errors():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])
    assert parse_overrides(["a=1", "b=x", "c=[1, 2]"]) == {"a": 1, "b": "x", "c": [1, 2]}


def test_yaml_and_flatten(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 0.01\nmilestones: [5, 8]\n")
    cfg = from_dict(Demo, load_yaml(p))
    assert flatten(cfg)["milestones"] == "5,8" and flatten({"a": {"b": 1}}) == {"a.b": "1"}
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")
