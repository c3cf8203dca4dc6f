"""MLflow: reports written to the session SQLite store and read back."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from unlearnbench.core.errors import UserError
from unlearnbench.eval import tracking
from unlearnbench.eval.engine import Evaluator
from unlearnbench.eval.report import Report


@pytest.fixture(scope="module")
def report(digits_random, digits_cnn):
    return Evaluator().evaluate(digits_cnn, digits_random, rte_seconds=2.0, config={"method": "finetune", "lr": 0.01},
                                meta={"kind": "unlearn", "method": "finetune", "model": "cnn", "seed": 0}, name="ft")


def test_log_report_and_read_it_back(report, mlflow_uri, tmp_path):
    import mlflow

    experiment = f"eval-{uuid.uuid4().hex[:8]}"
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not really a checkpoint")
    run_id = tracking.log_report(report, checkpoint=ckpt, uri=mlflow_uri, experiment=experiment)
    runs = tracking.runs_frame(experiment, uri=mlflow_uri)
    assert list(runs["run_id"]) == [run_id]
    row = runs.iloc[0]
    assert row["params.method"] == "finetune" and row["params.lr"] == "0.01"
    assert row["params.eval.svc_solver"] == "lowrank" and row["params.split_seed"] == "0"
    for key in ("forget_acc", "retain_acc", "test_acc", "ua", "mia_efficacy", "rte_seconds",
                "mia/loss/forget_test/auc", "mia/m_entropy/retain_test/tpr_at_fpr_0.01"):
        assert row[f"metrics.{key}"] == pytest.approx(report.values[key])
    # the n behind the values is logged too; TPR at 0.1 % FPR on 450 test images is undefined: not logged
    assert row["metrics.n/test_acc"] == report.counts["n/test_acc"] == 450
    assert "metrics.mia/m_entropy/retain_test/tpr_at_fpr_0.001" not in runs.columns
    assert row["metrics.time/total"] > 0
    for tag, value in {"kind": "unlearn", "method": "finetune", "dataset": "digits", "model": "cnn",
                       "forget": "random:0.1", "seed": "0"}.items():
        assert row[f"tags.{tag}"] == value
    assert row["tags.git_sha"] == report.provenance["git_sha"]
    client = mlflow.tracking.MlflowClient()
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.json", "per_class.csv", "roc", "checkpoint"} <= top
    assert {a.path for a in client.list_artifacts(run_id, "roc")} == {"roc/forget_test.png", "roc/retain_test.png"}
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/model.pt"]
    # artifacts live next to the SQLite file, not in the working directory
    assert mlflow_uri.rsplit("/", 1)[0].split("sqlite:///")[1] in row["artifact_uri"]
    back = tracking.load_report(run_id, uri=mlflow_uri)
    assert isinstance(back, Report) and back.values.keys() == report.values.keys()
    assert back.per_class.shape == report.per_class.shape


def test_log_report_into_an_active_run_and_nested(report, mlflow_uri):
    experiment = f"eval-{uuid.uuid4().hex[:8]}"
    tracking.setup(mlflow_uri, experiment)
    with tracking.run("parent", params={"method": "finetune"}) as parent:
        child = tracking.log_report(report, parent_run_id=parent.info.run_id, artifacts=False)
        same = tracking.log_report(report, artifacts=False)  # the active run itself
    assert same == parent.info.run_id and child != same
    runs = tracking.runs_frame(experiment, uri=mlflow_uri, parent_run_id=parent.info.run_id)
    assert list(runs["run_id"]) == [child]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_fast_in_one_sentence():
    uri = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    with pytest.raises(UserError) as err:
        tracking.setup(uri, "x")
    assert time.perf_counter() - t0 < 10
    message = str(err.value)
    assert "unreachable" in message and message.count(". ") == 0 and "\n" not in message
    with pytest.raises(UserError, match="does not exist"):
        tracking.runs_frame("no-such-experiment-" + uuid.uuid4().hex, uri="sqlite:///" + str(_missing_dir()) + "/x.db")


def _missing_dir():
    import tempfile
    from pathlib import Path

    return Path(tempfile.gettempdir()) / f"missing-{uuid.uuid4().hex}"
