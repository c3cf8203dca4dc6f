"""Presets and the ``unlearnbench unlearn`` command (end to end and bad input)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint
from unlearnbench.core.config import from_dict
from unlearnbench.core.jobs import train_model
from unlearnbench.core.train import TrainConfig
from unlearnbench.unlearn import METHODS
from unlearnbench.unlearn.presets import PRESETS

runner = CliRunner()


def test_shipped_presets_are_valid_and_cite_sources():
    names = set(PRESETS.names())
    assert {"salun-cifar10-random10", "salun-cifar10-class", "l1sparse-cifar10-class", "scar-cifar10-class",
            "salun-digits-class"} <= names
    from unlearnbench.unlearn.presets import PRESET_DIR

    for name in names:
        p = PRESETS.get(name)
        from_dict(METHODS.info(p.method)["config"], p.config)
        text = (PRESET_DIR / f"{name}.yaml").read_text()
        assert "arxiv.org" in text  # every preset cites its paper
    salun = PRESETS.get("salun-cifar10-random10")
    assert salun.method == "salun" and salun.forget == "random:0.1"
    assert salun.config["lr"] == 0.1 and salun.config["mask_ratio"] == 0.5 and salun.config["epochs"] == 10
    assert PRESETS.get("salun-cifar10-random10-current").config["lr"] == 0.013


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A quickly trained digits cnn saved like `unlearnbench train` does."""
    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.05, seed=0, device="cpu")
    outcome = train_model("digits", "cnn", cfg)
    path = tmp_path_factory.mktemp("ckpt") / "orig.pt"
    save_checkpoint(path, outcome.model, outcome.meta)
    return path


def _ok(result):
    assert result.exit_code == 0, result.output


def test_cli_unlearn_writes_checkpoint_and_logs_run(tiny_checkpoint, tmp_path, mlflow_uri):
    import mlflow

    out = tmp_path / "unlearned.pt"
    result = runner.invoke(app, [
        "unlearn", "salun", "--checkpoint", str(tiny_checkpoint), "--forget", "class:3", "--out", str(out),
        "--set", "epochs=2", "--set", "lr=0.05", "--seed", "1", "--device", "cpu", "--quiet",
        "--tracking-uri", mlflow_uri, "--experiment", "cli-unlearn",
    ])
    _ok(result)
    assert "forget acc" in result.output and "Saved" in result.output
    ckpt = load_checkpoint(out)
    meta = ckpt.meta
    assert meta["kind"] == "unlearn" and meta["method"] == "salun" and meta["forget"] == "class:3"
    assert meta["method_config"]["epochs"] == 2 and meta["method_config"]["seed"] == 1
    assert meta["rte_seconds"] > 0 and meta["dataset"] == "digits" and meta["split_seed"] == 0
    assert meta["original"]["path"] == str(tiny_checkpoint)
    model = ckpt.build("cpu")  # loads strictly into the same architecture
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                     load_checkpoint(tiny_checkpoint).state_dict.values(), strict=True))
    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["cli-unlearn"])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["tags.kind"] == "unlearn" and row["tags.method"] == "salun" and row["tags.forget"] == "class:3"
    assert row["params.lr"] == "0.05" and row["params.mask_ratio"] == "0.5"
    for key in ("forget_acc", "retain_acc", "test_acc", "rte_seconds"):
        assert row[f"metrics.{key}"] == pytest.approx(meta["metrics"][key])
    arts = mlflow.tracking.MlflowClient().list_artifacts(row["run_id"], "checkpoint")
    assert [a.path for a in arts] == ["checkpoint/unlearned.pt"]


def test_cli_preset_on_digits(tiny_checkpoint, tmp_path):
    out = tmp_path / "p.pt"
    result = runner.invoke(app, [
        "unlearn", "--preset", "salun-digits-class", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
        "--set", "epochs=1", "--no-track", "--quiet", "--no-eval", "--device", "cpu",
    ])
    _ok(result)
    meta = load_checkpoint(out).meta
    assert meta["method"] == "salun" and meta["forget"] == "class:3" and meta["method_config"]["lr"] == 0.05
    assert set(meta["metrics"]) == {"rte_seconds"}


def test_cli_ls_methods_shows_reads_and_weakness():
    result = runner.invoke(app, ["ls", "methods"], env={"COLUMNS": "300"})
    _ok(result)
    for name in METHODS.names():
        assert name in result.output
    assert "SalUnConfig" in result.output and "<class" not in result.output
    assert "forget, retain" in result.output and "reads" in result.output and "weak" in result.output


def test_cli_ls_presets_says_which_release_each_follows():
    import json

    result = runner.invoke(app, ["ls", "presets", "--json"])
    _ok(result)
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["salun-cifar10-random10"]["release"] == "OPTML-Group/Unlearn-Saliency@9576623 (2023-10-11)"
    assert rows["salun-cifar10-random10-current"]["release"] == "OPTML-Group/Unlearn-Saliency@a6e89fd (2026-02-28)"
    assert rows["salun-digits-class"]["release"] == "-"
    one = runner.invoke(app, ["ls", "presets", "salun-cifar10-random10", "--json"])
    _ok(one)
    quirks = json.loads(one.output)["quirks"]
    assert any("mask_generation: 2023" in q for q in quirks) and any("NOT reproduced" in q for q in quirks)


@pytest.fixture(scope="module")
def other_class_count_checkpoint(tiny_checkpoint, tmp_path_factory):
    ckpt = load_checkpoint(tiny_checkpoint)
    path = tmp_path_factory.mktemp("bad") / "five.pt"
    torch.save({"format": "unlearnbench-checkpoint-v1", "state_dict": ckpt.state_dict,
                "meta": {**ckpt.meta, "num_classes": 5}}, path)
    return path


@pytest.mark.parametrize(
    "args,needle",
    [
        (["salunn", "--forget", "class:3"], "Did you mean 'salun'"),
        (["salun", "--forget", "class:3", "--set", "lrr=0.1"], "Unknown config key 'lrr'"),
        (["salun", "--forget", "class:3", "--set", "epochs=many"], "expected int"),
        (["--preset", "salun-cifar10-class"], "trained on 'digits', not 'cifar10'"),
        (["salun", "--forget", "class:3", "CLASSCOUNT"], "has 5 classes but 'digits' has 10"),
        (["salun", "--forget", "class:12"], "out of range"),
        (["salun", "--forget", "everything"], "Bad forget spec"),
        (["salun", "--forget", "class:3", "MISSING"], "does not exist"),
        (["salun"], "--forget"),
        (["--forget", "class:3"], "METHOD"),
        (["grad_ascent", "--forget", "class:3", "--adv-retain", "pgd"], "does not train on the retain set"),
        (["salun", "--forget", "class:3", "--prune", "1.2"], "--prune"),
        (["scar_self", "--forget", "random:0.1", "--set", "ood_size=64"], "class-wise"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(args, needle, tiny_checkpoint, other_class_count_checkpoint, tmp_path):
    out = tmp_path / "never.pt"
    ckpt = str(tiny_checkpoint)
    if "CLASSCOUNT" in args:
        args, ckpt = [a for a in args if a != "CLASSCOUNT"], str(other_class_count_checkpoint)
    if "MISSING" in args:
        args, ckpt = [a for a in args if a != "MISSING"], str(tmp_path / "nope.pt")
    result = runner.invoke(app, ["unlearn", *args, "--checkpoint", ckpt, "--out", str(out), "--no-track", "-q",
                                 "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    message = result.output.strip()
    assert message.startswith("Error:") and message.count(". ") <= 1 and message.endswith((".", "?"))
    assert not out.exists()
