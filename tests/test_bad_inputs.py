"""A tour of bad inputs over every command: each is one sentence and exit code 2, never a traceback,
and leaves no new or changed file behind.

Every case fails before the expensive work (training, unlearning, attacking), so the whole table
runs in seconds. Outputs that cannot be written are built so that they fail for root too (CI runs
as root, which ignores permission bits): a path under a regular file, a folder where a file goes.
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with an original, a retrain without class 3, a file, a folder and JSONs that are not reports."""
    from unlearnbench.core.checkpoint import save_checkpoint
    from unlearnbench.core.jobs import train_model
    from unlearnbench.core.train import TrainConfig

    folder = tmp_path_factory.mktemp("bad-inputs")
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, seed=0, device="cpu")
    orig = train_model("digits", "cnn", cfg)
    save_checkpoint(folder / "orig.pt", orig.model, orig.meta)
    ret = train_model("digits", "cnn", cfg, exclude="class:3")
    save_checkpoint(folder / "retrain.pt", ret.model, ret.meta)
    import torch

    payload = torch.load(folder / "orig.pt", weights_only=True)
    first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][first] = torch.full_like(payload["state_dict"][first], float("nan"))
    torch.save(payload, folder / "nan.pt")  # what a diverged run would have left
    torch.save({first: payload["state_dict"][first]}, folder / "nan-weights.pt")
    payload["meta"]["num_classes"] = "ten"
    payload["state_dict"][first].fill_(0.0)
    torch.save(payload, folder / "badmeta.pt")
    (folder / "afile").write_text("a plain file\n")
    (folder / "adir").mkdir()
    (folder / "empty.json").write_text("{}")
    (folder / "list.json").write_text(json.dumps([1, 2, 3]))
    (folder / "meta-number.json").write_text(json.dumps({"values": {"forget_acc": 1.0}, "meta": 1.5}))
    (folder / "cfg.yaml").write_text("epochs: 1\n")
    (folder / "req.txt").write_text("0\n5\n")
    (folder / "req16.txt").write_text("0\n5\n", encoding="utf-16")
    (folder / "utf16.yaml").write_text("epochs: 1\n", encoding="utf-16")
    (folder / "binary.yaml").write_bytes(bytes(range(256)))
    (folder / "dup.yaml").write_text("epochs: 1\nlr: 0.1\nepochs: 2\n")
    os.mkfifo(folder / "fifo")  # writing there would block, and replacing it would remove someone's pipe
    from unlearnbench.study import EXAMPLES_DIR

    (folder / "study.yaml").write_text((EXAMPLES_DIR / "digits.yaml").read_text())
    (folder / "locked.db").write_bytes(b"")
    sqlite3.connect(folder / "locked.db").execute("CREATE TABLE t (x)").connection.commit()
    return folder


