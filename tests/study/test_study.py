"""Studies end to end through the CLI: runs, resuming after an interruption, failing methods."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.errors import ConfigError
from unlearnbench.study import load_study, study_from_dict

from study_helpers import TINY, bench, runs_of, spy_run  # isort: skip

runner = CliRunner()


def test_study_config_rejects_unknown_keys_and_names():
    with pytest.raises(ConfigError, match="Unknown config key 'sedes'"):
        study_from_dict({**TINY, "sedes": [0]})
    with pytest.raises(ConfigError, match="'lrr'"):
        study_from_dict({**TINY, "methods": [{"name": "finetune", "config": {"lrr": 0.1}}]})
    with pytest.raises(ConfigError, match="'metric'"):
        study_from_dict({**TINY, "evaluation": {"metric": ["ua"]}})
    with pytest.raises(ConfigError, match="'confg'"):
        study_from_dict({**TINY, "methods": [{"name": "finetune", "confg": {}}]})
    with pytest.raises(Exception, match="salun"):  # did-you-mean from the registry
        study_from_dict({**TINY, "methods": ["saln"]})
    with pytest.raises(ConfigError, match="appears twice"):
        study_from_dict({**TINY, "methods": ["finetune", "finetune"]})
    with pytest.raises(Exception, match="forget spec"):
        study_from_dict({**TINY, "forget": ["klass:3"]})
    cfg = study_from_dict(TINY)
    assert cfg.methods[1].config == {"epochs": 1} and cfg.seeds == (0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["demo", "digits", "cifar10-salun", "cifar10-salun-class", "cifar10-sparse"])
def test_shipped_studies_load(name):
    cfg = load_study(name)
    assert cfg.name == name and cfg.methods


def test_interrupted_study_resumes_only_missing_runs(interrupted_then_resumed, mlflow_uri):
    seen = interrupted_then_resumed
    assert seen["first"].exit_code == 130, seen["first"].output
    _, parents, children = seen["after_interrupt"]
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    done = {c.data.tags["run_key"] for c in children if c.info.status == "FINISHED"}
    # References first, then per seed: original, finetune, random_label; Ctrl-C in the 3rd method run.
    assert done == {"retrain|retrain|class:3|0", "retrain|retrain|class:3|1", "original|original|class:3|0",
                    "unlearn|finetune|class:3|0", "unlearn|random_label|class:3|0", "original|original|class:3|1"}
    # The interrupted job's run was live when Ctrl-C came: it ends KILLED, with nothing logged in it.
    killed = [c for c in children if c.info.status == "KILLED"]
    assert len(children) == 7 and [c.data.tags["run_key"] for c in killed] == ["unlearn|finetune|class:3|1"]
    assert killed[0].data.metrics == {}

    assert seen["second"].exit_code == 0, seen["second"].output
    assert seen["resume_calls"] == ["finetune", "random_label"]  # only the missing runs
    assert "2 run(s) finished now, 6 already done" in seen["second"].output
    _, parents2, children2 = runs_of(mlflow_uri, seen["experiment"])
    assert [p.info.run_id for p in parents2] == [parents[0].info.run_id]  # the same study run, resumed
    assert parents2[0].info.status == "FINISHED"
    # The rerun replaced the killed attempt (moved to MLflow's trash): every job once, nothing twice.
    assert len(children2) == 8 and all(c.info.status == "FINISHED" for c in children2)


def test_tiny_study_end_to_end(interrupted_then_resumed, mlflow_uri, study_work_dir, tmp_path):
    experiment, path = interrupted_then_resumed["experiment"], interrupted_then_resumed["path"]
    client, parents, children = runs_of(mlflow_uri, experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    pid = parents[0].info.run_id
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {pid}
    assert sorted((c.data.tags["label"], c.data.tags["seed"]) for c in children) == [
        (m, s) for m in ("finetune", "original", "random_label", "retrain") for s in ("0", "1")]
    for c in children:
        m = c.data.metrics
        for key in ("ua", "retain_acc", "test_acc", "test_retained_acc", "mia_efficacy"):
            assert 0 <= m[key] <= 100, (key, c.data.tags["label"])
        if c.data.tags["kind"] != "retrain":
            assert "avg_gap" in m
        if c.data.tags["kind"] in ("unlearn", "retrain"):
            assert m["rte_seconds"] > 0
        assert "report.json" in {a.path for a in client.list_artifacts(c.info.run_id)}
    # The retrained model never saw class 3: it cannot classify it.
    retrain = [c for c in children if c.data.tags["kind"] == "retrain"]
    assert all(c.data.metrics["forget_acc"] == 0.0 for c in retrain)
    # Gaps are paired: every run logged its discordant images against its seed's retrain, the runs
    # evaluated after the resume too (the retrain's outcomes read back from its report.json).
    ref_ta = {c.data.tags["seed"]: c.data.metrics["test_acc"] for c in retrain}
    for c in children:
        if c.data.tags["kind"] == "retrain":
            continue
        m = c.data.metrics
        more, fewer = m["n/test_acc/model_only"], m["n/test_acc/reference_only"]
        assert (more - fewer) == pytest.approx((m["test_acc"] - ref_ta[c.data.tags["seed"]]) / 100 * m["n/test_acc"],
                                               abs=1e-6), c.data.tags["label"]
        assert "n/ua/model_only" in m and "n/retain_acc/reference_only" in m
    # Running it again finds every run finished and does nothing but print the summary table.
    again = bench(path, experiment, mlflow_uri, study_work_dir, quiet=False)
    assert again.exit_code == 0, again.output
    assert "0 run(s) finished now, 8 already done" in again.output
    assert "Nothing to run" in again.output
    ua = statistics.fmean(c.data.metrics["ua"] for c in children if c.data.tags["label"] == "finetune")
    assert re.search(rf"finetune\s+{ua:.2f} ± \d+\.\d\d", again.output), again.output
    _, parents2, children2 = runs_of(mlflow_uri, experiment)
    assert len(parents2) == 1 and len(children2) == 8

    # The report reads the real runs: per-class heat map and ROC curves from report.json.
    out = tmp_path / "reports"
    rep = runner.invoke(app, ["report", "--experiment", experiment, "--tracking-uri", mlflow_uri, "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    html = (out / experiment / "report.html").read_text()
    assert "Per-class test accuracy" in html and "MIA ROC curves" in html
    # UA vs TA, gap bars, run time vs Avg. Gap, ROC, per-class heat map; no robustness in this study
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 5
    assert 'id="fig-gap-bars"' in html and 'id="fig-pareto"' in html and 'id="fig-robust-bars"' not in html
    md = (out / experiment / "summary.md").read_text()
    assert "| retrain |" in md and "| finetune |" in md
    rows = json.loads((out / experiment / "summary.json").read_text())["rows"]
    finetune = next(r for r in rows if r["label"] == "finetune")
    assert finetune["vs_retrain"]["test_acc"]["paired"] is True


def test_failing_method_is_recorded_not_fatal(tiny_study, mlflow_uri, study_work_dir, monkeypatch):
    path, experiment = tiny_study(seeds=[0])

    def boom(method, n):
        if method == "random_label":
            raise RuntimeError("simulated divergence")

    spy_run(monkeypatch, boom)
    res = bench(path, experiment, mlflow_uri, study_work_dir)
    # The other runs finish, but the study as a whole failed: exit 1 and say how many runs did.
    assert res.exit_code == 1, res.output
    assert "1 failed" in res.output and "simulated divergence" in res.output
    assert "1 of 4 run(s) failed" in res.output and "Traceback" not in res.output
    client, parents, children = runs_of(mlflow_uri, experiment)
    failed = [c for c in children if c.info.status == "FAILED"]
    assert [c.data.tags["label"] for c in failed] == ["random_label"]
    assert all(c.data.tags["error"] == "RuntimeError: simulated divergence" for c in failed)
    text = client.download_artifacts(failed[0].info.run_id, "error.txt")
    assert "Traceback" in open(text).read()
    assert sum(c.info.status == "FINISHED" for c in children) == 3
    assert parents[0].info.status == "FAILED"

    # A re-run retries just the failed runs.
    calls = spy_run(monkeypatch)
    res = bench(path, experiment, mlflow_uri, study_work_dir)
    assert res.exit_code == 0, res.output
    assert calls == ["random_label"]
    _, parents2, _ = runs_of(mlflow_uri, experiment)
    assert parents2[0].info.status == "FINISHED"


def test_resume_closes_runs_left_running_by_a_killed_study(tiny_study, mlflow_uri, study_work_dir, monkeypatch):
    path, experiment = tiny_study(seeds=[0], methods=[{"name": "finetune", "config": {"epochs": 1}}])
    assert bench(path, experiment, mlflow_uri, study_work_dir).exit_code == 0
    client, _, children = runs_of(mlflow_uri, experiment)
    child = next(c for c in children if c.data.tags.get("label") == "finetune")
    # What a driver killed while logging this child leaves behind: a run RUNNING for ever.
    client.update_run(child.info.run_id, status="RUNNING")

    calls = spy_run(monkeypatch)
    res = bench(path, experiment, mlflow_uri, study_work_dir, quiet=False)
    assert res.exit_code == 0, res.output
    assert "left RUNNING" in res.output
    assert calls == ["finetune"]  # the job is run again, not counted as done
    assert client.get_run(child.info.run_id).info.status == "KILLED"
    _, _, after = runs_of(mlflow_uri, experiment)
    assert not [c for c in after if c.info.status == "RUNNING"]


def test_bad_study_is_one_sentence(tmp_path, mlflow_uri):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmethods: [finetune]\nepochs: 3\n")
    res = runner.invoke(app, ["benchmark", str(path), "--tracking-uri", mlflow_uri])
    assert res.exit_code == 2 and "Unknown config key 'epochs'" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["benchmark", "no-such-study", "--tracking-uri", mlflow_uri])
    assert res.exit_code == 2 and "shipped example" in res.output
    res = runner.invoke(app, ["benchmark", "demo", "--executor", "dask", "--tracking-uri", mlflow_uri])
    assert res.exit_code == 2 and "Unknown executor" in res.output


def test_a_forget_spec_that_does_not_fit_fails_before_any_run(tiny_study, mlflow_uri, study_work_dir):
    path, experiment = tiny_study(forget=["class:12"])
    res = bench(path, experiment, mlflow_uri, study_work_dir)
    assert res.exit_code == 2 and "out of range" in res.output and "Traceback" not in res.output
    from mlflow import MlflowClient

    assert MlflowClient(tracking_uri=mlflow_uri).get_experiment_by_name(experiment) is None  # nothing logged
