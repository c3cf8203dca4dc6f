"""Every `unlearnbench …` command line in README.md and docs/*.md names a real command, real
options and registered plug-ins, so the documentation cannot drift from the CLI unnoticed."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from unlearnbench.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _command_lines() -> list[tuple[str, str]]:
    """(where, command) for each `unlearnbench` line inside a fenced code block."""
    found = []
    for path in DOCS:
        in_block, pending = False, ""
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            if not in_block:
                continue
            text = pending + line.split(" #", 1)[0].strip()
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            if text.startswith("unlearnbench ") or text == "unlearnbench":
                found.append((f"{path.name}:{n}", text))
    return found


LINES = _command_lines()


def _options(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


def test_the_docs_have_command_lines():
    assert len(LINES) > 40  # guards the extraction itself


@pytest.mark.parametrize("where,line", LINES, ids=[w for w, _ in LINES])
def test_documented_command_line_is_valid(where, line):
    from unlearnbench.robust.attacks import ATTACKS
    from unlearnbench.unlearn.base import METHODS

    tokens = shlex.split(line.replace("[", " ").replace("]", " "))[1:]
    cmd = get_command(app)  # typer's own (vendored) click: groups are told by their .commands
    path = []
    while hasattr(cmd, "commands") and tokens and tokens[0] in cmd.commands:
        path.append(tokens[0])
        cmd = cmd.commands[tokens.pop(0)]
    if hasattr(cmd, "commands"):
        assert not tokens or tokens[0].startswith("-"), f"{where}: unknown command {tokens[0]!r}"
    known = _options(cmd) | {"--help"}
    for tok in tokens:
        if tok.startswith("--") or re.fullmatch(r"-[a-zA-Z]", tok):
            assert tok.split("=", 1)[0] in known, f"{where}: `{' '.join(['unlearnbench', *path])}` has no option {tok}"
    positional = [t for i, t in enumerate(tokens) if not t.startswith("-") and not (i and tokens[i - 1].startswith("-"))]
    if path == ["unlearn"] and positional:
        method = positional[0]
        assert method in METHODS, f"{where}: unknown method {method!r}"
        fields = {f.name for f in dataclasses.fields(METHODS.info(method)["config"])}
        for i, tok in enumerate(tokens):
            if tok == "--set":
                key = tokens[i + 1].split("=", 1)[0]
                assert key in fields, f"{where}: {method} has no config key {key!r}"
    if path == ["attack"]:
        assert positional and positional[0] in ATTACKS, f"{where}: unknown attack {positional[:1]}"
