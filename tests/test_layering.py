"""Imports point one way: core <- robust <- unlearn <- eval <- reports <- cli."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "unlearnbench"
ORDER = ["core", "robust", "unlearn", "eval", "reports", "cli"]


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "unlearnbench" or len(parts) < 2:
        return None
    top = parts[1]
    if top in ("cli", "commands"):
        return "cli"
    return top if top in ORDER else None


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


FILES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_one_way(path):
    rel = path.relative_to(PKG)
    own = "cli" if rel.parts[0] in ("cli.py", "commands") else rel.parts[0]
    if own not in ORDER:
        return  # package __init__
    for mod in imports(path):
        assert mod != "eval" and not mod.startswith("eval."), f"{rel} has a bare `import eval`"
        target = layer_of(mod)
        if target is None:
            continue
        assert ORDER.index(target) <= ORDER.index(own), f"{rel} ({own}) imports {mod} ({target})"


def test_layering_check_would_catch_a_violation(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from unlearnbench.eval.engine import Evaluator\n")
    assert layer_of(imports(bad)[0]) == "eval" and ORDER.index("eval") > ORDER.index("robust")
