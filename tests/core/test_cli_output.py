"""The CLI in pipes, logs and narrow terminals: whole names, JSON that parses, one progress line
per epoch in a non-terminal stderr, results even with --quiet, help without `<bool>`."""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.commands import _common
from unlearnbench.core import progress

runner = CliRunner()
LONG_NAMES = ("bad_teacher", "boundary_shrink", "random_label", "https://arxiv.org/abs/2205.08096")


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def test_piped_ls_prints_whole_names_and_urls():
    # CliRunner's stdout is no terminal: Rich would cut to 80 columns ("bad_teach…").
    out = _ok(runner.invoke(app, ["ls", "methods"])).stdout
    for name in LONG_NAMES:
        assert name in out
    assert "…" not in out
    row = next(line for line in out.splitlines() if "bad_teacher" in line)
    assert "https://arxiv.org/abs/2205.08096" in row and "forget, retain" in row  # one row, one line


def test_narrow_terminal_shows_one_block_per_row(monkeypatch):
    monkeypatch.setattr(_common.console, "_force_terminal", True)
    monkeypatch.setattr(_common.console, "_width", 40)
    out = _ok(runner.invoke(app, ["ls", "methods"])).stdout
    assert "…" not in out
    assert "name: bad_teacher" in out and "  paper: https://arxiv.org/abs/2205.08096" in out
    # A table that fits is still a table.
    monkeypatch.setattr(_common.console, "_width", 400)
    out = _ok(runner.invoke(app, ["ls", "models"])).stdout
    assert "┃ name" in out and "name: cnn" not in out


def test_ls_json_parses():
    data = json.loads(_ok(runner.invoke(app, ["ls", "methods", "--json"])).stdout)
    by_name = {d["name"]: d for d in data}
    assert by_name["salun"]["paper"] == "https://arxiv.org/abs/2310.12508"
    assert by_name["salun"]["config"] == "SalUnConfig" and by_name["salun"]["reads"] == ["forget", "retain"]
    everything = json.loads(_ok(runner.invoke(app, ["ls", "--json"])).stdout)
    assert {"datasets", "models", "methods", "attacks", "metrics", "presets"} <= set(everything)


def test_ls_name_shows_every_config_key_with_type_default_and_meaning():
    from unlearnbench.unlearn import METHODS

    data = json.loads(_ok(runner.invoke(app, ["ls", "methods", "salun", "--json"])).stdout)
    cls = METHODS.info("salun")["config"]
    assert [r["key"] for r in data["config"]] == [f.name for f in dataclasses.fields(cls)]
    rows = {r["key"]: r for r in data["config"]}
    assert rows["mask_ratio"]["type"] == "float" and rows["mask_ratio"]["default"] == cls().mask_ratio
    assert rows["adv_eps"]["type"] == "float | None" and rows["adv_eps"]["default"] is None
    assert "salient" in rows["mask_ratio"]["meaning"]
    assert data["code"] == "https://github.com/OPTML-Group/Unlearn-Saliency"
    # The table form, piped: one line per key with its meaning.
    out = _ok(runner.invoke(app, ["ls", "methods", "scar"])).stdout
    assert "code: https://github.com/jbonato1/SCAR" in out
    delta = next(line for line in out.splitlines() if "│ delta" in line)
    assert "float" in delta and "0.5" in delta and "Tukey power" in delta  # the field's own comment


def test_ls_name_for_a_preset_shows_what_it_sets():
    from unlearnbench.unlearn.presets import PRESETS

    preset = PRESETS.get("salun-cifar10-random10")
    data = json.loads(_ok(runner.invoke(app, ["ls", "presets", preset.name, "--json"])).stdout)
    assert data["method"] == "salun" and data["forget"] == preset.forget
    assert {r["key"]: r["value"] for r in data["sets"]} == preset.config
    assert all(r["meaning"] != "-" for r in data["sets"])


@pytest.mark.parametrize("kind", ["methods", "attacks"])
def test_every_built_in_config_key_has_a_meaning(kind):
    """`ls KIND NAME` must explain each key; a new key needs a comment on its field (or a
    ``metadata={"help": ...}``, or a glossary entry in api/_describe.py)."""
    import importlib

    from unlearnbench.api._describe import describe
    from unlearnbench.commands.train import LISTABLE

    module, attr = LISTABLE[kind]
    reg = getattr(importlib.import_module(module), attr)
    missing = [f"{e.name}.{r['key']}" for e in reg.entries() for r in describe(kind, e).get("config", [])
               if r["meaning"] == "-"]
    assert not missing


def test_unknown_name_in_ls_is_one_sentence():
    result = runner.invoke(app, ["ls", "methods", "salunn"])
    assert result.exit_code == 2 and "Did you mean 'salun'" in result.output