def _snapshot(folder):
    return {p.relative_to(folder): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


NT = ["--no-track", "-q"]
TRAIN = ["train", "--dataset", "digits", "--model", "cnn", "--epochs", "1", *NT]
ATTACK = ["attack", "pgd", "-c", "orig.pt", "--split", "test", "--n", "8", *NT]
EVAL = ["evaluate", "-c", "orig.pt", *NT]
UNLEARN = ["unlearn", "finetune", "-c", "orig.pt", "-f", "class:3", *NT]
ULIRA = ["shadow", "train", "--dataset", "digits", "--model", "cnn", "--n", "2", "--ulira-method", "finetune",
         "--forget", "random:0.1", "-q"]

# (id, argv, a fragment of the one sentence)
CASES = [
    # numbers that mean nothing: NaN, infinity, negative, division by zero — one parser for all
    ("train-lr-nan-set", [*TRAIN, "--set", "lr=nan", "-o", "x.pt"], "finite"),
    ("train-lr-inf-set", [*TRAIN, "--set", "lr=inf", "-o", "x.pt"], "finite"),
    ("train-lr-nan-option", [*TRAIN, "--lr", "nan", "-o", "x.pt"], "--lr must be a finite number"),
    ("train-weight-decay-negative", [*TRAIN, "--set", "weight_decay=-1", "-o", "x.pt"], "weight_decay must be non-negative"),
    ("train-momentum-negative", [*TRAIN, "--set", "momentum=-0.5", "-o", "x.pt"], "momentum must be in [0, 1)"),
    ("train-epochs-zero", [*TRAIN[:-4], "--epochs", "0", *NT, "-o", "x.pt"], "epochs must be at least 1"),
    ("train-adv-eps-div0", [*TRAIN, "--adversarial", "pgd_at", "--adv-eps", "8/0", "-o", "x.pt"], "Bad eps '8/0'"),
    ("train-val-fraction-nan", [*TRAIN, "--val-fraction", "nan", "-o", "x.pt"], "finite"),
    ("attack-eps-div0", [*ATTACK, "--eps", "8/0"], "Bad eps '8/0'"),
    ("attack-eps-nan", [*ATTACK, "--eps", "nan"], "positive number"),
    ("attack-eps-negative", [*ATTACK, "--eps", "-0.1"], "positive number"),
    ("evaluate-eps-div0", [*EVAL, "--robustness", "pgd", "--eps", "8/0"], "8/0"),
    ("evaluate-rte-nan", [*EVAL, "--rte-seconds", "nan"], "finite"),
    ("unlearn-lr-nan", [*UNLEARN, "--set", "lr=nan", "-o", "u.pt"], "finite"),
    ("unlearn-weight-decay-negative", [*UNLEARN, "--set", "weight_decay=-1", "-o", "u.pt"], "weight_decay"),
    ("unlearn-adv-eps-div0", ["unlearn", "salun", "-c", "orig.pt", "-f", "class:3", "--adv-retain", "pgd",
                              "--set", "adv_eps=8/0", "-o", "u.pt", *NT], "adv_eps"),
    ("report-tolerance-nan", ["report", "--experiment", "x", "--tolerance", "nan"], "--tolerance must be a finite number"),
    ("report-tolerance-negative", ["report", "--experiment", "x", "--tolerance", "-1"], "zero or positive"),
    # outputs that cannot be written, checked before the work
    ("train-out-under-a-file", [*TRAIN, "-o", "afile/x.pt"], "afile is a file"),
    ("train-out-is-a-folder", [*TRAIN, "-o", "adir"], "is a folder"),
    ("train-out-is-the-config", [*TRAIN, "--config", "cfg.yaml", "-o", "cfg.yaml"], "also an input"),
    ("unlearn-out-is-the-checkpoint", [*UNLEARN, "-o", "orig.pt"], "also an input"),
    ("unlearn-out-under-a-file", [*UNLEARN, "-o", "afile/u.pt"], "afile is a file"),
    ("attack-save-adv-is-the-checkpoint", [*ATTACK, "--save-adv", "orig.pt"], "also an input"),
    ("attack-save-adv-under-a-file", [*ATTACK, "--save-adv", "afile/adv.pt"], "afile is a file"),
    ("evaluate-json-is-the-checkpoint", [*EVAL, "--json", "orig.pt"], "also an input"),
    ("evaluate-json-is-the-reference", [*EVAL, "-r", "retrain.pt", "--json", "retrain.pt"], "also an input"),
    ("evaluate-json-under-a-file", [*EVAL, "--json", "afile/r.json"], "afile is a file"),
    ("report-out-is-a-file", ["report", "--experiment", "x", "-o", "afile"], "is a file"),
    ("shadow-out-is-a-file", ["shadow", "train", "--out", "afile", "-q"], "is a file"),
    ("schedule-crontab-under-a-file", ["schedule", "--cron", "0 6 * * *", "--crontab-file", "afile/cron",
                                       "--experiment", "x"], "afile is a file"),
    ("import-out-is-the-weights", ["import", "--model", "torchvision:resnet18", "--weights", "orig.pt",
                                   "--dataset", "digits", "-o", "orig.pt", "-q"], "also an input"),
    # the data-loss cases of issue 20: an output that is an input the old check did not know
    ("unlearn-out-is-the-deletion-request", ["unlearn", "finetune", "-c", "orig.pt", "-f", "indices:req.txt",
                                             "-o", "req.txt", *NT], "also an input"),
    ("unlearn-out-is-the-deletion-request-dot", ["unlearn", "finetune", "-c", "orig.pt", "-f", "indices:./req.txt",
                                                 "-o", "req.txt", *NT], "also an input"),
    ("train-out-is-the-deletion-request", [*TRAIN, "--exclude", "indices:req.txt", "-o", "req.txt"], "also an input"),
    ("benchmark-json-is-the-study", ["benchmark", "study.yaml", "--json", "study.yaml", "-q"], "also an input"),
    ("benchmark-json-is-the-store", ["benchmark", "study.yaml", "--json", "./mlflow.db", "-q"], "also an input"),
    ("train-out-is-the-store", [*TRAIN[:-2], "-q", "-o", "mlflow.db"], "also an input"),
    ("evaluate-json-is-the-deletion-request", [*EVAL, "--forget", "indices:req.txt", "--json", "req.txt"],
     "also an input"),
    ("train-exclude-empty", [*TRAIN, "--exclude", "", "-o", "x.pt"], "Bad forget spec ''"),
    ("unlearn-forget-blank", ["unlearn", "finetune", "-c", "orig.pt", "-f", " ", "-o", "u.pt", *NT], "Bad forget spec"),
    ("attack-forget-empty", [*ATTACK, "--forget", ""], "Bad forget spec"),
    ("train-out-is-a-device", [*TRAIN, "-o", "/dev/null"], "is a device"),
    ("train-out-name-too-long", [*TRAIN, "-o", "n" * 300 + ".pt"], "longer than"),
    ("train-out-is-a-fifo", [*TRAIN, "-o", "fifo"], "is a FIFO"),
    ("attack-save-adv-is-a-fifo", [*ATTACK, "--save-adv", "fifo"], "is a FIFO"),
    # weights that are not a model: NaN/inf, not a checkpoint at all, metadata of the wrong type
    ("attack-nan-checkpoint", ["attack", "pgd", "-c", "nan.pt", "--split", "test", "--n", "8", *NT], "non-finite"),
    ("evaluate-nan-checkpoint", ["evaluate", "-c", "nan.pt", *NT], "non-finite"),
    ("evaluate-nan-reference", [*EVAL, "--forget", "class:3", "-r", "nan.pt"], "non-finite"),
    ("unlearn-nan-checkpoint", ["unlearn", "finetune", "-c", "nan.pt", "-f", "class:3", "-o", "u.pt", *NT], "non-finite"),
    ("import-nan-weights", ["import", "--model", "cnn", "--weights", "nan-weights.pt", "--dataset", "digits",
                            "-o", "i.pt", "-q"], "non-finite"),
    ("attack-checkpoint-name-too-long", ["attack", "pgd", "-c", "n" * 300, *NT], "cannot be read (File name too long)"),
    ("evaluate-reference-json-meta-number", [*EVAL, "--forget", "class:3", "-r", "meta-number.json"],
     "'meta' holds float, not a mapping"),
    ("attack-text-file-as-checkpoint", ["attack", "pgd", "-c", "afile", "--split", "test", *NT], "not an unlearnbench"),
    ("evaluate-bad-metadata", ["evaluate", "-c", "badmeta.pt", *NT], "bad num_classes"),
    ("train-device-meta", [*TRAIN, "--device", "meta", "-o", "x.pt"], "meta"),
    # text files that are not UTF-8, YAML 1.1 surprises, duplicate keys, seeds beyond 64 bits
    ("train-config-utf16", [*TRAIN, "--config", "utf16.yaml", "-o", "x.pt"], "UTF-16"),
    ("train-config-binary", [*TRAIN, "--config", "binary.yaml", "-o", "x.pt"], "not UTF-8"),
    ("train-config-duplicate-key", [*TRAIN, "--config", "dup.yaml", "-o", "x.pt"], "appears twice"),
    ("unlearn-indices-utf16", ["unlearn", "finetune", "-c", "orig.pt", "-f", "indices:req16.txt", "-o", "u.pt", *NT],
     "UTF-16"),
    ("benchmark-study-binary", ["benchmark", "binary.yaml", "-q"], "not UTF-8"),
    ("train-set-base60", [*TRAIN, "--set", "batch_size=1:10", "-o", "x.pt"], "expected int"),
    ("train-set-yes", [*TRAIN, "--set", "compile=yes", "-o", "x.pt"], "expected true or false"),
    ("train-set-contradicts-option", [*TRAIN, "--set", "epochs=3", "-o", "x.pt"], "contradicts --epochs 1"),
    ("train-seed-beyond-63-bits", [*TRAIN, "--seed", str(2**63), "-o", "x.pt"], "[0, 2^63)"),
    ("benchmark-seed-beyond-63-bits", ["benchmark", "study.yaml", "--set", f"seeds=0,{2**64}", "-q"], "[0, 2^63)"),
    ("evaluate-rte-negative", [*EVAL, "--rte-seconds", "-5"], "zero or more"),
    # references and configs that are not what they claim to be
    ("evaluate-reference-json-not-a-report", [*EVAL, "--forget", "class:3", "-r", "empty.json"], "not an unlearnbench report"),
    ("evaluate-reference-json-a-list", [*EVAL, "--forget", "class:3", "-r", "list.json"], "not an unlearnbench report"),
    ("shadow-method-set-unknown-key", [*ULIRA, "--out", "pool", "--method-set", "nosuchkey=1"], "nosuchkey"),
    # stores and hosts that cannot be used
    ("train-store-not-a-database", [*TRAIN[:-2], "-q", "--tracking-uri", "sqlite:///afile", "-o", "x.pt"],
     "not an SQLite database"),
    ("train-store-folder", [*TRAIN[:-2], "-q", "--tracking-uri", "sqlite:///adir", "-o", "x.pt"], "is a folder"),
    ("ui-host-unresolvable", ["ui", "--host", "no-such-host.invalid", "--port", "5999"], "can resolve"),
    # usage mistakes are one line too
    ("evaluate-unknown-option", [*EVAL, "--forget-spec", "class:3"], "No such option"),
    ("unlearn-unknown-method", ["unlearn", "finetuen", "-c", "orig.pt", "-f", "class:3", *NT], "finetune"),
    ("benchmark-unknown-study", ["benchmark", "no-such-study"], "shipped example"),
]


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_sentence_exit_2_and_leaves_nothing(work, monkeypatch, argv, fragment):
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    before = _snapshot(work)
    res = runner.invoke(app, argv, env={"COLUMNS": "300"})
    out = res.output.strip()
    assert res.exit_code == 2, out
    assert "Traceback" not in out, out
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert len(out.splitlines()) == 1, out
    assert fragment in out, out
    assert _snapshot(work) == before, "a bad input left a file behind or changed one"


def test_a_locked_store_is_refused_before_training(work, monkeypatch):
    monkeypatch.chdir(work)
    locker = sqlite3.connect(work / "locked.db", timeout=0)
    locker.execute("BEGIN EXCLUSIVE")  # what a second process writing to the store holds
    try:
        before = _snapshot(work)
        res = runner.invoke(app, [*TRAIN[:-2], "-q", "--tracking-uri", f"sqlite:///{work / 'locked.db'}", "-o", "x.pt"])
    finally:
        locker.rollback()
        locker.close()
    out = res.output.strip()
    assert res.exit_code == 2 and len(out.splitlines()) == 1 and "is locked by another process" in out, out
    assert _snapshot(work) == before

