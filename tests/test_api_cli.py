"""Foreign models and checkpoints on the CLI: `unlearnbench import` turns someone else's weights
file into a checkpoint that evaluate, attack and unlearn take; mistakes are one sentence, exit 2."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
import torch
import torch.nn as nn
import torchvision
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint
from unlearnbench.core.data import load_dataset
from unlearnbench.core.errors import ConfigError

runner = CliRunner()

FACTORY = '''
import torch.nn as nn


def small(num_classes, in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, num_classes),
    )


def broken(num_classes):
    raise ValueError("this factory needs a GPU")
'''


def _ok(result):
    assert result.exit_code == 0, result.output


def _one_sentence_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and needle in result.output, result.output


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """A user's model module in the current folder (a fresh name: imported modules are cached)."""
    name = f"my_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    return name


def test_a_torchvision_resnet18_state_dict_goes_through_import_evaluate_and_autoattack(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=10).eval()
    weights = tmp_path / "resnet.pth"
    # Saved the way DataParallel training scripts do: under "model", every key prefixed "module.".
    torch.save({"model": {f"module.{k}": v for k, v in resnet.state_dict().items()}, "epoch": 7}, weights)
    out = tmp_path / "mine.pt"
    result = runner.invoke(app, ["import", "--model", "torchvision:resnet18", "--weights", str(weights),
                                 "--dataset", "synthetic", "--normalize", "dataset", "-o", str(out), "--device", "cpu"])
    _ok(result)
    meta = load_checkpoint(out).meta
    raw = load_dataset("synthetic")
    assert meta["model"] == meta["factory"] == "torchvision:resnet18" and meta["kind"] == "imported"
    assert meta["source"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["source"]["key"] == "model" and meta["source"]["stripped"] == ["module."]
    assert tuple(meta["normalize"]["mean"]) == raw.info.mean and meta["normalize"]["source"] == "dataset"

    # evaluate: the test accuracy is the hand-normalised torchvision model's.
    report_path = tmp_path / "report.json"
    result = runner.invoke(app, ["evaluate", "-c", str(out), "--forget", "class:3", "--metrics", "test_acc,forget_acc",
                                 "--json", str(report_path), "--no-track", "--device", "cpu", "--quiet"])
    _ok(result)
    mean = torch.tensor(raw.info.mean).view(1, 3, 1, 1)
    std = torch.tensor(raw.info.std).view(1, 3, 1, 1)
    x, y = raw.test.x.float() / 255, raw.test.y
    with torch.no_grad():
        expected = 100.0 * (resnet((x - mean) / std).argmax(1) == y).float().mean().item()
    assert json.loads(report_path.read_text())["values"]["test_acc"] == pytest.approx(expected)

    result = runner.invoke(app, ["attack", "autoattack", "-c", str(out), "--n", "4", "--no-track", "--device", "cpu"])
    _ok(result)
    assert "n=4" in result.output and "robust" in result.output


def test_a_factory_module_goes_through_import_train_and_unlearn(tmp_path, factory):
    torch.manual_seed(0)
    ns: dict = {}
    exec(FACTORY, ns)  # noqa: S102  (the same factory, to make the "foreign" weights)
    weights = tmp_path / "small.pth"
    torch.save(ns["small"](10, 1).state_dict(), weights)
    spec = f"{factory}:small"
    _ok(runner.invoke(app, ["import", "--model", spec, "--weights", str(weights), "--dataset", "digits",
                            "-o", "orig.pt", "--device", "cpu"]))
    # The retrained reference of the same architecture, trained here.
    _ok(runner.invoke(app, ["train", "--model", spec, "--dataset", "digits", "--exclude", "class:3", "--epochs", "1",
                            "-o", "retrain.pt", "--no-track", "--device", "cpu", "--quiet"]))
    assert load_checkpoint("retrain.pt").meta["model"] == spec
    fast = {"salun": ["--set", "epochs=1"], "scar": ["--set", "epochs=1", "--set", "ood_size=128"]}
    for method, sets in fast.items():
        result = runner.invoke(app, ["unlearn", method, "-c", "orig.pt", "--forget", "class:3", "-o", f"{method}.pt",
                                     "-r", "retrain.pt", "--no-track", "--device", "cpu", "--quiet", *sets])
        _ok(result)
        ckpt = load_checkpoint(f"{method}.pt")
        assert ckpt.meta["model"] == spec and ckpt.meta["method"] == method
        before, after = load_checkpoint("orig.pt").build(), ckpt.build()
        assert not torch.equal(before.model[-1].weight, after.model[-1].weight)


def test_foreign_mistakes_are_one_sentence_and_write_nothing(tmp_path, factory):
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), tmp_path / "seven.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    torch.save(nn.Linear(2, 2), tmp_path / "pickled.pth")  # a whole module, not a state dict
    cases = [
        (["--model", "torchvision:resnet18", "--weights", "notes.pth", "--dataset", "synthetic"],
         "is not a PyTorch weights file"),
        (["--model", "torchvision:resnet18", "--weights", "seven.pth", "--dataset", "synthetic"],
         "fc.weight is 7x512 in the file, 10x512 in the model"),
        (["--model", f"{factory}:broken", "--weights", "seven.pth", "--dataset", "digits"],
         "failed: ValueError: this factory needs a GPU"),
        (["--model", "torchvision:resnet18", "--weights", "pickled.pth", "--dataset", "synthetic"],
         "save model.state_dict() instead"),
        (["--model", "torchvision:resnet18", "--weights", "seven.pth", "--dataset", "digits"],
         "cannot take 1x8x8 images"),
        (["--model", "torchvision:resnet19", "--weights", "seven.pth", "--dataset", "digits"], "Did you mean 'resnet18'"),
        (["--model", f"{factory}:nope", "--weights", "seven.pth", "--dataset", "digits"], "has no 'nope'"),
        (["--model", "no_such_module:f", "--weights", "seven.pth", "--dataset", "digits"], "neither on PYTHONPATH"),
        (["--model", "os:abort", "--weights", "seven.pth", "--dataset", "digits"], "is not a model factory"),
        (["--model", "torchvision:resnet18", "--weights", "seven.pth", "--dataset", "synthetic", "--normalize", "0.5"],
         "Bad --normalize"),
    ]
    for args, needle in cases:
        _one_sentence_error(runner.invoke(app, ["import", *args, "-o", "out.pt", "--device", "cpu"]), needle)
    assert not (tmp_path / "out.pt").exists()
    _one_sentence_error(runner.invoke(app, ["evaluate", "-c", "seven.pth", "--no-track"]), "unlearnbench import")


