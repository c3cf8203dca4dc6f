"""``evaluate --json -``: the report alone on stdout, as strict JSON (NaN → null)."""

from __future__ import annotations

import json
import math

from typer.testing import CliRunner

from unlearnbench.cli import app

runner = CliRunner()


def test_evaluate_json_to_stdout_parses_strictly(digits_ckpts):
    result = runner.invoke(app, [
        "evaluate", "-c", str(digits_ckpts["unlearned"]), "-r", str(digits_ckpts["retrain"]),
        "--metrics", "forget_acc,retain_acc,test_acc,ua", "--json", "-", "--no-track", "--device", "cpu", "-q",
    ])
    assert result.exit_code == 0, result.output

    def strict(token):
        raise AssertionError(f"{token} is not JSON")

    data = json.loads(result.stdout, parse_constant=strict)  # the whole of stdout is the JSON
    v = data["values"]
    assert {"forget_acc", "retain_acc", "test_acc", "ua"} <= set(v)
    assert math.isclose(v["ua"], 100 - v["forget_acc"])
    assert data["meta"]["method"] == "finetune" and data["mlflow_run_id"] is None
    assert "Evaluated in" in result.stderr  # the human lines moved to stderr
