"""``benchmark --json -``: the study outcome and table as JSON on stdout; progress on stderr,
one line per finished job."""

from __future__ import annotations

import json

from study_helpers import bench


def test_benchmark_json_and_progress_lines(tiny_study, mlflow_uri, study_work_dir):
    path, experiment = tiny_study(seeds=[0], methods=[{"name": "finetune", "config": {"epochs": 1}}])
    result = bench(path, experiment, mlflow_uri, study_work_dir, "--json", "-", quiet=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["experiment"] == experiment and data["total"] == 3 and data["failures"] == []
    assert data["finished"] + data["skipped"] == 3
    labels = {r["label"] for r in data["summary"]["rows"]}
    assert {"finetune", "retrain", "original"} <= labels
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("unlearn and evaluate")]
    assert len(lines) == 2 and "1/2 jobs" in lines[0] and "ETA" in lines[0] and "2/2 jobs" in lines[1]
