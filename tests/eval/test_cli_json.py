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
    assert "Evaluated " in result.stderr and "unlearned.pt in " in result.stderr  # human lines: stderr


def test_several_checkpoints_predict_the_reference_and_original_once(digits_ckpts, monkeypatch):
    """Two checkpoints against one reference and original: the second evaluation predicts only
    its own model, and its report equals one from a fresh evaluator (divergence included)."""
    from unlearnbench.eval.engine import Evaluator
    from unlearnbench.eval.jobs import evaluate_checkpoint
    from unlearnbench.eval.metrics.base import Predictions

    calls = []
    real = Predictions.of.__func__

    def counting(cls, model, data, *args, **kwargs):
        calls.append(id(model))
        return real(cls, model, data, *args, **kwargs)

    monkeypatch.setattr(Predictions, "of", classmethod(counting))
    kw = dict(reference=digits_ckpts["retrain"], original=digits_ckpts["original"], forget="class:3", device="cpu")
    shared = Evaluator()
    first = evaluate_checkpoint(digits_ckpts["unlearned"], evaluator=shared, **kw)
    n_first = len(calls)
    second = evaluate_checkpoint(digits_ckpts["original"], evaluator=shared, **kw)
    n_second = len(calls) - n_first
    assert len(set(calls[:n_first])) == 3  # model, reference and original predicted the first time
    assert len(set(calls[n_first:])) == 1 and n_second < n_first / 2  # then only the evaluated model
    assert shared.companion_hits == 2
    fresh = evaluate_checkpoint(digits_ckpts["original"], evaluator=Evaluator(), **kw)
    assert {"div/js/forget", "avg_gap", "aus"} <= set(second.values)
    assert second.values.keys() == fresh.values.keys()
    for k, v in fresh.values.items():
        assert second.values[k] == v or (v != v and second.values[k] != second.values[k]), k
    assert first.values["forget_acc"] != second.values["forget_acc"]


def test_evaluate_cli_with_two_checkpoints(digits_ckpts):
    result = runner.invoke(app, [
        "evaluate", "-c", str(digits_ckpts["unlearned"]), "-c", str(digits_ckpts["original"]),
        "-r", str(digits_ckpts["retrain"]), "--original", str(digits_ckpts["original"]),
        "--metrics", "forget_acc,test_acc,aus", "--forget", "class:3", "--json", "-", "--no-track", "--device", "cpu", "-q",
    ])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["config"]["checkpoint"] for d in data] == [str(digits_ckpts["unlearned"]), str(digits_ckpts["original"])]
    assert "evaluated once for 2 checkpoints" in result.stderr
