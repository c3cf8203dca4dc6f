"""pip users are first-class: a command that needs a missing package is refused before any work,
with the exact install line; `doctor` checks the environment in one screen."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core import cpus, requirements
from unlearnbench.core.errors import UserError

runner = CliRunner()
LINE = "pip install --no-deps torchattacks==3.5.1"


@pytest.fixture
def no_torchattacks(monkeypatch):
    real = requirements.available
    monkeypatch.setattr(requirements, "available", lambda module: module != "torchattacks" and real(module))


def test_require_names_the_exact_install_line(no_torchattacks):
    with pytest.raises(requirements.MissingDependency, match="The pgd attack needs torchattacks, which is not "
                       f"installed; install it with: {LINE}"):
        requirements.require("torchattacks", "The pgd attack")
    assert issubclass(requirements.MissingDependency, UserError)
    assert requirements.available("json") and not requirements.available("no_such_module_xyz")
    assert requirements.install_line("somepkg") == "pip install somepkg"


@pytest.mark.parametrize(
    "args",
    [
        ["attack", "pgd", "-c", "ckpt.pt", "--no-track"],
        ["evaluate", "-c", "ckpt.pt", "--robustness", "pgd", "--no-track"],
        ["demo", "--tracking-uri", "sqlite:///demo.db"],  # the demo evaluates PGD: refused before training
    ],
)
def test_commands_needing_torchattacks_are_refused_before_any_work(args, no_torchattacks, tmp_path, monkeypatch):
    from unlearnbench.core.checkpoint import save_checkpoint
    from unlearnbench.core.models import create_model

    monkeypatch.chdir(tmp_path)
    save_checkpoint("ckpt.pt", create_model("cnn", 10, 1, 8), {"model": "cnn", "dataset": "digits", "num_classes": 10,
                                                             "in_channels": 1, "image_size": 8, "split_seed": 0})
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert LINE in result.output and "Traceback" not in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # nothing trained, logged or written


def test_doctor_is_one_screen_and_names_what_is_missing(no_torchattacks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["doctor", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert len(lines) <= 24
    row = next(ln for ln in lines if "torchattacks" in ln.split()[1:2])
    assert row.split()[0] == "MISSING" and LINE in row
    assert any(ln.split()[:2] == ["ok", "torch"] for ln in lines)
    assert any(ln.split()[1:2] == ["threads"] and f"{cpus.usable_cpus()} usable" in ln for ln in lines)
    assert any("MLflow store" in ln and "usable" in ln for ln in lines)
    assert lines[-1].startswith("Not ready: torchattacks")
    assert "pip install 'unlearnbench[ray]'" in result.stdout or "ray " in result.stdout  # brackets survive
    assert not (tmp_path / "m.db").exists()  # checking the store writes nothing


def test_doctor_ready_and_an_unreachable_store(tmp_path):
    result = runner.invoke(app, ["doctor", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 0 and result.stdout.splitlines()[-1] == "Ready.", result.output
    result = runner.invoke(app, ["doctor", "--tracking-uri", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "unreachable" in result.stdout, result.output
