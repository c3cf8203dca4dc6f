"""One `unlearn` request parses its forget spec once and loads and splits its data once.

The spec is parsed into a ``ForgetSpec`` at the command line and that object is passed down (the
file boundary, the request check, the split, the epoch-curve recorder); the data is loaded in
``run_request`` and the same ``UnlearnData`` feeds the method, the per-epoch forget accuracy and
the evaluation. Counted here by wrapping the parser (every parse builds one ``ForgetSpec``) and
the dataset loader's last step (every load of a dataset applies its selection once).
Before: the spec was parsed seven times (command, boundary, request checks, epoch recorder, evaluation)
and the data loaded twice (the run and the epoch recorder).
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import save_checkpoint
from unlearnbench.core.data import selection, splits
from unlearnbench.core.jobs import train_model
from unlearnbench.core.train import TrainConfig
from unlearnbench.unlearn.presets import PRESETS


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("once")
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05, device="cpu")
    orig = train_model("digits", "cnn", cfg)
    ref = train_model("digits", "cnn", cfg, exclude="class:3")
    save_checkpoint(root / "o.pt", orig.model, orig.meta)
    save_checkpoint(root / "r.pt", ref.model, ref.meta)
    return root


@pytest.fixture
def counts(monkeypatch):
    PRESETS.names()  # the shipped presets parse their own specs when they load: not this request's
    seen = {"parses": [], "loads": []}
    init = splits.ForgetSpec.__init__

    def counting_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        seen["parses"].append(self.text)

    apply = selection.apply_selection

    def counting_apply(raw, source):
        seen["loads"].append(raw.info.name)
        return apply(raw, source)

    monkeypatch.setattr(splits.ForgetSpec, "__init__", counting_init)
    monkeypatch.setattr(selection, "apply_selection", counting_apply)
    return seen


def test_the_counters_count(counts):
    """The wrappers see a parse and a load (else the assertions below could pass vacuously)."""
    splits.prepare("digits", "class:3")
    assert counts == {"parses": ["class:3"], "loads": ["digits"]}


@pytest.mark.parametrize("extra", [
    # evaluated against the reference (checked against the run's forget set), logged with per-epoch curves
    ["-r", "r.pt"],
    ["--no-eval", "--no-track"],
])
def test_one_parse_and_one_load_per_unlearn_request(checkpoints, counts, mlflow_uri, extra):
    extra = [str(checkpoints / e) if e.endswith(".pt") else e for e in extra]
    args = ["unlearn", "finetune", "-c", str(checkpoints / "o.pt"), "-f", "class:3",
            "-o", str(checkpoints / f"u{len(extra)}.pt"), "-q", "--tracking-uri", mlflow_uri,
            "--experiment", "request-once", "--set", "epochs=2", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert counts["parses"] == ["class:3"]
    assert counts["loads"] == ["digits"]


def test_an_indices_request_reads_its_file_as_an_input_once_parsed(checkpoints, counts, tmp_path, mlflow_uri):
    """The parsed spec still declares its deletion-request file to the boundary: writing the
    output over it is refused (exit 2), with the spec parsed once and no data loaded."""
    request = tmp_path / "delete.txt"
    request.write_text("1\n2\n3\n")
    args = ["unlearn", "finetune", "-c", str(checkpoints / "o.pt"), "-f", f"indices:{request}", "-o", str(request),
            "--no-track", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert request.read_text() == "1\n2\n3\n"
    assert counts["parses"] == [f"indices:{request}"]
    assert counts["loads"] == []
