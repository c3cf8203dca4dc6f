"""Helpers of the study tests: the tiny study, CLI invocation, MLflow queries, an unlearn.run spy."""

from __future__ import annotations

from typer.testing import CliRunner

import unlearnbench.unlearn
from unlearnbench.cli import app

runner = CliRunner()
REAL_RUN = unlearnbench.unlearn.run

# Two methods, two seeds, two training epochs: the smallest study that still has a spread.
TINY = {
    "name": "tiny",
    "dataset": "digits",
    "model": "cnn",
    "forget": ["class:3"],
    "seeds": [0, 1],
    "train": {"epochs": 2},
    "methods": [
        {"name": "finetune", "config": {"epochs": 1}},
        {"name": "random_label", "config": {"epochs": 1}},
    ],
    "device": "cpu",
}


def bench(path, experiment, uri, work_dir, *extra, quiet=True):
    """``unlearnbench benchmark`` through the CLI."""
    return runner.invoke(app, ["benchmark", str(path), "--experiment", experiment, "--tracking-uri", uri,
                               "--work-dir", str(work_dir), *(["-q"] if quiet else []), *extra],
                         env={"COLUMNS": "200"})


def runs_of(uri, experiment):
    """(client, parent runs, child runs) of an experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("kind") == "study"]
    children = [r for r in runs if r.data.tags.get("kind") != "study"]
    return client, parents, children


def spy_run(monkeypatch, fail=None):
    """Record unlearn.run calls; ``fail(method, n)`` may raise to simulate a crash or Ctrl-C."""
    calls = []

    def spy(method, *args, **kwargs):
        calls.append(method)
        if fail is not None:
            fail(method, len(calls))
        return REAL_RUN(method, *args, **kwargs)

    monkeypatch.setattr(unlearnbench.unlearn, "run", spy)
    return calls
