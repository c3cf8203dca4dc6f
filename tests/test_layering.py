"""The layering (core <- robust <- unlearn <- eval <- study <- reports <- api <- commands <- cli)
is written as import-linter contracts in pyproject.toml and checked by `make lint`. These tests
check that the contracts hold on this tree, that they would catch a violation (an upward import,
a lazy one included, and an import cycle inside a package), and the one rule import-linter cannot
express: no bare ``import eval`` (it would shadow the builtin)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "unlearnbench"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under ``root`` with that tree's pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory):
    """A copy of the package and pyproject.toml to break on purpose."""
    def make(name: str) -> Path:
        root = tmp_path_factory.mktemp(name)
        shutil.copytree(PKG, root / "unlearnbench", ignore=shutil.ignore_patterns("__pycache__", "*.yaml", "*.j2"))
        shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
        return root
    return make


def test_the_contracts_hold_on_this_tree():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(("path", "line", "contract"), [
    # core importing eval (inside a function: lazy imports count too)
    ("core/registry.py", "def _upward():\n    from unlearnbench.eval.engine import Evaluator\n", "Layers"),
    # eval importing the study layer above it
    ("eval/report.py", "from unlearnbench.study import config as _c\n", "Layers"),
    # robust importing unlearn
    ("robust/threat.py", "import unlearnbench.unlearn.masks\n", "Robustness never imports"),
    # library code importing the command line
    ("eval/tracking.py", "def _cli():\n    import unlearnbench.commands._common\n", "never imports the command line"),
    # the cycle this layout broke: the types importing the splits built on them
    ("core/data/types.py", "def _up():\n    from unlearnbench.core.data import splits\n", "No import cycles"),
    # a command calling the library past the API (doctor is clean: it calls api.doctor_checks)
    ("commands/doctor.py", "def _past():\n    from unlearnbench.eval.tracking import resolve_uri\n",
     "only through the API"),
])
def test_a_deliberate_violation_breaks_a_contract(tree_copy, path, line, contract):
    root = tree_copy(path.replace("/", "_").replace(".", "_"))
    target = root / "unlearnbench" / path
    target.write_text(target.read_text() + "\n\n" + line)
    out = lint_imports(root)
    assert out.returncode != 0, out.stdout
    broken = out.stdout.split("Broken contracts", 1)[1]
    assert contract in broken, out.stdout


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_bare_import_eval(path):
    for mod in _imports(path):
        assert mod != "eval" and not mod.startswith("eval."), f"{path.relative_to(PKG)} has a bare `import eval`"


def test_every_command_lives_where_the_api_contract_checks_it():
    """The contract "Commands reach the library only through the API" covers ``unlearnbench.commands``;
    every command registered on the Typer app (groups included) is defined there, so none escapes it."""
    from unlearnbench.cli import app

    def callbacks(typer_app):
        for cmd in typer_app.registered_commands:
            yield cmd.name or cmd.callback.__name__, cmd.callback
        for group in typer_app.registered_groups:
            yield from callbacks(group.typer_instance)

    found = dict(callbacks(app))
    assert {"ls", "doctor", "ui", "report", "train", "unlearn", "evaluate", "attack"} <= set(found)
    outside = {name: cb.__module__ for name, cb in found.items() if not cb.__module__.startswith("unlearnbench.commands.")}
    assert not outside, outside
