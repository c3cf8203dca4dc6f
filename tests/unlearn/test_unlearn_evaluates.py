"""`unlearn` runs the evaluation engine by default and logs the report into its MLflow run."""

from __future__ import annotations

import mlflow
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint
from unlearnbench.core.jobs import train_model
from unlearnbench.core.train import TrainConfig, accuracy


def test_unlearn_evaluates_against_reference_and_logs(tmp_path, mlflow_uri):
    cfg = TrainConfig(epochs=6, batch_size=64, lr=0.05, device="cpu")
    orig = train_model("digits", "cnn", cfg)
    ref = train_model("digits", "cnn", cfg, exclude="class:3")
    save_checkpoint(tmp_path / "o.pt", orig.model, orig.meta)
    save_checkpoint(tmp_path / "r.pt", ref.model, ref.meta)
    args = ["unlearn", "finetune", "-c", str(tmp_path / "o.pt"), "-f", "class:3", "-r", str(tmp_path / "r.pt"),
            "-o", str(tmp_path / "u.pt"), "-q", "--tracking-uri", mlflow_uri, "--experiment", "unlearn-evaluates",
            "--set", "epochs=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "avg_gap" in result.output and "mia_efficacy" in result.output
    mlflow.set_tracking_uri(mlflow_uri)
    row = mlflow.search_runs(experiment_names=["unlearn-evaluates"]).iloc[0]
    assert row["tags.kind"] == "unlearn" and row["tags.method"] == "finetune"
    for key in ("metrics.mia_efficacy", "metrics.avg_gap", "metrics.gap/test_acc", "metrics.rte_seconds"):
        assert key in row and row[key] == row[key], key  # present and not NaN
    arts = {a.path for a in mlflow.tracking.MlflowClient().list_artifacts(row["run_id"])}
    assert "report.json" in arts
    # the checkpoint records the evaluation's accuracies; the summary compares with the original's
    saved = load_checkpoint(tmp_path / "u.pt").meta["metrics"]
    for key in ("forget_acc", "retain_acc", "test_acc", "test_retained_acc", "test_forgotten_acc"):
        assert saved[key] == row[f"metrics.{key}"], key
    original_test = accuracy(orig.model, orig.splits.test)
    assert f"{original_test:.2f}" in result.output

    no_eval = CliRunner().invoke(app, [*args[:-2], "--no-eval", "--no-track", "-o", str(tmp_path / "u2.pt")])
    assert no_eval.exit_code == 0, no_eval.output
    assert "avg_gap" not in no_eval.output
