"""``unlearnbench evaluate``, ``ui`` and ``shadow`` end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint

runner = CliRunner()
VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_sentence_error(result) -> str:
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert text.startswith("Error:") and "Traceback" not in result.output
    return text


def test_evaluate_end_to_end_with_tracking(digits_ckpts, mlflow_uri, tmp_path):
    import mlflow

    experiment = f"cli-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "report.json"
    result = runner.invoke(app, [
        "evaluate", "--checkpoint", str(digits_ckpts["unlearned"]), "--reference", str(digits_ckpts["retrain"]),
        "--original", str(digits_ckpts["original"]), "--json", str(out), "--tracking-uri", mlflow_uri,
        "--experiment", experiment, "--device", "cpu", "--quiet",
    ])
    assert result.exit_code == 0, result.output
    for word in ("forget_acc", "avg_gap", "aus", "mia_efficacy", "Membership attacks", "Logged MLflow run"):
        assert word in result.output
    report = json.loads(out.read_text())
    v = report["values"]
    assert report["meta"]["method"] == "finetune" and report["meta"]["forget"] == "class:3"
    assert {"test_retained_acc", "test_forgotten_acc", "avg_gap", "aus", "rte_seconds", "div/js/forget"} <= set(v)
    runs = mlflow.search_runs(experiment_names=[experiment])
    assert len(runs) == 1 and runs.iloc[0]["tags.kind"] == "unlearn"
    assert runs.iloc[0]["metrics.avg_gap"] == pytest.approx(v["avg_gap"])
    # n behind every proportion, in the JSON, in MLflow and on screen with its 95 % interval
    counts = report["counts"]
    assert counts["n/forget_acc"] == counts["n/ua"] == counts["n/mia_efficacy"] > 0
    assert runs.iloc[0]["metrics.n/forget_acc"] == counts["n/forget_acc"]
    assert runs.iloc[0]["metrics.mia/loss/forget_test/n_nonmembers"] == counts["mia/loss/forget_test/n_nonmembers"]
    lo, hi = report["intervals"]["test_retained_acc"]
    assert lo <= v["test_retained_acc"] <= hi
    for word in ("95 % CI", "beyond that noise", f"[{lo:.2f}, {hi:.2f}]", "undef."):
        assert word in result.output
    # class 3's ~36 test images cannot resolve FPR 1 %: undefined, never logged as a number
    key = "mia/loss/forget_test/tpr_at_fpr_0.01"
    assert key in report["undefined"] and key not in v and f"metrics.{key}" not in runs.columns


def test_evaluate_robustness_rte_and_no_checkpoint_artifact(digits_ckpts, mlflow_uri, tmp_path):
    """The opt-in flags: a real PGD on a subset, the given run time, and no checkpoint copy in MLflow."""
    import mlflow

    experiment = f"cli-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "report.json"
    result = runner.invoke(app, [
        "evaluate", "-c", str(digits_ckpts["unlearned"]), "--metrics", "test_acc,rte", "--robustness", "pgd",
        "--robust-n", "40", "--eps", "0.2", "--rte-seconds", "12.5", "--no-log-checkpoint", "--json", str(out),
        "--tracking-uri", mlflow_uri, "--experiment", experiment, "--device", "cpu", "-q",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    v = report["values"]
    assert v["rte_seconds"] == 12.5 != load_checkpoint(digits_ckpts["unlearned"]).meta["rte_seconds"]
    assert report["config"]["eval"]["robust_n"] == 40 and report["config"]["eval"]["eps"] == 0.2
    # eps 0.2 on [0, 1] digits is a large budget: PGD must cost accuracy on the clean subset.
    # A class-wise checkpoint (class:3) is attacked on the kept classes' test images, like TA.
    assert 0 <= v["robust/test_retained/pgd"] < v["clean/test_retained"] and "robust/test/pgd" not in v
    assert report["counts"]["n/robust/test_retained/pgd"] == 40
    run_id = mlflow.search_runs(experiment_names=[experiment]).iloc[0]["run_id"]
    mlflow.set_tracking_uri(mlflow_uri)
    arts = [a.path for a in mlflow.tracking.MlflowClient().list_artifacts(run_id)]
    assert "report.json" in arts and not any(a.startswith("checkpoint") for a in arts)


def test_evaluate_reference_report_and_metric_subset(digits_ckpts, tmp_path):
    ref_json = tmp_path / "retrain.json"
    r1 = runner.invoke(app, ["evaluate", "-c", str(digits_ckpts["retrain"]), "--json", str(ref_json), "--no-track",
                             "--device", "cpu", "-q", "--metrics", "ua,retain_acc,test_retained_acc,mia_efficacy"])
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(app, ["evaluate", "-c", str(digits_ckpts["unlearned"]), "-r", str(ref_json), "--no-track",
                             "--device", "cpu", "-q", "--metrics", "avg_gap", "--json", str(tmp_path / "u.json")])
    assert r2.exit_code == 0, r2.output
    values = json.loads((tmp_path / "u.json").read_text())["values"]
    assert set(values) == {"ua", "forget_acc", "retain_acc", "test_acc", "test_retained_acc", "mia_efficacy",
                           "avg_gap", "gap/ua", "gap/forget_acc", "gap/retain_acc", "gap/test_retained_acc",
                           "gap/mia_efficacy"}


@pytest.mark.parametrize("args, phrase", [
    (["-c", "missing.pt"], "does not exist"),
    (["-c", "{unlearned}", "--metrics", "mia_eficacy"], "Did you mean 'mia_efficacy'"),
    (["-c", "{unlearned}", "--metrics", "divergence"], "needs a retrained reference model"),
    (["-c", "{original}"], "does not record a forget set"),
    (["-c", "{unlearned}", "--forget", "class:11"], "class"),
    (["-c", "{unlearned}", "--shadow-pool", "{tmp}"], "not a shadow pool"),
    (["-c", "{unlearned}", "--eps", "-1"], "eps"),
    (["-c", "{unlearned}", "--json", "{tmp}"], "is a folder"),
])
def test_evaluate_bad_input_exits_2_with_one_sentence(digits_ckpts, tmp_path, args, phrase):
    args = [a.format(tmp=tmp_path, **{k: str(p) for k, p in digits_ckpts.items()}) for a in args]
    result = runner.invoke(app, ["evaluate", *args, "--no-track", "--device", "cpu", "-q"])
    text = _one_sentence_error(result)
    assert phrase in text, text


def test_evaluate_unreachable_tracking_server(digits_ckpts):
    t0 = time.perf_counter()
    result = runner.invoke(app, ["evaluate", "-c", str(digits_ckpts["unlearned"]), "--device", "cpu", "-q",
                                 "--tracking-uri", f"http://127.0.0.1:{_free_port()}"])
    text = _one_sentence_error(result)
    assert "unreachable" in text and time.perf_counter() - t0 < 15


def test_evaluate_in_a_real_subprocess(digits_ckpts, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [str(VENV_BIN / "unlearnbench"), "evaluate", "-c", str(digits_ckpts["unlearned"]), "--metrics",
         "forget_acc,test_acc,mia_efficacy", "--no-track", "--device", "cpu", "--quiet", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "mia_efficacy" in proc.stdout and proc.stderr.strip() == ""
    assert set(json.loads(out.read_text())["values"]) == {"forget_acc", "test_acc", "mia_efficacy"}


def test_ui_serves_the_store_and_stops(mlflow_uri):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "unlearnbench.cli", "ui", "--tracking-uri", mlflow_uri, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}/health"
    try:
        deadline = time.time() + 120
        ok = False
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    ok = resp.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        assert ok, "MLflow UI did not answer /health"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # the server went down with the command
    time.sleep(0.5)
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_ui_refuses_a_busy_port(mlflow_uri):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = runner.invoke(app, ["ui", "--tracking-uri", mlflow_uri, "--port", str(port)])
    assert "in use" in _one_sentence_error(result)


def test_shadow_train_and_info(tmp_path):
    pool = tmp_path / "pool"
    args = ["shadow", "train", "--out", str(pool), "--model", "mlp", "--n", "2", "--epochs", "1", "--device", "cpu", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "LiRA pool" in text and "2/2 shadows, mlp on digits" in text
    assert sorted(p.name for p in pool.iterdir()) == [
        "manifest.json", "shadow_000.npz", "shadow_000.pt", "shadow_001.npz", "shadow_001.pt"]
    info = runner.invoke(app, ["shadow", "info", str(pool)])
    assert info.exit_code == 0 and "lira_online" in info.output
    bad = runner.invoke(app, ["shadow", "train", "--out", str(pool), "--model", "cnn", "--n", "2", "--epochs", "1", "-q"])
    assert "different settings" in _one_sentence_error(bad)
    bad = runner.invoke(app, ["shadow", "train", "--out", str(tmp_path / "x"), "--n", "1", "-q"])
    assert "at least 2" in _one_sentence_error(bad)
    assert not (tmp_path / "x").exists()
    assert os.listdir(tmp_path) == ["pool"]


def test_shadow_train_ulira_pool_with_method_config(tmp_path):
    """A U-LiRA pool through the CLI: the method's YAML config and --method-set overrides both reach
    the pool's manifest (and so every shadow's unlearning run)."""
    method_yaml = tmp_path / "ft.yaml"
    method_yaml.write_text("lr: 0.001\nepochs: 3\n")
    pool = tmp_path / "upool"
    result = runner.invoke(app, [
        "shadow", "train", "--out", str(pool), "--model", "mlp", "--n", "4", "--targets", "2", "--epochs", "1",
        "--device", "cpu", "--ulira-method", "finetune", "--forget", "random:0.1", "--method-config", str(method_yaml),
        "--method-set", "epochs=1", "-q",
    ])
    assert result.exit_code == 0, result.output
    assert "U-LiRA pool (finetune on random:0.1)" in " ".join(result.output.split())
    manifest = json.loads((pool / "manifest.json").read_text())
    assert manifest["method_config"] == {"lr": 0.001, "epochs": 1}  # the override wins over the file
    assert len(manifest["shadows"]) == 4 and manifest["targets"] == 2
    assert manifest["holdout"]["ulira"]["n_targets"] == 4


def test_evaluate_a_diverged_checkpoint_exits_2_and_writes_nothing(digits_ckpts, tmp_path):
    import torch

    from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(digits_ckpts["unlearned"])
    model = ckpt.build()
    with torch.no_grad():  # finite weights whose logits overflow to inf, as gradient ascent can leave them
        model.head.weight.mul_(1e38)
    save_checkpoint(tmp_path / "diverged.pt", model, ckpt.meta)
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["evaluate", "-c", str(tmp_path / "diverged.pt"), "--json", str(out), "--no-track",
                                 "--device", "cpu", "-q"])
    text = _one_sentence_error(result)
    assert "NaN or infinite" in text and "diverged" in text, text
    assert not out.exists()
