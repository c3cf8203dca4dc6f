"""The Ray executor gives the same results as the in-process one: the tiny study run on a local
2-CPU Ray (training included, in a fresh model cache) logs the same metrics as the local run."""

from __future__ import annotations

import math
import uuid

import pytest
import yaml

from unlearnbench.core.executor import ExecutorConfig, run_jobs
from unlearnbench.eval.study import TrainJob, train_job

from study_helpers import TINY, bench, runs_of  # isort: skip

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'unlearnbench[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _by_key(children):
    return {c.data.tags["run_key"]: c for c in children}


def test_ray_study_matches_the_in_process_study(local_ray, interrupted_then_resumed, mlflow_uri, tmp_path):
    local_experiment = interrupted_then_resumed["experiment"]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    experiment = f"ray-{uuid.uuid4().hex[:8]}"
    res = bench(path, experiment, mlflow_uri, tmp_path / "fresh-cache", "--executor", "ray")
    assert res.exit_code == 0, res.output
    assert "8 run(s) finished now" in res.output
    assert list((tmp_path / "fresh-cache").rglob("*.pt"))  # the models were trained by Ray tasks

    _, _, ray_children = runs_of(mlflow_uri, experiment)
    _, _, local_children = runs_of(mlflow_uri, local_experiment)
    ray_runs, local_runs = _by_key(ray_children), _by_key(local_children)
    assert sorted(ray_runs) == sorted(local_runs) and len(ray_runs) == 8
    compared = 0
    for key, lr in local_runs.items():
        rr = ray_runs[key]
        assert rr.info.status == lr.info.status == "FINISHED"
        for metric, value in lr.data.metrics.items():
            if metric == "rte_seconds" or metric.startswith("time/"):
                continue  # wall-clock times differ between processes
            assert math.isclose(rr.data.metrics[metric], value, rel_tol=0, abs_tol=1e-9), (key, metric)
            compared += 1
    assert compared > 8 * 20


def test_ray_reports_a_failing_job_like_the_local_executor(local_ray, tmp_path):
    bad = TrainJob("no-such-dataset", "cnn", {"epochs": 1, "device": "cpu"}, None, 0, 0.1, None, str(tmp_path / "x.pt"))
    local = run_jobs(train_job, [(bad,)], ExecutorConfig(kind="local"))
    remote = run_jobs(train_job, [(bad,)], ExecutorConfig(kind="ray"))
    assert not local[0].ok and not remote[0].ok
    assert remote[0].error == local[0].error and "no-such-dataset" in local[0].error


def test_a_crashing_ray_worker_fails_only_its_job(local_ray):
    import os

    def job(x):  # a local function: Ray ships it by value
        if x == 1:
            os._exit(3)  # the worker process dies, as on an out-of-memory kill
        return x * 2

    seen = []
    out = run_jobs(job, [(0,), (1,), (2,)], ExecutorConfig(kind="ray"), on_result=lambda i, o: seen.append(i))
    assert [o.ok for o in out] == [True, False, True]
    assert (out[0].value, out[2].value) == (0, 4)
    assert "Worker" in out[1].error or "died" in out[1].error
    assert sorted(seen) == [0, 1, 2]
