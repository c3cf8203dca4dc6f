"""Fixtures of the study tests: a shared model cache, the tiny study run once (interrupted, then
resumed) for the tests that inspect it."""

from __future__ import annotations

import uuid

import pytest
import yaml
from study_helpers import TINY, bench, runs_of, spy_run


@pytest.fixture(scope="session")
def study_work_dir(tmp_path_factory):
    """Trained originals/references are cached here and shared by the study tests."""
    return tmp_path_factory.mktemp("study-work")


@pytest.fixture
def tiny_study(tmp_path):
    """Write the tiny study (with changes) to a file; returns (path, a fresh experiment name)."""

    def write(**changes) -> tuple:
        data = {**TINY, **changes}
        path = tmp_path / f"{data['name']}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path, f"study-{uuid.uuid4().hex[:8]}"

    return write


@pytest.fixture(scope="session")
def interrupted_then_resumed(mlflow_uri, study_work_dir, tmp_path_factory):
    """The tiny study (two methods, two seeds) through the CLI, stopped by Ctrl-C in its third
    method run, then run again. Returns what was observed at each step."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    experiment = f"study-{uuid.uuid4().hex[:8]}"
    seen: dict = {"experiment": experiment, "path": path}
    with pytest.MonkeyPatch.context() as mp:
        def ctrl_c(method, n):
            if n == 3:
                raise KeyboardInterrupt

        spy_run(mp, ctrl_c)
        seen["first"] = bench(path, experiment, mlflow_uri, study_work_dir)
        seen["after_interrupt"] = runs_of(mlflow_uri, experiment)
    with pytest.MonkeyPatch.context() as mp:
        seen["resume_calls"] = spy_run(mp)
        seen["second"] = bench(path, experiment, mlflow_uri, study_work_dir)
    return seen
