"""Live MLflow runs: RUNNING while the work runs, a true duration, the right final status, system
metrics for runs of any length, the training-view experiment tag. Read back through
``MlflowClient`` from the session's SQLite store (another thread where the run is still open)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.eval import tracking

runner = CliRunner()


def _only_run(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_train_run_is_running_while_it_trains_and_lasts_as_long_as_the_command(mlflow_uri, tmp_path, monkeypatch):
    pytest.importorskip("psutil")
    from mlflow import MlflowClient

    import unlearnbench.api as api

    experiment = f"live-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=mlflow_uri)
    seen: dict[str, object] = {}
    observed = threading.Event()
    real_train = api.train

    def watch() -> None:
        # Another thread with its own client, as the MLflow UI would see the store.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not observed.is_set():
            exp = client.get_experiment_by_name(experiment)
            runs = client.search_runs([exp.experiment_id]) if exp is not None else []
            if runs and seen.get("training"):
                seen["status"] = runs[0].info.status
                observed.set()
            time.sleep(0.05)

    def train_model(*args, **kwargs):
        seen["training"] = True
        assert observed.wait(60), "the watcher never saw the run"  # the training starts once it was seen
        t0 = time.perf_counter()
        out = real_train(*args, **kwargs)
        seen["train_s"] = time.perf_counter() - t0
        return out

    monkeypatch.setattr(api, "train", train_model)  # the command calls api.train
    # The wall time below is the command's, not Python's first import of torch, MLflow and the
    # training code (the CLI imports them lazily), nor the store's creation of the experiment.
    import unlearnbench.commands.train  # noqa: F401
    import unlearnbench.core.data  # noqa: F401
    import unlearnbench.core.models  # noqa: F401
    import unlearnbench.eval.inputs  # noqa: F401

    tracking.setup(mlflow_uri, experiment)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        t0 = time.perf_counter()
        result = runner.invoke(app, [
            "train", "--epochs", "3", "--system-metrics", "--out", str(tmp_path / "o.pt"),
            "--tracking-uri", mlflow_uri, "--experiment", experiment, "-q",
        ])
        wall = time.perf_counter() - t0
    finally:
        tracking.enable_system_metrics(False)
        observed.set()
        watcher.join()
    assert result.exit_code == 0, result.output
    assert seen["status"] == "RUNNING"
    run = _only_run(client, experiment)
    assert run.info.status == "FINISHED"
    duration = (run.info.end_time - run.info.start_time) / 1000
    # The run spans the training (and the logging after it), and little else of the command.
    assert seen["train_s"] <= duration <= wall
    assert duration >= 0.9 * wall, (duration, wall)
    # MLflow's default sampler (10 s) alone would log nothing for a run this short.
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    # An original's dataset inputs: the splits it trained, selected and was tested on.
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"digits/train", "digits/val", "digits/test"}
    exp = client.get_experiment_by_name(experiment)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


@pytest.mark.parametrize(("error", "status"), [(None, "FINISHED"), (ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_run_ends_with_the_status_of_its_work(mlflow_uri, error, status):
    import mlflow
    from mlflow import MlflowClient

    experiment = f"live-{uuid.uuid4().hex[:8]}"
    tracking.setup(mlflow_uri, experiment)
    run_id = None
    try:
        with tracking.run("work", params={"a": 1}) as active:
            run_id = active.info.run_id
            assert MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).info.status == "RUNNING"
            if error is not None:
                raise error("stop")
    except (ValueError, KeyboardInterrupt) as exc:
        assert isinstance(exc, error)  # re-raised, not swallowed
    assert mlflow.active_run() is None
    assert MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).info.status == status


def test_system_metrics_cover_a_run_shorter_than_the_sampling_interval(mlflow_uri):
    pytest.importorskip("psutil")
    from mlflow import MlflowClient

    experiment = f"live-{uuid.uuid4().hex[:8]}"
    tracking.setup(mlflow_uri, experiment)
    tracking.enable_system_metrics(True)
    try:
        with tracking.run("short") as active:
            time.sleep(0.2)
    finally:
        tracking.enable_system_metrics(False)
    metrics = MlflowClient(tracking_uri=mlflow_uri).get_run(active.info.run_id).data.metrics
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100
    assert metrics["system/system_memory_usage_megabytes"] > 0


def test_experiment_kind_is_set_once_and_a_users_choice_is_kept(mlflow_uri):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = f"live-{uuid.uuid4().hex[:8]}"
    tracking.setup(mlflow_uri, experiment)
    exp = client.get_experiment_by_name(experiment)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    client.set_experiment_tag(exp.experiment_id, tracking.EXPERIMENT_KIND_TAG, "finetuning")
    tracking.setup(mlflow_uri, experiment)
    assert client.get_experiment_by_name(experiment).tags[tracking.EXPERIMENT_KIND_TAG] == "finetuning"


def test_a_request_refused_during_its_work_leaves_no_active_run(mlflow_uri):
    from mlflow import MlflowClient

    from unlearnbench.core.errors import UserError

    experiment = f"live-{uuid.uuid4().hex[:8]}"
    tracking.setup(mlflow_uri, experiment)
    with pytest.raises(UserError):
        with tracking.run("refused") as active:
            raise UserError("bad input found once the data was read")
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    assert client.search_runs([exp.experiment_id]) == []  # active runs: none
    assert client.get_run(active.info.run_id).info.lifecycle_stage == "deleted"


def test_ctrl_c_on_a_training_ends_its_run_killed(mlflow_uri, tmp_path):
    """The real thing: SIGINT to a `train` process while its run is RUNNING."""
    import os
    import signal
    import subprocess
    import sys

    from mlflow import MlflowClient

    experiment = f"live-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "unlearnbench", "train", "--epochs", "500", "-q",
                             "--out", str(tmp_path / "o.pt"), "--tracking-uri", mlflow_uri, "--experiment", experiment],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # A shell starts background jobs with SIGINT ignored, and Python keeps an
                            # inherited SIG_IGN (no KeyboardInterrupt): give the child the default, as a
                            # terminal's Ctrl-C finds it, whatever launched the test suite.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    client = MlflowClient(tracking_uri=mlflow_uri)
    run = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            exp = client.get_experiment_by_name(experiment)
            runs = client.search_runs([exp.experiment_id]) if exp is not None else []
            if runs and runs[0].info.status == "RUNNING":
                run = runs[0]
                break
            time.sleep(0.2)
        assert run is not None, proc.communicate(timeout=5)
        time.sleep(1.0)  # inside the training loop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert client.get_run(run.info.run_id).info.status == "KILLED"
    assert not (tmp_path / "o.pt").exists()  # nothing half-written
