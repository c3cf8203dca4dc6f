"""docs/architecture.md names real modules and functions: every dotted name in backticks that starts
with a package of unlearnbench (``unlearn.jobs.run_request``, ``api.check_unlearn``) resolves, so
the path of a request it describes cannot drift from the code unnoticed."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
TOP = {"core", "robust", "unlearn", "eval", "study", "reports", "api", "commands", "cli", "__main__", "_malloc"}


def _names() -> list[str]:
    found = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`", DOC.read_text())
    return sorted({n for n in found if n.split(".")[0] in TOP})


def _resolve(dotted: str) -> object:
    parts = ["unlearnbench", *dotted.split(".")]
    for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_doc_names_enough_to_be_checked():
    assert len(_names()) >= 30, _names()


@pytest.mark.parametrize("name", _names())
def test_every_named_function_exists(name):
    _resolve(name)


def test_a_wrong_name_would_be_caught():
    with pytest.raises(AttributeError):
        _resolve("unlearn.jobs.validate_request")  # the pre-issue-24 name
