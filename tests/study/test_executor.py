"""The Ray executor gives the same results as the in-process one: the tiny study run on a local
2-CPU Ray (training included, in a fresh model cache) logs the same metrics as the local run, also
when the local driver runs with another intra-op thread count (every job pins its own)."""

from __future__ import annotations

import math
import uuid

import pytest
import torch
import yaml

from unlearnbench.core.checkpoint import load_checkpoint
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.executor import ExecutorConfig, run_jobs
from unlearnbench.study.jobs import train_job
from unlearnbench.study.plan import TrainJob

from study_helpers import TINY, bench, runs_of  # isort: skip

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'unlearnbench[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _by_key(children):
    return {c.data.tags["run_key"]: c for c in children}


@pytest.fixture(scope="module")
def ray_study(local_ray, mlflow_uri, tmp_path_factory):
    """The tiny study on Ray, in a fresh model cache: (CLI result, experiment name)."""
    path = tmp_path_factory.mktemp("ray-tiny") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    experiment = f"ray-{uuid.uuid4().hex[:8]}"
    cache = path.parent / "fresh-cache"
    res = bench(path, experiment, mlflow_uri, cache, "--executor", "ray")
    return res, experiment, cache


def _compare_metrics(local_runs, ray_runs) -> int:
    compared = 0
    for key, lr in local_runs.items():
        rr = ray_runs[key]
        assert rr.info.status == lr.info.status == "FINISHED"
        for metric, value in lr.data.metrics.items():
            if metric.endswith("_seconds") or metric.startswith("time/"):
                continue  # wall-clock times differ between processes (RTE, train/epoch_seconds)
            assert math.isclose(rr.data.metrics[metric], value, rel_tol=0, abs_tol=1e-9), (key, metric)
            compared += 1
    return compared


def test_ray_study_matches_the_in_process_study(ray_study, interrupted_then_resumed, mlflow_uri):
    res, experiment, cache = ray_study
    assert res.exit_code == 0, res.output
    assert "8 run(s) finished now" in res.output
    assert list(cache.rglob("*.pt"))  # the models were trained by Ray tasks

    _, _, ray_children = runs_of(mlflow_uri, experiment)
    _, _, local_children = runs_of(mlflow_uri, interrupted_then_resumed["experiment"])
    ray_runs, local_runs = _by_key(ray_children), _by_key(local_children)
    assert sorted(ray_runs) == sorted(local_runs) and len(ray_runs) == 8
    assert _compare_metrics(local_runs, ray_runs) > 8 * 20


def test_a_local_study_on_a_two_thread_driver_matches_ray(ray_study, mlflow_uri, tmp_path):
    """The reported bug: the local executor ran jobs with the driver's thread count (2 on a 2-core
    machine) and Ray workers with 1, and the same study gave different numbers. Training the digits
    cnn on 2 threads instead of 1 changes its weights (by ~1e-7), so without pinning this fails."""
    _, ray_experiment, _ = ray_study
    small = {**TINY, "seeds": [0], "methods": [TINY["methods"][0]]}  # a subset of the Ray study's runs
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(small))
    experiment = f"threads-{uuid.uuid4().hex[:8]}"
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = bench(path, experiment, mlflow_uri, tmp_path / "cache", "--executor", "local")
        assert torch.get_num_threads() == 2  # the driver's own count is restored after every job
    finally:
        torch.set_num_threads(before)
    assert res.exit_code == 0, res.output
    client, parents, children = runs_of(mlflow_uri, experiment)
    local_runs = _by_key(children)
    ray_runs = _by_key(runs_of(mlflow_uri, ray_experiment)[2])
    assert len(local_runs) == 3 and set(local_runs) <= set(ray_runs)
    assert _compare_metrics(local_runs, ray_runs) > 3 * 20
    assert parents[0].data.tags["threads"] == "1"
    (original,) = [p for p in (tmp_path / "cache").rglob("original.pt")]
    assert load_checkpoint(original).meta["provenance"]["threads"] == 1  # recorded where it ran


def test_every_job_runs_with_the_pinned_thread_count(local_ray):
    def _threads() -> int:  # a local function: Ray ships it by value
        import torch

        return torch.get_num_threads()

    before = torch.get_num_threads()
    for kind in ("local", "ray"):
        out = run_jobs(_threads, [(), ()], ExecutorConfig(kind=kind, threads=2))
        assert [o.value for o in out] == [2, 2], kind
        # default: the CPUs a job reserves (Ray starts workers with as many OpenMP threads)
        out = run_jobs(_threads, [()], ExecutorConfig(kind=kind, num_cpus=1.0))
        assert out[0].value == 1, kind
    assert torch.get_num_threads() == before
    assert ExecutorConfig(num_cpus=3.5).threads_per_job == 3
    with pytest.raises(ConfigError, match="threads"):
        ExecutorConfig(threads=0)


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
