"""One tiny study through ``benchmark --json -``: the outcome and table as JSON on stdout, one
progress line per finished job on stderr, and the MLflow conventions of a study (description,
readable names, dataset/model params and dataset inputs on every child, unlearning curves)."""

from __future__ import annotations

import json

from study_helpers import bench


def test_benchmark_json_progress_lines_and_mlflow_conventions(tiny_study, mlflow_uri, study_work_dir):
    from mlflow import MlflowClient

    path, experiment = tiny_study(seeds=[0], methods=[{"name": "finetune", "config": {"epochs": 2}}],
                                  description="Does finetuning forget class 3?")
    result = bench(path, experiment, mlflow_uri, study_work_dir, "--json", "-", quiet=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["experiment"] == experiment and data["total"] == 3 and data["failures"] == []
    assert data["finished"] + data["skipped"] == 3
    labels = {r["label"] for r in data["summary"]["rows"]}
    assert {"finetune", "retrain", "original"} <= labels
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("unlearn and evaluate")]
    assert len(lines) == 2 and "1/2 jobs" in lines[0] and "ETA" in lines[0] and "2/2 jobs" in lines[1]

    client = MlflowClient(tracking_uri=mlflow_uri)
    parent = client.get_run(data["parent_run_id"])
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("Does finetuning forget class 3?") and "finetune" in note and "class:3" in note
    assert parent.data.tags["mlflow.source.git.commit"] == parent.data.tags["git_sha"]
    exp = client.get_experiment_by_name(experiment)
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    names = {c.data.tags["mlflow.runName"] for c in children}
    assert names == {"finetune · class:3 · seed 0", "retrain · class:3 · seed 0", "original · before class:3 · seed 0"}
    for child in children:
        assert child.data.params["dataset"] == "digits" and child.data.params["model"] == "cnn"
        contexts = {d.dataset.name: {t.key: t.value for t in d.tags}["mlflow.data.context"]
                    for d in child.inputs.dataset_inputs}
        assert contexts["digits/forget"] == "forget" and contexts["digits/retain"] == "retain"
    ft = next(c for c in children if c.data.tags["kind"] == "unlearn")
    assert [m.step for m in client.get_metric_history(ft.info.run_id, "unlearn/forget_acc")] == [1, 2]
    assert [m.step for m in client.get_metric_history(ft.info.run_id, "unlearn/loss/retain")] == [1, 2]
