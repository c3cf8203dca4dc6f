"""A study's runs as an MLflow user expects them: training curves for every model it trains, its
models logged with ``log_model: true``, true durations, params as JSON."""

from __future__ import annotations

import json

from study_helpers import bench, runs_of, spy_run


def test_study_runs_have_curves_models_true_durations_and_json_params(tiny_study, mlflow_uri, study_work_dir,
                                                                      monkeypatch):
    import mlflow

    seen: dict[str, list] = {}

    def look(method, n):  # inside the unlearning job: how the store shows its run right now
        _, _, kids = runs_of(mlflow_uri, experiment)
        seen["during"] = [c.info.status for c in kids if c.data.tags.get("kind") == "unlearn"]

    spy_run(monkeypatch, look)
    path, experiment = tiny_study(seeds=[0], methods=[{"name": "finetune", "config": {"epochs": 1}}],
                                  log_model=True)
    from unlearnbench.eval import tracking

    try:
        res = bench(path, experiment, mlflow_uri, study_work_dir, "--system-metrics")
    finally:
        tracking.enable_system_metrics(False)
    assert res.exit_code == 0, res.output
    client, [parent], children = runs_of(mlflow_uri, experiment)
    by_kind = {c.data.tags["kind"]: c for c in children}
    assert set(by_kind) == {"original", "retrain", "unlearn"}

    # Per-epoch curves of both models the study trained (2 epochs), stepped by epoch.
    for kind in ("original", "retrain"):
        hist = client.get_metric_history(by_kind[kind].info.run_id, "train/train_loss")
        assert [m.step for m in hist] == [1, 2], kind
    assert [m.step for m in client.get_metric_history(by_kind["unlearn"].info.run_id, "unlearn/forget_acc")] == [1]

    # log_model: true logs every model as an MLflow model, from its own run.
    exp = client.get_experiment_by_name(experiment)
    models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    assert sorted(m.source_run_id for m in models) == sorted(c.info.run_id for c in children)

    # Live: the unlearning job's run was RUNNING while the job ran (local executor).
    assert seen["during"] == ["RUNNING"]

    # True durations: the unlearning run lasts at least as long as its unlearning did, and lies
    # inside the study's run.
    u = by_kind["unlearn"]
    duration = (u.info.end_time - u.info.start_time) / 1000
    assert duration >= u.data.metrics["rte_seconds"] > 0
    assert parent.info.start_time <= u.info.start_time <= u.info.end_time <= parent.info.end_time

    # Params: the methods list is JSON; the experiment opens in MLflow's training view.
    assert [m["name"] for m in json.loads(parent.data.params["methods"])] == ["finetune"]
    assert parent.data.params["log_model"] == "true"
    assert 0 <= parent.data.metrics["system/cpu_utilization_percentage"] <= 100  # sampled over the study
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
