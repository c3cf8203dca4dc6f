"""Weights files of any era and common wrapper: PyTorch's own upgrade of older BatchNorm state runs,
DataParallel/compile prefixes and the usual dict keys are unwrapped, ``.safetensors`` is read, and a
file that really differs is named (missing / unexpected / shape, with the likely cause) before any
data is read. Every checkpoint here is built by the test itself."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file
from typer.testing import CliRunner

from unlearnbench.api import load_model
from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint, load_weights, read_state_dict
from unlearnbench.core.data import load_dataset
from unlearnbench.core.errors import CheckpointError

runner = CliRunner()

FACTORY = '''
import torch.nn as nn


def bn_small(num_classes, in_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(32, num_classes),
    )
'''


def bn_small(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    ns: dict = {}
    exec(FACTORY, ns)  # noqa: S102  (the factory the CLI imports, to make the "foreign" weights)
    return ns["bn_small"](num_classes, in_channels)


def trained_bn_small(seed: int = 0) -> nn.Module:
    """Non-trivial weights and BatchNorm statistics (a few training-mode passes)."""
    torch.manual_seed(seed)
    model = bn_small()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 3, 16, 16) * 2)
    return model.eval()


def old_dataparallel_state(model: nn.Module) -> OrderedDict:
    """What PyTorch < 0.4.1 wrote from a DataParallel model: every key prefixed ``module.``, no
    BatchNorm ``num_batches_tracked``, and version 1 for every module in ``_metadata``."""
    wrapped = nn.DataParallel(model)  # on a CPU-only machine it only wraps: the keys gain "module."
    state = wrapped.state_dict()
    assert all(k.startswith("module.") for k in state)
    old = OrderedDict((k, v.clone()) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    old._metadata = OrderedDict((k, {"version": 1}) for k in state._metadata)  # type: ignore[attr-defined]
    assert len(old) < len(state)
    return old


def _same_outputs(a: nn.Module, b: nn.Module) -> None:
    x = torch.rand(8, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_pytorch_upgrades_old_batchnorm_state_behind_a_dataparallel_prefix(tmp_path):
    model = trained_bn_small()
    path = tmp_path / "old.pth"
    torch.save({"state_dict": old_dataparallel_state(model), "epoch": 200, "best_acc": 91.2}, path)
    state, origin = read_state_dict(path)
    assert origin["key"] == "state_dict" and origin["stripped"] == ["module."]
    # The module versions travel with the stripped names, so BatchNorm knows its state is old.
    assert state._metadata["1"] == {"version": 1}  # type: ignore[attr-defined]
    fresh = bn_small()
    load_weights(fresh, state, str(path))
    _same_outputs(fresh, model)
    assert fresh[1].num_batches_tracked.item() == 0  # filled in by BatchNorm's own upgrade
    assert torch.equal(fresh[1].running_var, model[1].running_var)


def test_new_state_without_num_batches_tracked_is_named_not_invented(tmp_path):
    """A version-2 BatchNorm must carry num_batches_tracked: then its absence is a real difference."""
    state = trained_bn_small().state_dict()
    del state["1.num_batches_tracked"]
    with pytest.raises(CheckpointError, match=r"1 of its \d+ tensors are missing.*1.num_batches_tracked.*buffers"):
        load_weights(bn_small(), state)


def test_safetensors_and_model_state_dict_wrappers(tmp_path):
    model = trained_bn_small(1)
    st = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    nosuffix = tmp_path / "weights.bin"  # recognised by content too
    nosuffix.write_bytes(st.read_bytes())
    ckpt = tmp_path / "trainer.ckpt"
    torch.save({"model_state_dict": {f"_orig_mod.{k}": v for k, v in model.state_dict().items()},
                "optimizer_state_dict": {"lr": 0.1}}, ckpt)
    for path, fmt in ((st, "safetensors"), (nosuffix, "safetensors"), (ckpt, "torch")):
        state, origin = read_state_dict(path)
        assert origin["format"] == fmt
        fresh = bn_small()
        load_weights(fresh, state, str(path))
        _same_outputs(fresh, model)
    spec_model = load_model("tests.core.test_checkpoint_formats:bn_small", st, num_classes=10, image_size=16)
    _same_outputs(spec_model.model, model)
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_state_dict(tmp_path / "broken.safetensors")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda s: {f"backbone.{k}": v for k, v in s.items()}, "every file key carries an extra prefix 'backbone.'"),
        (lambda s: {k: (v[:7] if k.startswith("5.") else v) for k, v in s.items()},
         "the classifier 5.weight has 7 outputs in the file and 10 in the model: the weights were trained for "
         "another number of classes"),
        (lambda s: {k: (v[:, :1] if k == "0.weight" else v) for k, v in s.items()},
         "takes 1 channel(s) in the file and 3 in the model"),
        (lambda s: {k: (v[:, :, :1, :1] if k == "0.weight" else v) for k, v in s.items()},
         "another kernel size"),
        (lambda s: {**s, "ema.5.weight": s["5.weight"]}, "0 of its 9 tensors are missing from the file and 1 in the "
         "file are unexpected (first unexpected: ema.5.weight); the file holds more than the model"),
        (lambda s: {k.replace("5.", "fc."): v for k, v in s.items()}, "first missing: 5.weight, first unexpected: "
         "fc.weight): the weights belong to another architecture"),
    ],
)
def test_real_differences_are_named_with_the_likely_cause(change, needle):
    state = change(trained_bn_small().state_dict())
    with pytest.raises(CheckpointError) as err:
        load_weights(bn_small(), state, "w.pth")
    assert needle in str(err.value), str(err.value)
    assert str(err.value).startswith("Checkpoint w.pth does not fit this model: ")


@pytest.fixture
def factory(tmp_path, monkeypatch):
    name = f"bn_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    return name


def test_weights_are_checked_before_any_data_is_read(tmp_path, factory):
    """cifar10 is absent here: a file that does not fit must fail on the weights, not on the data."""
    torch.save(bn_small(7).state_dict(), tmp_path / "seven.pth")
    result = runner.invoke(app, ["import", "--model", f"{factory}:bn_small", "--weights", "seven.pth",
                                 "--dataset", "cifar10", "--data-root", str(tmp_path), "-o", "out.pt"])
    assert result.exit_code == 2 and "another number of classes" in result.output, result.output
    assert "not found" not in result.output and not (tmp_path / "out.pt").exists()


def test_an_old_dataparallel_checkpoint_goes_through_import_evaluate_and_attack(tmp_path, factory):
    model = trained_bn_small(2)
    torch.save({"net": old_dataparallel_state(model), "acc": 90.0, "epoch": 199}, tmp_path / "old.t7")
    out = tmp_path / "mine.pt"
    result = runner.invoke(app, ["import", "--model", f"{factory}:bn_small", "--weights", "old.t7",
                                 "--dataset", "synthetic", "-o", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(out).meta
    assert meta["source"]["key"] == "net" and meta["source"]["stripped"] == ["module."]
    raw = load_dataset("synthetic")
    x, y = raw.test.x.float() / 255, raw.test.y
    with torch.no_grad():
        expected = 100.0 * (model(x).argmax(1) == y).float().mean().item()
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["evaluate", "-c", str(out), "--forget", "class:3", "--metrics", "test_acc",
                                 "--json", str(report), "--no-track", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["values"]["test_acc"] == pytest.approx(expected)
    result = runner.invoke(app, ["attack", "pgd", "-c", str(out), "--n", "16", "--no-track", "--device", "cpu"])
    assert result.exit_code == 0 and "n=16" in result.output, result.output
