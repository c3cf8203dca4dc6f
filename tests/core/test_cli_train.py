from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint

runner = CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    _ok(result)
    assert "unlearnbench" in result.output


def test_ls_lists_datasets_and_models():
    result = runner.invoke(app, ["ls", "models"])
    _ok(result)
    assert "resnet18" in result.output and "wrn28_10" in result.output
    result = runner.invoke(app, ["ls", "datasets"])
    assert "digits" in result.output and "fashion-mnist" in result.output


def test_train_writes_checkpoint_and_logs_to_mlflow(tmp_path, mlflow_uri):
    import mlflow

    out = tmp_path / "orig.pt"
    result = runner.invoke(app, [
        "train", "--dataset", "digits", "--model", "cnn", "--epochs", "3", "--out", str(out), "--quiet",
        "--tracking-uri", mlflow_uri, "--experiment", "cli-train", "--set", "batch_size=128", "--lr", "0.03",
        "--split-seed", "5", "--val-fraction", "0.2",
    ])
    _ok(result)
    assert "Saved" in result.output
    meta = load_checkpoint(out).meta
    assert meta["model"] == "cnn" and meta["train_config"]["epochs"] == 3 and meta["train_config"]["batch_size"] == 128
    assert meta["train_config"]["lr"] == 0.03 and meta["split_seed"] == 5 and meta["val_fraction"] == 0.2
    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["cli-train"])
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["params.epochs"] == "3" and row["tags.kind"] == "original"
    assert row["metrics.test_acc"] == pytest.approx(meta["metrics"]["test_acc"])
    history = mlflow.tracking.MlflowClient().get_metric_history(row["run_id"], "train_loss")
    assert [m.step for m in history] == [1, 2, 3]
    arts = mlflow.tracking.MlflowClient().list_artifacts(row["run_id"], "checkpoint")
    assert [a.path for a in arts] == ["checkpoint/orig.pt"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "--dataset", "digitz"], "Did you mean 'digits'"),
        (["train", "--model", "resnet19"], "Did you mean 'resnet18'"),
        (["train", "--set", "lrr=0.1"], "Unknown config key 'lrr'"),
        (["train", "--set", "epochs=zero"], "expected int"),
        (["train", "--set", "compile_mode=fast"], "choose one of default, reduce-overhead"),
        (["train", "--exclude", "class:12"], "out of range"),
        (["train", "--dataset", "cifar10", "--data-root", "/nonexistent"], "data_batch_1"),
        (["train", "--config", "/no/such.yaml"], "does not exist"),
        (["train", "--tracking-uri", "http://127.0.0.1:9"], "unreachable"),
        (["train", "--device", "cuda:7"], "CUDA is not available"),
        (["ls", "widgets"], "Unknown list"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, args, needle):
    if args[-1] == "cuda:7" and __import__("torch").cuda.is_available():
        pytest.skip("CUDA present")
    out = tmp_path / "never.pt"
    if args[0] == "train":
        # tracking stays on only where the case is about tracking
        args = [*args, "--out", str(out), "-q"] + ([] if "--tracking-uri" in args else ["--no-track"])
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.slow
def test_train_with_compile(tmp_path):
    """--compile really goes through torch.compile (~30 s of inductor on 2 cores) and the checkpoint
    holds the plain module's weights, loadable without compiling."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    out = tmp_path / "compiled.pt"
    try:
        result = runner.invoke(app, [
            "train", "--epochs", "2", "--compile", "--set", "compile_mode=reduce-overhead", "--device", "cpu",
            "--out", str(out), "--quiet", "--no-track",
        ])
        _ok(result)
        assert counters["stats"]["unique_graphs"] >= 1  # inductor compiled the forward
    finally:
        torch._dynamo.reset()
    ckpt = load_checkpoint(out)
    assert ckpt.meta["train_config"]["compile"] is True
    assert ckpt.meta["train_config"]["compile_mode"] == "reduce-overhead"
    assert not any("_orig_mod" in k for k in ckpt.state_dict)
    ckpt.build()  # strict load into the eager architecture
    assert ckpt.meta["metrics"]["test_acc"] > 85


def test_real_subprocess(tmp_path):
    exe = Path(sys.executable).parent / "unlearnbench"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "unlearnbench.cli"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    proc = subprocess.run(
        [*cmd, "train", "--epochs", "2", "--out", str(tmp_path / "o.pt"), "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.pt").exists() and (tmp_path / "m.db").exists()
    bad = subprocess.run([*cmd, "train", "--set", "nope=1", "--no-track"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "Unknown config key 'nope'" in bad.stderr and "Traceback" not in bad.stderr
