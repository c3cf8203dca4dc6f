"""The data fingerprint and reference checks through the CLI: one sentence and exit 2 before any
work, the --allow-*-mismatch overrides recorded with the run (core.protocol)."""

from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint
from unlearnbench.core.data import fingerprint
from unlearnbench.core.jobs import train_model
from unlearnbench.core.train import TrainConfig

runner = CliRunner()
QUICK = ["--no-track", "-q", "--device", "cpu"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """digits mlp checkpoints on a 40-per-class subset: original, retrained without class 3 / class 5,
    retrained without class 3 on split seed 1, and a cnn retrained without class 3."""
    from unlearnbench.core.data import DataSource

    folder = tmp_path_factory.mktemp("proto")
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, seed=0, device="cpu")
    src = DataSource(per_class=40)
    paths = {}
    for name, model, exclude, split_seed in (("original", "mlp", None, 0), ("r3", "mlp", "class:3", 0),
                                              ("r5", "mlp", "class:5", 0), ("r3_seed1", "mlp", "class:3", 1),
                                              ("r3_cnn", "cnn", "class:3", 0)):
        out = train_model("digits", model, cfg, exclude=exclude, split_seed=split_seed, source=src)
        paths[name] = save_checkpoint(folder / f"{name}.pt", out.model, out.meta)
    return paths


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert text.startswith("Error:") and text.count("Error:") == 1
    return text


def _evaluate(ckpts, *args):
    metrics = "ua,retain_acc" + (",avg_gap" if "-r" in args else "")
    return runner.invoke(app, ["evaluate", "-c", str(ckpts["original"]), "--forget", "class:3",
                               "--metrics", metrics, *args, *QUICK])


def test_checkpoint_records_fingerprint_subset_and_forget_set(ckpts):
    meta = load_checkpoint(ckpts["r3"]).meta
    fp = meta[fingerprint.KEY]
    assert (fp["dataset"], fp["per_class"], fp["n_train"], fp["split_seed"]) == ("digits", 40, 400, 0)
    assert meta["forget_set"]["spec"] == "class:3" and meta["forget_set"]["n"] == 36