def test_normalize_forms():
    from unlearnbench.core.importer import parse_normalize

    info = load_dataset("synthetic").info
    assert parse_normalize(None, info) == ((0.0,) * 3, (1.0,) * 3, "none")
    assert parse_normalize("0.5/0.25", info) == ((0.5,) * 3, (0.25,) * 3, "given")
    assert parse_normalize("0.1,0.2,0.3/1,2,3", info) == ((0.1, 0.2, 0.3), (1.0, 2.0, 3.0), "given")
    assert parse_normalize("0.5,0.25", info) == ((0.5,) * 3, (0.25,) * 3, "given")
    assert parse_normalize("0.1,0.2,0.3,1,2,3", info) == ((0.1, 0.2, 0.3), (1.0, 2.0, 3.0), "given")
    assert parse_normalize("imagenet", info)[0] == (0.485, 0.456, 0.406)
    for bad in ("0.5", "a/b", "0.1,0.2,0.3", "0.5/0", "0.1,0.2/0.3,0.4"):
        with pytest.raises(ConfigError):
            parse_normalize(bad, info)
    assert parse_normalize("dataset", info)[:2] == (info.mean, info.std)


def test_timm_models_are_optional(monkeypatch):
    """timm is not a dependency: without it one sentence says how to get it; with it, its
    create_model builds the model (a stand-in module records the call here)."""
    import sys
    import types

    from unlearnbench.core.errors import ModelError
    from unlearnbench.core.models import create_model

    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ModelError, match="pip install timm"):
        create_model("timm:resnet18", 10, 3, 8)
    calls = []

    def fake_create_model(name, pretrained, num_classes, in_chans):
        calls.append((name, pretrained, num_classes, in_chans))
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * 64, num_classes))

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=fake_create_model))
    model = create_model("timm:tiny_vit", 5, 3, 8)
    assert calls == [("tiny_vit", False, 5, 3)] and model(torch.rand(2, 3, 8, 8)).shape == (2, 5)


def test_a_study_unlearns_an_imported_original(tmp_path, factory, mlflow_uri):
    import yaml
    from mlflow import MlflowClient

    ns: dict = {}
    exec(FACTORY, ns)  # noqa: S102
    torch.manual_seed(1)
    torch.save(ns["small"](10, 1).state_dict(), tmp_path / "small.pth")
    spec = f"{factory}:small"
    _ok(runner.invoke(app, ["import", "--model", spec, "--weights", "small.pth", "--dataset", "digits",
                            "-o", "orig.pt", "--device", "cpu"]))
    digest = hashlib.sha256((tmp_path / "orig.pt").read_bytes()).hexdigest()
    study = {"name": "imported", "dataset": "digits", "model": spec, "original": "orig.pt", "forget": ["class:3"],
             "seeds": [0], "train": {"epochs": 1}, "methods": [{"name": "finetune", "config": {"epochs": 1}}],
             "device": "cpu", "evaluation": {"metrics": ["test_acc", "forget_acc"]}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    experiment = f"imported-{uuid.uuid4().hex[:8]}"
    res = runner.invoke(app, ["benchmark", "study.yaml", "--experiment", experiment, "--tracking-uri", mlflow_uri,
                              "--work-dir", str(tmp_path / "work"), "-q"])
    _ok(res)
    assert hashlib.sha256((tmp_path / "orig.pt").read_bytes()).hexdigest() == digest  # used, never overwritten
    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    original = next(r for r in runs if r.data.tags.get("kind") == "original")
    assert original.data.metrics["test_acc"] == pytest.approx(load_checkpoint("orig.pt").meta["metrics"]["test_acc"])
    # An original for another model is refused before anything trains.
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**study, "model": "cnn"}))
    _one_sentence_error(runner.invoke(app, ["benchmark", "bad.yaml", "--tracking-uri", mlflow_uri,
                                            "--work-dir", str(tmp_path / "work")]), "has model")
