"""Every ```python block of docs/api.md (and of the README's "Use your own model" section) runs,
top to bottom in one namespace, so the documented API cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def run_blocks(blocks: list[str], where: str) -> dict:
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{where} block {i + 1}", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # name the block that broke
            raise AssertionError(f"{where}, python block {i + 1} failed: {type(exc).__name__}: {exc}") from exc
    return namespace


@pytest.fixture
def docs_env(tmp_path, monkeypatch, mlflow_uri):
    monkeypatch.chdir(tmp_path)  # examples write files (resnet.pth) into the current folder
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)


def test_api_md_examples_run(docs_env):
    blocks = python_blocks((ROOT / "docs" / "api.md").read_text())
    assert len(blocks) >= 8  # guards the extraction itself
    ns = run_blocks(blocks, "docs/api.md")
    # The values the page prints are the ones it claims.
    assert len(ns["data"].forget) == 24 and len(ns["by_index"].forget) == 4
    assert ns["by_class"].forget_classes == (3,)
    assert ns["res"].n == 16 and ns["res"].robust_acc <= ns["res"].clean_acc
    assert bool(ns["torch"].equal(ns["loaded"](ns["images"]), ns["model"](ns["images"])))
    assert ns["after"]["forget_acc"] == ns["after"].to_dict()["values"]["forget_acc"]
    assert ns["unlearned"].meta["forget"] == "class:3" and ns["attacked"].result.n == 50


def test_readme_own_model_examples_run(docs_env):
    blocks = python_blocks(readme_section("Use your own model"))
    assert blocks, "the README's 'Use your own model' section has no python example"
    run_blocks(blocks, "README.md (Use your own model)")
