"""The CLI's last line of defence: an exception that escapes a command is one line and exit 70
(with the traceback in a file); a failing standard output is handled like a careful Unix tool does."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app

runner = CliRunner()
CLI = [sys.executable, "-m", "unlearnbench"]
ENV = {**os.environ, "UNLEARNBENCH_MALLOC": "off"}


@pytest.mark.internal_error
def test_an_escaping_exception_is_one_line_exit_70_and_a_traceback_file(monkeypatch, tmp_path):
    import unlearnbench.commands._common as common

    def broken(data):
        raise ZeroDivisionError("a planted bug\nsecond line")

    monkeypatch.setattr(common, "print_json", broken)  # `ls --json` imports it at call time
    monkeypatch.setenv("UNLEARNBENCH_CRASH_DIR", str(tmp_path))
    res = runner.invoke(app, ["ls", "methods", "--json"])
    assert res.exit_code == 70
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    m = re.fullmatch(r"internal error \(a bug in unlearnbench\): ZeroDivisionError: a planted bug — full traceback "
                     r"in (\S+)", lines[0])
    assert m, lines[0]
    path = m.group(1)
    assert os.path.dirname(path) == str(tmp_path)
    text = open(path, encoding="utf-8").read()
    assert "Traceback (most recent call last)" in text and "in broken" in text
    assert text.startswith("argv: ")  # to replay it


def test_user_errors_and_usage_errors_keep_exit_2(tmp_path):
    assert runner.invoke(app, ["ls", "nosuchlist"]).exit_code == 2
    assert runner.invoke(app, ["ls", "--no-such-option"]).exit_code == 2


def _run(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env={**ENV, "PYTHONPATH": os.getcwd()},
                          timeout=120)


def test_full_stdout_is_one_sentence_exit_1():
    res = _run(f"{' '.join(CLI)} ls methods > /dev/full; echo rc=$? >&2")
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == "rc=1", res.stderr
    assert lines[:-1] == ["Error: cannot write to standard output (No space left on device); the output is incomplete."]


def test_closed_stdout_is_one_sentence_exit_1():
    res = _run(f"{' '.join(CLI)} ls methods >&-; echo rc=$? >&2")
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == "rc=1" and len(lines) == 2 and "standard output is closed" in lines[0], res.stderr


def test_a_reader_that_leaves_early_ends_the_run_quietly_with_141():
    # The sleep lets `true` exit first, so the listing meets a closed pipe (EPIPE), as `| head -0` would.
    res = _run(f"{{ sleep 1; {' '.join(CLI)} ls methods --json; echo rc=$? >&2; }} | true")
    assert res.stderr.strip() == "rc=141", res.stderr