def test_one_progress_line_per_epoch_in_a_non_terminal_stderr(tmp_path):
    result = _ok(runner.invoke(app, ["train", "--epochs", "2", "--no-track", "--out", str(tmp_path / "o.pt")]))
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("train cnn on digits: epoch")]
    assert [ln.split(":")[1].split()[1] for ln in lines] == ["1/2", "2/2"]
    for ln in lines:
        assert "img/s" in ln and "elapsed" in ln and "steps" in ln
    assert "ETA" in lines[0] and "ETA" not in lines[-1]
    assert "images/s" in result.stdout  # the rate at the end, with the result
    quiet = _ok(runner.invoke(app, ["train", "--epochs", "2", "--no-track", "-q", "--out", str(tmp_path / "q.pt")]))
    assert quiet.stderr == "" and "Saved" in quiet.stdout  # --quiet: no progress, the result stays


def test_unlearn_no_eval_prints_the_run_time(tmp_path):
    ckpt = tmp_path / "o.pt"
    _ok(runner.invoke(app, ["train", "--epochs", "2", "--no-track", "-q", "--out", str(ckpt)]))
    result = _ok(runner.invoke(app, ["unlearn", "finetune", "-c", str(ckpt), "-f", "class:3", "--no-eval",
                                     "--no-track", "-q", "--set", "epochs=2", "-o", str(tmp_path / "u.pt")]))
    line = next(ln for ln in result.stdout.splitlines() if "unlearning took" in ln)
    assert " s, " in line and "images/s" in line


def test_help_has_no_bool_metavar_and_whole_sentences():
    out = _ok(runner.invoke(app, ["benchmark", "--help"], env={"COLUMNS": "250"})).stdout
    assert "<bool>" not in out
    # The docstring breaks its lines after "reference,"; the help re-wraps whole paragraphs to the
    # terminal, so the words run on (wherever the terminal's width puts a line break).
    assert "against the retrained reference, logged to MLflow (a parent run" in " ".join(out.split())
    assert "<bool>" not in _ok(runner.invoke(app, ["train", "--help"])).stdout


def test_repeated_warnings_are_shown_once(capsys):
    _common.setup_output(quiet=True)
    log = logging.getLogger("unlearnbench.test")
    for _ in range(3):
        log.warning("the same warning")
    log.warning("another warning")
    err = capsys.readouterr().err
    assert err.count("the same warning") == 1 and err.count("another warning") == 1
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # Python's own once-per-location filter out of the way
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        _common._once_per_message()
        for where in range(3):
            warnings.warn("a repeated UserWarning", stacklevel=1 + where % 2)
        warnings.warn("a different UserWarning", stacklevel=1)
    assert shown == ["a repeated UserWarning", "a different UserWarning"]


def test_progress_lines_inside_autoattack(digits_cnn, digits_splits, capsys):
    """Within a stage: a line per APGD-T target and per block of Square queries, with an ETA
    over the stage's points."""
    from unlearnbench.robust.aa.engine import run_autoattack
    from unlearnbench.robust.threat import AutoAttackConfig, ThreatModel

    x = digits_splits.test.x[:12].float() / 255
    y = digits_splits.test.y[:12]
    cfg = AutoAttackConfig(apgd_steps=2, fab_steps=2, square_queries=501, n_target_classes=3, chunk=6, max_batch=6,
                           checks=False)
    progress.set_enabled(True)
    progress.set_line_mode(True)
    try:
        run_autoattack(digits_cnn, x, y, ThreatModel("Linf", 0.01), cfg)
    finally:
        progress.set_enabled(False)
        progress.set_line_mode(None)
    err = capsys.readouterr().err.splitlines()
    assert any(ln.startswith("autoattack apgd-t: target 3/3") for ln in err)
    assert any(ln.startswith("autoattack square: query 500/501") for ln in err)
    assert any(ln.startswith("autoattack apgd-ce") and "/12 points" in ln and "ETA" in ln for ln in err)
    assert any(ln.startswith("autoattack (standard): after square") and "robust (n=12)" in ln for ln in err)


def test_describe_is_generic_over_registries():
    """A recipe-like entry (an object carrying training keys) shows what it sets with the
    TrainConfig meanings; a metric shows its info."""
    from dataclasses import dataclass, field

    from unlearnbench.api._describe import describe
    from unlearnbench.core.registry import Entry
    from unlearnbench.eval.metrics import METRICS

    @dataclass(frozen=True)
    class FakeRecipe:
        name: str
        train: dict = field(default_factory=dict)
        caveat: str = ""

    d = describe("recipes", Entry("paper", FakeRecipe("paper", {"epochs": 182, "warmup": 0.1}, "slow"), {"summary": "s"}))
    rows = {r["key"]: r for r in d["sets"]}
    assert d["config_class"] == "TrainConfig" and d["caveat"] == "slow"
    assert rows["epochs"]["value"] == 182 and rows["epochs"]["type"] == "int"
    assert rows["warmup"]["meaning"] == "fraction of all steps with linear warm-up"  # the field's comment
    m = describe("metrics", METRICS.entry("ua"))
    assert m["direction"] == "reference" and "config" not in m
