"""MLflow the way MLflow users expect it, read back through ``MlflowClient`` from the session's
SQLite store: dataset inputs, logged models, standard tags, params, stepped metrics."""

from __future__ import annotations

import uuid

import pytest
import torch
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint
from unlearnbench.core.data import prepare
from unlearnbench.eval import tracking

runner = CliRunner()


def _run(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return exp, runs[0]


def _inputs(run) -> dict[str, tuple[str, dict[str, str]]]:
    """dataset name -> (digest, input tags) of a run's dataset inputs."""
    return {d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags}) for d in run.inputs.dataset_inputs}


def test_param_values_are_never_python_reprs():
    assert tracking.param_value(None) == "null"
    assert tracking.param_value(True) == "true" and tracking.param_value(False) == "false"
    assert tracking.param_value((0.5, 0.75)) == "0.5,0.75" and tracking.param_value(["a", "b"]) == "a,b"
    assert tracking.param_value({"b": None, "a": 1}) == '{"a": 1, "b": null}'
    assert tracking.param_value(0.01) == "0.01" and tracking.param_value("class:3") == "class:3"


def test_unlearn_logs_inputs_model_tags_params_and_epoch_curves(digits_ckpts, mlflow_uri):
    import mlflow
    from mlflow import MlflowClient

    experiment = f"conv-{uuid.uuid4().hex[:8]}"
    out = digits_ckpts["original"].parent / f"{experiment}.pt"
    result = runner.invoke(app, [
        "unlearn", "finetune", "-c", str(digits_ckpts["original"]), "-f", "class:3", "-r", str(digits_ckpts["retrain"]),
        "--set", "epochs=2", "--log-model", "-o", str(out), "--tracking-uri", mlflow_uri, "--experiment", experiment,
        "--device", "cpu", "-q",
    ])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp, run = _run(client, experiment)
    run_id = run.info.run_id

    # Dataset inputs: one per split, the split as context; the digest says which examples.
    inputs = _inputs(run)
    assert set(inputs) == {f"digits/{s}" for s in ("forget", "retain", "val", "test", "test_retained", "test_forgotten")}
    _, data = prepare("digits", "class:3", split_seed=0)
    digest, tags = inputs["digits/forget"]
    assert tags["mlflow.data.context"] == "forget" and tags["n"] == str(len(data.forget)) == str(int((data.forget.y == 3).sum()))
    _, other = prepare("digits", "random:0.1", split_seed=0)
    from unlearnbench.eval.inputs import split_digest

    assert digest == split_digest("digits", 0, "forget", data.forget) != split_digest("digits", 0, "forget", other.forget)
    ds = next(d.dataset for d in run.inputs.dataset_inputs if d.dataset.name == "digits/forget")
    assert "archive.ics.uci.edu" in ds.source

    # Standard tags and readable name.
    t = run.data.tags
    assert t["mlflow.runName"] == "finetune · class:3 · seed 0 (cnn on digits)"
    assert t["git_sha"] != "unknown" and t["mlflow.source.git.commit"] == t["git_sha"]

    # Params: dataset and model on the run itself; user syntax, not Python reprs.
    p = run.data.params
    assert p["dataset"] == "digits" and p["model"] == "cnn" and p["forget"] == "class:3" and p["epochs"] == "2"
    assert p["adv_eps"] == "null" and p["augment"] in ("true", "false")
    assert not [k for k, v in p.items() if v in ("None", "True", "False") or v.startswith(("(", "[", "{'"))]

    # Per-epoch curves of the unlearning loop, stepped by epoch.
    for key in ("unlearn/loss/retain", "unlearn/forget_acc"):
        hist = client.get_metric_history(run_id, key)
        assert [m.step for m in hist] == [1, 2]
    assert all(0 <= m.value <= 100 for m in client.get_metric_history(run_id, "unlearn/forget_acc"))

    # The platform checkpoint as before, and the model as an MLflow model with a signature.
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == [f"checkpoint/{out.name}"]
    models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    assert len(models) == 1 and models[0].source_run_id == run_id
    info = mlflow.models.get_model_info(models[0].model_uri)
    assert info.signature is not None and list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, 8, 8]
    loaded = mlflow.pytorch.load_model(models[0].model_uri)
    ckpt_model = load_checkpoint(out).build("cpu")
    x = data.test.x[:5].float() / 255
    with torch.no_grad():
        assert torch.allclose(loaded(x), ckpt_model(x), atol=1e-6)


def test_train_logs_system_metrics_and_the_reference_inputs(mlflow_uri, tmp_path):
    pytest.importorskip("psutil")
    import mlflow
    from mlflow import MlflowClient

    experiment = f"conv-{uuid.uuid4().hex[:8]}"
    # Sample often and log every sample: a digits run can end in well under a second.
    mlflow.set_system_metrics_sampling_interval(0.05)
    mlflow.set_system_metrics_samples_before_logging(1)
    try:
        result = runner.invoke(app, [
            "train", "--epochs", "2", "--exclude", "class:3", "--system-metrics", "--out", str(tmp_path / "r.pt"),
            "--tracking-uri", mlflow_uri, "--experiment", experiment, "-q",
        ])
    finally:
        mlflow.set_system_metrics_sampling_interval(None)
        mlflow.set_system_metrics_samples_before_logging(None)
        tracking.enable_system_metrics(False)
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=mlflow_uri)
    _, run = _run(client, experiment)
    assert any(k.startswith("system/") for k in run.data.metrics)
    assert run.data.tags["mlflow.runName"] == "retrain · without class:3 · seed 0 (cnn on digits)"
    assert set(_inputs(run)) == {f"digits/{s}" for s in ("retain", "val", "test", "test_retained", "test_forgotten")}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1, 2]


def test_system_metrics_without_psutil_is_one_sentence(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_psutil(name, *args, **kwargs):
        if name == "psutil":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    tracking.enable_system_metrics(False)
    monkeypatch.setattr(builtins, "__import__", no_psutil)
    with pytest.raises(Exception, match=r"--system-metrics needs psutil"):
        tracking.enable_system_metrics(True)
    assert not tracking.system_metrics_enabled()


def test_study_params_are_json_or_user_syntax_never_python_reprs():
    """The parent run's ``methods`` param (a list of records) is JSON; scalar lists stay ``a,b``."""
    import json

    from unlearnbench.core.config import flatten, to_dict
    from unlearnbench.study import load_study

    cfg = load_study("digits")
    params = flatten(to_dict(cfg))
    methods = json.loads(params["methods"])
    assert [m["name"] for m in methods] == [m.name for m in cfg.methods]
    assert params["seeds"] == ",".join(map(str, cfg.seeds))
    assert not [k for k, v in params.items() if "{'" in v or "['" in v or v in ("None", "True", "False")]