def test_evaluate_inherits_the_subset_and_accepts_the_right_reference(ckpts, tmp_path):
    out = tmp_path / "r.json"
    result = _evaluate(ckpts, "-r", str(ckpts["r3"]), "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert "avg_gap" in report["values"]
    assert "data_mismatch" not in report["config"] and "reference_mismatch" not in report["config"]


def test_model_trained_on_a_subset_is_refused_against_the_full_data(ckpts, tmp_path):
    text = _error(_evaluate(ckpts, "--subset", "0"))
    assert "40-per-class subset (400 of 1,347 images)" in text and "full digits training set" in text
    assert "--allow-data-mismatch" in text
    # the override goes on and is recorded in the report (and so in the MLflow params)
    out = tmp_path / "m.json"
    ok = _evaluate(ckpts, "--subset", "0", "--allow-data-mismatch", "--json", str(out))
    assert ok.exit_code == 0, ok.output
    assert "40-per-class subset" in json.loads(out.read_text())["config"]["data_mismatch"]
    # attack and unlearn refuse it too (unlearn writes nothing)
    att = runner.invoke(app, ["attack", "pgd", "-c", str(ckpts["original"]), "--n", "5", "--per-class", "30", *QUICK])
    assert "30-per-class subset" in _error(att)
    un = runner.invoke(app, ["unlearn", "finetune", "-c", str(ckpts["original"]), "-f", "class:3", "--subset", "0",
                             "-o", str(tmp_path / "u.pt"), "--no-eval", *QUICK])
    assert "was trained on a 40-per-class subset" in _error(un) and not (tmp_path / "u.pt").exists()


@pytest.mark.parametrize("ref, phrase", [
    ("r5", "was retrained without class:5 (36 images), but this run forgets class:3 (36 images)"),
    ("original", "is the original model, not a model retrained without the forget set"),
    ("r3_seed1", "used split seed 1, but this run uses 0"),
    ("r3_cnn", "is a cnn, but the evaluated model is a mlp"),
])
def test_evaluate_refuses_a_reference_that_is_not_this_runs_retrain(ckpts, ref, phrase):
    text = _error(_evaluate(ckpts, "-r", str(ckpts[ref])))
    assert phrase in text and "--allow-reference-mismatch" in text


def test_reference_report_json_is_checked_too(ckpts, tmp_path):
    ref_json = tmp_path / "r5.json"
    made = runner.invoke(app, ["evaluate", "-c", str(ckpts["r5"]), "--metrics", "ua,retain_acc",
                               "--json", str(ref_json), *QUICK])
    assert made.exit_code == 0, made.output
    assert "retrained without class:5" in _error(_evaluate(ckpts, "-r", str(ref_json)))


def test_reference_override_is_recorded(ckpts, tmp_path):
    out = tmp_path / "o.json"
    result = _evaluate(ckpts, "-r", str(ckpts["r5"]), "--allow-reference-mismatch", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "retrained without class:5" in json.loads(out.read_text())["config"]["reference_mismatch"]


def test_unlearn_checks_the_reference_before_unlearning(ckpts, tmp_path, monkeypatch):
    import unlearnbench.unlearn.jobs as jobs

    def must_not_run(*args, **kwargs):
        raise AssertionError("the method ran before the reference was checked")

    monkeypatch.setattr(jobs, "run", must_not_run)
    args = ["unlearn", "finetune", "-c", str(ckpts["original"]), "-f", "class:3", "--set", "epochs=1", *QUICK]
    text = _error(runner.invoke(app, [*args, "-r", str(ckpts["r5"]), "-o", str(tmp_path / "u.pt")]))
    assert "retrained without class:5" in text and not (tmp_path / "u.pt").exists()
    monkeypatch.undo()
    ok = runner.invoke(app, [*args, "-r", str(ckpts["r5"]), "--allow-reference-mismatch", "-o", str(tmp_path / "u.pt")])
    assert ok.exit_code == 0, ok.output
    meta = load_checkpoint(tmp_path / "u.pt").meta
    assert "retrained without class:5" in meta["reference_mismatch"]
    assert meta[fingerprint.KEY]["per_class"] == 40 and meta["forget_set"]["n"] == 36


def test_old_checkpoint_without_fingerprint_warns_and_goes_on(ckpts, tmp_path, caplog):
    from unlearnbench.eval.jobs import evaluate_checkpoint

    old = load_checkpoint(ckpts["original"])
    meta = {k: v for k, v in old.meta.items() if k != fingerprint.KEY}
    model = old.build("cpu")
    save_checkpoint(tmp_path / "old.pt", model, meta)
    from unlearnbench.eval.engine import Evaluator

    with caplog.at_level(logging.WARNING):
        report = evaluate_checkpoint(tmp_path / "old.pt", forget="class:3", device="cpu",
                                     evaluator=Evaluator(metrics=["ua"]))
    assert "ua" in report.values
    assert any("records no data fingerprint" in r.getMessage() for r in caplog.records)


def test_reference_rules_on_metadata(ckpts):
    """check_reference itself: an `unlearn retrain` output is a retrain; an unlearned model is not;
    a checkpoint without a recorded forget_set is matched by applying its --exclude spec."""
    from unlearnbench.core.data import DataSource, prepare
    from unlearnbench.core.protocol import ReferenceMismatchError, check_reference

    splits, data = prepare("digits", "class:3", source=DataSource(per_class=40))
    run = load_checkpoint(ckpts["original"]).meta
    ref = load_checkpoint(ckpts["r3"]).meta
    check = lambda meta: check_reference(meta, run=run, splits=splits, data=data, where="ref.pt")  # noqa: E731
    assert check(ref) is None
    assert check({**ref, "kind": "unlearn", "method": "retrain"}) is None
    with pytest.raises(ReferenceMismatchError, match=r"is an unlearned model \(finetune\)"):
        check({**ref, "kind": "unlearn", "method": "finetune"})
    old = {k: v for k, v in ref.items() if k not in ("forget_set", fingerprint.KEY)}
    assert check(old) is None  # class:3 applied to this data: the same 36 indices
    with pytest.raises(ReferenceMismatchError, match=r"retrained without class:5 \(36 images\)"):
        check({**old, "exclude": "class:5"})
    # allowed: the problem comes back as the note to record, nothing is raised
    note = check_reference({**old, "exclude": "class:5"}, run=run, splits=splits, data=data, where="ref.pt",
                           allow=True)
    assert note.startswith("The reference ref.pt was retrained without class:5")
    from unlearnbench.core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="has 5 classes"):  # never overridable
        check_reference({**ref, "num_classes": 5}, run=run, splits=splits, data=data, where="ref.pt", allow=True)
