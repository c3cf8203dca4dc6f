"""The generation CLI: train a DDPM, sample a PNG grid (deterministic), one-sentence refusals
(exit 2, nothing written) for the wrong task or bad options; ls shows the tasks; the docs' Python
example runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from unlearnbench.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def _refused(result, pattern):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and re.search(pattern, result.output), result.output


@pytest.fixture(scope="module")
def ddpm_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "ddpm.pt"
    _ok(runner.invoke(app, ["train", "--model", "ddpm_tiny", "--set", "steps=3", "--batch-size", "32", "--no-track",
                            "-q", "--out", str(out)]))
    return out


@pytest.fixture(scope="module")
def cnn_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls") / "cnn.pt"
    _ok(runner.invoke(app, ["train", "--model", "cnn", "--epochs", "1", "--no-track", "-q", "--out", str(out)]))
    return out


def test_sample_writes_a_deterministic_grid(ddpm_ckpt, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    args = ["sample", str(ddpm_ckpt), "--classes", "0,3", "--n", "3", "--steps", "2", "--eta", "1", "--scale", "2", "-q"]
    _ok(runner.invoke(app, [*args, "--out", str(a)]))
    _ok(runner.invoke(app, [*args, "--out", str(b)]))
    assert a.read_bytes() == b.read_bytes()
    img = Image.open(a)
    assert img.size == (2 * (3 * 9 + 1), 2 * (2 * 9 + 1))  # 3 columns, 2 rows of 8x8 with 1-pixel gaps


def test_wrong_task_and_bad_options_are_refused(ddpm_ckpt, cnn_ckpt, tmp_path):
    out = tmp_path / "x.png"
    _refused(runner.invoke(app, ["sample", str(cnn_ckpt), "--out", str(out)]), "holds a classifier.*needs a generation")
    _refused(runner.invoke(app, ["attack", "pgd", "--checkpoint", str(ddpm_ckpt), "--no-track"]),
             "holds a generation model.*attack needs a classifier")
    _refused(runner.invoke(app, ["sample", str(ddpm_ckpt), "--classes", "12", "--out", str(out)]), "0..9")
    _refused(runner.invoke(app, ["sample", str(ddpm_ckpt), "--out", str(tmp_path / "x.txt")]), "must end in .png")
    _refused(runner.invoke(app, ["train", "--model", "ddpm_tiny", "--epochs", "3", "--no-track",
                                 "--out", str(tmp_path / "g.pt")]), "--epochs do not apply")
    assert not out.exists() and not (tmp_path / "g.pt").exists()


def test_ls_lists_generation_models_methods_and_metrics_with_their_task():
    out = _ok(runner.invoke(app, ["ls", "--json"])).stdout
    import json

    listing = json.loads(out)
    tasks = {k: {r["name"]: r.get("task") for r in rows} for k, rows in listing.items() if k in ("models", "methods", "metrics")}
    assert tasks["models"]["ddpm_tiny"] == "generation" and tasks["models"]["cnn"] == "classification"
    assert tasks["methods"]["ddpm_salun"] == "generation" and tasks["methods"]["salun"] == "classification"
    assert tasks["metrics"]["gen_fid"] == "generation" and tasks["metrics"]["ua"] == "classification"
    assert "create" not in str(listing["models"])  # the factory is plumbing, not listed


def test_the_docs_python_example_runs():
    text = (ROOT / "docs" / "generation.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/generation.md", "exec"), {})


def test_train_and_sample_honour_threads(ddpm_ckpt, tmp_path, monkeypatch):
    """`train --model ddpm_tiny --threads N` and `sample --threads N` run the network on N intra-op
    threads (each call's count differs from the one before, so a cap or an ignored option fails)."""
    import torch

    from unlearnbench.core.diffusion import ConditionalDDPM

    seen: list[int] = []
    forward = ConditionalDDPM.forward

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ConditionalDDPM, "forward", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _ok(runner.invoke(app, ["train", "--model", "ddpm_tiny", "--set", "steps=2", "--batch-size", "16",
                                "--threads", "2", "--no-track", "-q", "--out", str(tmp_path / "d.pt")]))
        assert len(seen) == 2 and set(seen) == {2}
        seen.clear()
        _ok(runner.invoke(app, ["sample", str(ddpm_ckpt), "--classes", "0", "--n", "2", "--steps", "2", "--threads",
                                "1", "-q", "--out", str(tmp_path / "s.png")]))
        assert seen and set(seen) == {1}
    finally:
        torch.set_num_threads(before)
