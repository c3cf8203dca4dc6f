"""Generation studies resume like classification studies: a second run of the same study re-runs
nothing (no training, unlearning or evaluation is called, no run is added) and reports the same
table; a changed method config re-runs that row only, replacing its earlier run; the API and the
CLI give the same result."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml
from gen_study_helpers import TINY_GEN
from typer.testing import CliRunner

import unlearnbench.core.jobs
import unlearnbench.eval.generation
import unlearnbench.unlearn
from unlearnbench import api
from unlearnbench.cli import app

runner = CliRunner()


def _spy(monkeypatch, threads: list[int] | None = None) -> dict[str, list]:
    """Count the work a study does: model training, unlearning calls, evaluations (and the
    intra-op thread count each ran with, into ``threads``)."""
    import torch

    calls: dict[str, list] = {"train": [], "unlearn": [], "evaluate": []}
    for module, name, bucket in ((unlearnbench.core.jobs, "train_generator", "train"),
                                 (unlearnbench.core.jobs, "train_model", "train"),
                                 (unlearnbench.unlearn, "run", "unlearn"),
                                 (unlearnbench.eval.generation, "evaluate_generation", "evaluate")):
        real = getattr(module, name)

        def spy(*args, _real=real, _bucket=bucket, _name=name, **kwargs):
            calls[_bucket].append(args[0] if _bucket == "unlearn" else _name)
            if threads is not None:
                threads.append(torch.get_num_threads())
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return calls


def _children(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000) if r.data.tags.get("kind") != "study"]


def _bench(path, experiment, uri, work, out, *extra):
    return runner.invoke(app, ["benchmark", str(path), "--experiment", experiment, "--tracking-uri", uri, "--work-dir",
                               str(work), "--out", str(out), "--json", "-", "-q", *extra])


@pytest.fixture(scope="module")
def resumed(mlflow_uri, tmp_path_factory):
    """The tiny generation study through the CLI three times: fresh, again, then with one method's
    config changed; what each run did and logged. The process runs 2 intra-op threads, the study
    --threads 1: the jobs must see 1."""
    import torch

    tmp = tmp_path_factory.mktemp("gen-resume")
    path = tmp / "tiny-gen.yaml"
    path.write_text(yaml.safe_dump(TINY_GEN))
    experiment = f"gen-{uuid.uuid4().hex[:8]}"
    seen: dict = {"tmp": tmp, "path": path, "experiment": experiment, "threads": []}
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for step, extra in (("first", ()), ("second", ()),
                            ("changed", ("--set", "methods=" + json.dumps(
                                [TINY_GEN["methods"][0], {"name": "ddpm_salun", "config": {"steps": 3, "batch_size": 16}}])))):
            with pytest.MonkeyPatch.context() as mp:
                calls = _spy(mp, seen["threads"])
                result = _bench(path, experiment, mlflow_uri, tmp / "cache", tmp / "reports", "--threads", "1", *extra)
            assert result.exit_code == 0, result.output
            seen[step] = {"calls": calls, "json": json.loads(result.stdout),
                          "children": _children(mlflow_uri, experiment),
                          "report": (tmp / "reports" / "tiny-gen" / "report.md").read_text()}
        seen["threads_after"] = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    return seen


def test_the_first_run_trains_unlearns_and_evaluates_every_row(resumed):
    first = resumed["first"]
    assert first["calls"]["train"] == ["train_model", "train_generator", "train_generator"]  # classifier, original, Retrain
    assert sorted(first["calls"]["unlearn"]) == ["ddpm_finetune", "ddpm_salun"]
    assert len(first["calls"]["evaluate"]) == 4  # retrain, original, two methods
    assert (first["json"]["finished"], first["json"]["skipped"], first["json"]["resumed"]) == (4, 0, False)
    assert sorted(r.data.tags["label"] for r in first["children"]) == ["ddpm_finetune", "ddpm_salun", "original", "retrain"]
    assert all(r.info.status == "FINISHED" for r in first["children"])


def test_every_job_runs_on_the_studys_threads(resumed):
    """--threads reaches the generation jobs (training, unlearning, evaluation) though the driver
    runs another count, which it gets back."""
    assert len(resumed["threads"]) == 3 + 2 + 4 + 1 + 1 and set(resumed["threads"]) == {1}
    assert resumed["threads_after"] == 2


def test_a_second_run_re_runs_nothing_and_reports_the_same_table(resumed):
    first, second = resumed["first"], resumed["second"]
    assert second["calls"] == {"train": [], "unlearn": [], "evaluate": []}
    assert (second["json"]["finished"], second["json"]["skipped"], second["json"]["resumed"]) == (0, 4, True)
    assert second["json"]["parent_run_id"] == first["json"]["parent_run_id"]
    assert sorted(r.info.run_id for r in second["children"]) == sorted(r.info.run_id for r in first["children"])
    # The rows read back from MLflow (metrics, n, sample grids) give the table and report of the first run.
    assert second["json"]["tables"] == first["json"]["tables"]
    strip = lambda text: [ln for ln in text.splitlines() if not ln.startswith("Study time")]  # noqa: E731
    assert strip(second["report"]) == strip(first["report"])


def test_a_changed_method_config_re_runs_that_row_only(resumed):
    first, changed = resumed["first"], resumed["changed"]
    assert changed["calls"] == {"train": [], "unlearn": ["ddpm_salun"], "evaluate": ["evaluate_generation"]}
    assert (changed["json"]["finished"], changed["json"]["skipped"]) == (1, 3)
    before = {r.data.tags["label"]: r for r in first["children"]}
    after = {r.data.tags["label"]: r for r in changed["children"]}
    assert len(changed["children"]) == 4  # the earlier salun run went to MLflow's trash, not beside the new one
    assert {k: r.info.run_id for k, r in after.items() if k != "ddpm_salun"} == \
        {k: r.info.run_id for k, r in before.items() if k != "ddpm_salun"}
    assert after["ddpm_salun"].info.run_id != before["ddpm_salun"].info.run_id
    assert after["ddpm_salun"].data.params["config.steps"] == "3"
    assert after["ddpm_salun"].data.tags["run_key"] != before["ddpm_salun"].data.tags["run_key"]


def test_the_api_gives_the_cli_result(resumed, mlflow_uri):
    """api.run_study on a fresh experiment (the cached models, every row evaluated again) gives the
    CLI's table, and the report it writes names the same rows."""
    tmp = resumed["tmp"]
    cfg = api.load_study(resumed["path"], experiment=f"api-{uuid.uuid4().hex[:8]}")
    result = api.run_study(cfg, tracking_uri=mlflow_uri, work_dir=tmp / "cache", reports=tmp / "api-reports")
    assert (result.finished, result.skipped, result.failures) == (4, 0, [])
    # Every value but the wall-clock run time of the methods, measured anew.
    untimed = lambda tables: {spec: [{k: v for k, v in row.items() if k != "run time s"} for row in rows]  # noqa: E731
                              for spec, rows in tables.items()}
    assert untimed(result.report.data["tables"]) == untimed(resumed["first"]["json"]["tables"])
    assert result.report.data["tables"]["class:3"][0]["run time s"] == \
        resumed["first"]["json"]["tables"]["class:3"][0]["run time s"]  # Retrain's: its (cached) training time
    assert result.report.files == (tmp / "api-reports" / "tiny-gen" / "report.html",
                                   tmp / "api-reports" / "tiny-gen" / "report.md")
    assert [r.label for r in result.rows] == ["retrain", "original", "ddpm_finetune", "ddpm_salun"]


@pytest.mark.deep
def test_a_generation_study_on_ray_gives_the_in_process_numbers(mlflow_uri, tmp_path):
    """The same job functions as Ray tasks: the table equals the local executor's (every job pinned
    to one thread on both), run times aside."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'unlearnbench[ray]')")
    path = tmp_path / "tiny-gen.yaml"
    path.write_text(yaml.safe_dump(TINY_GEN))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = _bench(path, f"ray-{uuid.uuid4().hex[:8]}", mlflow_uri, tmp_path / "cache", tmp_path / "r",
                        "--executor", "ray")
    finally:
        ray.shutdown()
    local = _bench(path, f"local-{uuid.uuid4().hex[:8]}", mlflow_uri, tmp_path / "cache", tmp_path / "l")
    assert on_ray.exit_code == 0 and local.exit_code == 0, on_ray.output + local.output
    tables = [{spec: [{k: v for k, v in row.items() if k != "run time s"} for row in rows]
               for spec, rows in json.loads(r.stdout)["tables"].items()} for r in (on_ray, local)]
    assert tables[0] == tables[1] and json.loads(on_ray.stdout)["finished"] == 4
