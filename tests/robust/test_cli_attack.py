"""`unlearnbench attack` and `unlearnbench train --adversarial` through the Typer app."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint
from unlearnbench.core.jobs import train_model
from unlearnbench.core.train import TrainConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = train_model("digits", "cnn", TrainConfig(epochs=3, batch_size=64, lr=0.05, device="cpu"))
    path = tmp_path_factory.mktemp("attack") / "cnn.pt"
    save_checkpoint(path, out.model, out.meta)
    return path


def _run(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_attack_prints_and_logs(ckpt, tmp_path, mlflow_uri):
    import mlflow

    adv = tmp_path / "adv.pt"
    r = _run("attack", "pgd", "--checkpoint", str(ckpt), "--split", "test", "--n", "40", "--eps", "0.1",
             "--set", "steps=3", "--save-adv", str(adv), "--tracking-uri", mlflow_uri,
             "--experiment", "robust-cli-attack", "--quiet")
    assert r.exit_code == 0, r.output
    assert "clean" in r.output and "robust" in r.output and "Linf" in r.output
    saved = torch.load(adv, weights_only=True)
    assert saved["x_adv"].shape == (40, 1, 8, 8) and saved["attack"] == "pgd"
    assert (saved["x_adv"] - saved["x_adv"].clamp(0, 1)).abs().max() == 0
    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["robust-cli-attack"])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["metrics.robust/test/pgd"] <= row["metrics.clean/test"]
    assert row["metrics.robust/test/pgd/n_robust_after_clean"] >= row["metrics.robust/test/pgd/n_robust_after_pgd"]
    assert row["params.attack.steps"] == "3" and row["tags.split"] == "test"


def test_attack_on_forget_split_and_autoattack_stages(ckpt):
    r = _run("attack", "autoattack", "--checkpoint", str(ckpt), "--split", "forget", "--forget", "class:3",
             "--n", "12", "--eps", "0.1", "--no-track", "--quiet",
             "--set", "apgd_steps=3", "--set", "fab_steps=3", "--set", "square_queries=20", "--set", "n_target_classes=2")
    assert r.exit_code == 0, r.output
    for stage in ("apgd-ce", "apgd-t", "fab-t", "square"):
        assert stage in r.output


@pytest.mark.parametrize("args,message", [
    (["attack", "pgdd", "--split", "test"], "Did you mean 'pgd'"),
    (["attack", "pgd", "--split", "forget"], "--forget SPEC"),
    (["attack", "pgd", "--split", "train"], "Unknown split"),
    (["attack", "pgd", "--eps", "8/0"], "Bad eps"),
    (["attack", "pgd", "--norm", "L2"], "pgdl2"),
    (["attack", "pgd", "--set", "stepz=3"], "Unknown config key"),
    (["attack", "pgd", "--forget", "class:11", "--split", "forget"], "class"),
])
def test_attack_bad_input_is_one_sentence_exit_2(ckpt, args, message):
    r = runner.invoke(app, [*args, "--checkpoint", str(ckpt), "--n", "8", "--no-track", "--quiet"])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_attack_missing_checkpoint(tmp_path):
    r = runner.invoke(app, ["attack", "pgd", "--checkpoint", str(tmp_path / "nope.pt"), "--no-track"])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_train_adversarial(tmp_path):
    out = tmp_path / "at.pt"
    r = _run("train", "--adversarial", "fast_at", "--adv-eps", "0.1", "--epochs", "2", "--out", str(out),
             "--device", "cpu", "--no-track", "--quiet")
    assert r.exit_code == 0, r.output
    meta = load_checkpoint(out).meta
    assert meta["adversarial"]["method"] == "fast_at" and meta["adversarial"]["eps"] == pytest.approx(0.1)
    assert meta["train_config"]["keep_best"] is False
    r = runner.invoke(app, ["train", "--adversarial", "pgd-at", "--out", str(out), "--no-track", "--quiet"])
    assert r.exit_code == 2 and "pgd_at" in r.output


def test_unlearn_refuses_an_adv_retain_attack_that_returns_clean_images(ckpt, tmp_path):
    out = tmp_path / "u.pt"
    r = _run("unlearn", "finetune", "--checkpoint", str(ckpt), "--forget", "class:3", "--adv-retain", "autoattack",
             "--out", str(out), "--no-eval", "--no-track", "--quiet")
    assert r.exit_code == 2, r.output
    assert "--adv-retain 'autoattack' is refused: it is an ensemble" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not out.exists()
