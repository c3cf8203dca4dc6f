"""A CLI that answers at once: help, version, listings, completion and usage errors never import
torch (benchmarks/cli_startup.py measures the time and memory; here only what is imported), the
``ls`` snapshot equals the live registries, help is whole at 80 columns, completion installs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unlearnbench._malloc import print_only
from unlearnbench.api import _listing
from unlearnbench.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

PROBE = """
import json, sys
from unlearnbench.cli import app
cases = json.loads(sys.argv[1])
codes = []
for args in cases:
    try:
        app(args, prog_name="unlearnbench")
    except SystemExit as exc:
        codes.append(exc.code)
heavy = sorted(m for m in ("torch", "torchvision", "numpy", "mlflow", "sklearn", "pandas") if m in sys.modules)
sys.stderr.write("RESULT " + json.dumps({"codes": codes, "heavy": heavy}) + "\\n")
"""


def _env(cache: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    return env


def test_help_version_ls_completion_and_usage_errors_do_not_import_torch(tmp_path):
    # The first `ls` of this code lists live and caches the listing; every later one reads it.
    subprocess.run([sys.executable, "-m", "unlearnbench", "ls"], env=_env(tmp_path), capture_output=True,
                   check=True, timeout=300)
    assert (tmp_path / "unlearnbench" / "listing.json").is_file()
    cases = [["--help"], ["--version"], ["ls"], ["ls", "methods"], ["ls", "all", "--json"], ["train", "--help"],
             ["evaluate", "--help"], ["train", "--bogus"], ["unlearn"], ["ls", "nothing"]]
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases)], env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["heavy"] == [], result
    assert result["codes"] == [0, 0, 0, 0, 0, 0, 0, 2, 2, 2], result


def test_ls_shows_the_live_registries_from_a_snapshot_of_this_code_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_listing, "SNAPSHOT", tmp_path / "_listing.json")
    live = json.loads(json.dumps(_listing.live(list(_listing.LISTABLE))))
    assert _listing.listing(list(_listing.LISTABLE)) == live  # live, then cached
    cached = json.loads(_listing.cache_file().read_text())
    assert cached["fingerprint"] == _listing.fingerprint() and cached["listing"] == live
    # A snapshot of other code (another fingerprint) is never shown.
    _listing._write(_listing.SNAPSHOT, {"methods": [{"name": "stale"}]}, "0" * 64)
    _listing._write(_listing.cache_file(), {"methods": [{"name": "stale"}]}, "1" * 64)
    assert _listing.listing(["methods"]) == {"methods": live["methods"]}
    # The wheel's snapshot of this code is read without listing live.
    _listing.write_snapshot()
    monkeypatch.setattr(_listing, "live", lambda kinds: pytest.fail("listed live despite a fresh snapshot"))
    assert _listing.listing(["metrics", "attacks"]) == {"metrics": live["metrics"], "attacks": live["attacks"]}
    out = json.loads(runner.invoke(app, ["ls", "methods", "--json"]).stdout)
    assert out == live["methods"]


def test_ls_lists_live_when_a_plugin_is_installed(tmp_path, monkeypatch):
    assert not _listing._plugins_installed()
    dist = tmp_path / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "entry_points.txt").write_text("[unlearnbench.methods]\nmine = my_plugin:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _listing._plugins_installed()
    calls = []
    monkeypatch.setattr(_listing, "live", lambda kinds: calls.append(kinds) or {k: [] for k in kinds})
    assert _listing.listing(["methods"]) == {"methods": []} and calls == [["methods"]]


def test_print_only_commands_skip_the_allocator_reexec():
    assert print_only(["unlearnbench"], {})
    assert print_only(["unlearnbench", "train", "--help"], {})
    assert print_only(["unlearnbench", "ls", "methods"], {})
    assert print_only(["unlearnbench", "train"], {"_UNLEARNBENCH_COMPLETE": "complete_bash"})
    assert not print_only(["unlearnbench", "train", "--epochs", "1"], {})
    assert not print_only(["unlearnbench", "evaluate", "-c", "ls"], {})


def test_shell_completion_installs_and_completes():
    import typer
    from typer.completion import get_completion_script

    # --install-completion / --show-completion detect the user's shell from the process tree
    # (shellingham), which a test cannot rely on; the script they write is this one.
    root = {o for p in typer.main.get_command(app).params for o in p.opts}
    assert {"--install-completion", "--show-completion"} <= root
    script = get_completion_script(prog_name="unlearnbench", complete_var="_UNLEARNBENCH_COMPLETE", shell="bash")
    assert "complete -o default -F _unlearnbench_completion unlearnbench" in script
    env = {**_env(), "_UNLEARNBENCH_COMPLETE": "complete_bash", "COMP_WORDS": "unlearnbench train --ep",
           "COMP_CWORD": "2"}
    code = ("import sys\nfrom unlearnbench.cli import app\ntry:\n    app(prog_name='unlearnbench')\n"
            "finally:\n    sys.stderr.write('TORCH' if 'torch' in sys.modules else 'light')")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["--epochs"] and proc.stderr.endswith("light"), proc


def _commands() -> list[list[str]]:
    import typer

    out = []
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        out.append([name])
        out.extend([name, sub] for sub in getattr(cmd, "commands", {}))
    return out


@pytest.mark.parametrize("columns", ["80", "200"])
def test_help_is_whole_at_80_columns_and_piped(columns):
    """Every option name appears whole, no line is wider than the terminal, no description is cut."""
    import typer

    group = typer.main.get_command(app)
    for path in [[], *_commands()]:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": columns}, prog_name="unlearnbench")
        assert result.exit_code == 0, (path, result.output)
        text = result.stdout
        # click's command list cuts a description with a trailing "..."
        assert not any(ln.endswith("...") and "[ARGS]" not in ln for ln in text.splitlines()), (path, text)
        assert max(len(line) for line in text.splitlines()) <= int(columns), (path, text)
        cmd = group
        for part in path:
            cmd = cmd.commands[part]
        for param in cmd.params:
            for opt in param.opts:
                if opt.startswith("-"):
                    assert opt in text, (path, opt)
