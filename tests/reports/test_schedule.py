"""`unlearnbench schedule`: cron entries and systemd units in temporary places, the cron parser,
and the foreground scheduler."""

from __future__ import annotations

import datetime as dt
import json
import stat
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_helpers import log_study, records
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.errors import ConfigError
from unlearnbench.reports import schedule as sched

runner = CliRunner()


def _invoke(args: list[str], **env: str):
    res = runner.invoke(app, ["schedule", *args], env={"COLUMNS": "200", **env})
    return res


def _cron_command(line: str) -> list[str]:
    """The command part of a cron line as sh reads it (after cron turns \\% back into %)."""
    import shlex

    body = line.split(sched.CRON_TAG)[0].replace("\\%", "%")
    words = shlex.split(body)
    return words[words.index("cd"):]


def _steps(script_or_line: str) -> list[list[str]]:
    """The command lines a scheduled run executes, from a cron line or a unit's sh script."""
    import shlex

    words = _cron_command(script_or_line) if sched.CRON_TAG in script_or_line else shlex.split(script_or_line)
    at = words.index("flock")
    assert words[at:at + 4] == ["flock", "-n", "-E", "75"] and words[at + 5:at + 7] == ["sh", "-c"]
    lexer = shlex.shlex(words[at + 7], posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    steps: list[list[str]] = [[]]
    for token in lexer:
        steps.append([]) if token == ";" else steps[-1].append(token)
    return steps


def test_cron_install_replace_and_remove_only_own_entries(tmp_path):
    tab = tmp_path / "crontab"
    tab.write_text("MAILTO=me@example.org\n30 2 * * * /usr/bin/backup # unlearnbench-schedule-lookalike\n")
    base = ["--crontab-file", str(tab), "--workdir", str(tmp_path), "--experiment", "exp one"]
    res = _invoke(["--cron", "0 6 * * *", "--name", "nightly", *base])
    assert res.exit_code == 0, res.output
    res = _invoke(["--cron", "@weekly", "--name", "weekly", *base])
    assert res.exit_code == 0, res.output
    lines = tab.read_text().splitlines()
    assert lines[:2] == ["MAILTO=me@example.org", "30 2 * * * /usr/bin/backup # unlearnbench-schedule-lookalike"]
    nightly = [ln for ln in lines if ln.endswith("# unlearnbench-schedule:nightly")]
    assert len(nightly) == 1
    assert nightly[0].startswith("0 6 * * * cd ")
    [report] = _steps(nightly[0])
    assert report[1:6] == ["-m", "unlearnbench", "report", "--experiment", "exp one"]
    assert _cron_command(nightly[0])[-3:] == [">>", f"{tmp_path}/reports/schedule-nightly.log", "2>&1"]

    # Installing the same name again replaces its entry instead of adding a second one.
    res = _invoke(["--cron", "15 7 * * 1-5", "--name", "nightly", *base])
    assert res.exit_code == 0 and "Replaced" in res.output
    lines = tab.read_text().splitlines()
    assert [ln[:14] for ln in lines if "schedule:nightly" in ln] == ["15 7 * * 1-5 c"]

    res = _invoke(["--list", "--crontab-file", str(tab), "--unit-dir", str(tmp_path / "units")])
    assert "nightly" in res.output and "weekly" in res.output and "lookalike" not in res.output

    res = _invoke(["--remove", "--name", "nightly", "--crontab-file", str(tab), "--unit-dir", str(tmp_path / "units")])
    assert res.exit_code == 0, res.output
    lines = tab.read_text().splitlines()
    assert len(lines) == 3 and lines[2].endswith("schedule:weekly")
    res = _invoke(["--remove-all", "--crontab-file", str(tab), "--unit-dir", str(tmp_path / "units")])
    assert res.exit_code == 0
    assert tab.read_text().splitlines() == lines[:2]
    res = _invoke(["--remove", "--crontab-file", str(tab), "--unit-dir", str(tmp_path / "units")])
    assert "No installed entry" in res.output


def test_cron_through_a_crontab_command(tmp_path):
    """The default path: `crontab -l` / `crontab -`, here a fake program keeping one file."""
    store = tmp_path / "store"
    fake = tmp_path / "fake-crontab"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = "-l" ]; then
          [ -f {store} ] || {{ echo "no crontab for tester" >&2; exit 1; }}
          cat {store}
        elif [ "$1" = "-" ]; then
          cat > {store}
        else
          exit 2
        fi
        """))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"UNLEARNBENCH_CRONTAB": str(fake)}
    res = _invoke(["--cron", "*/30 * * * *", "--experiment", "e", "--workdir", str(tmp_path)], **env)
    assert res.exit_code == 0, res.output
    assert store.read_text().count("# unlearnbench-schedule:default") == 1
    res = _invoke(["--remove", "--unit-dir", str(tmp_path / "u")], **env)
    assert res.exit_code == 0, res.output
    assert store.read_text() == ""
    res = _invoke(["--cron", "0 6 * * *", "--experiment", "e"], UNLEARNBENCH_CRONTAB="/nonexistent/crontab")
    assert res.exit_code == 2 and "not installed" in res.output


def test_systemd_units_install_and_remove(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    foreign = units / "unlearnbench-mine.timer"  # same prefix, written by someone else
    foreign.write_text("[Timer]\nOnCalendar=daily\n")
    uri = "sqlite:///rel/mlflow.db"
    res = _invoke(["--every", "24h", "--experiment", "e", "--unit-dir", str(units), "--workdir", str(tmp_path),
                   "--tracking-uri", uri, "--name", "daily"])
    assert res.exit_code == 0, res.output
    service = (units / "unlearnbench-daily.service").read_text()
    timer = (units / "unlearnbench-daily.timer").read_text()
    assert "Type=oneshot" in service and f"WorkingDirectory={tmp_path}" in service
    # The relative SQLite store is pinned to the working folder the schedule was made in.
    assert f"--tracking-uri sqlite:///{tmp_path}/rel/mlflow.db" in service
    # Calendar-based and persistent: a run missed while the machine was off starts at the next
    # boot; no OnUnitActiveSec/OnActiveSec, which count from each login.
    assert "OnCalendar=*-*-* 00:00:00" in timer and "Persistent=true" in timer and "Unit=unlearnbench-daily.service" in timer
    assert "OnUnitActiveSec" not in timer and "OnActiveSec" not in timer and "OnBootSec" not in timer
    assert f"flock -n -E 75 {tmp_path}/reports/schedule-daily.lock" in service
    assert "systemctl --user daemon-reload" in res.output  # custom unit dir: only written
    res = _invoke(["--list", "--unit-dir", str(units), "--crontab-file", str(tmp_path / "tab")])
    assert "daily" in res.output and "mine" not in res.output
    # A foreign unit with the target name is never overwritten.
    res = _invoke(["--every", "1h", "--experiment", "e", "--unit-dir", str(units), "--name", "mine"])
    assert res.exit_code == 2 and "not written by unlearnbench" in res.output
    res = _invoke(["--remove-all", "--unit-dir", str(units), "--crontab-file", str(tmp_path / "tab")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in units.iterdir()) == ["unlearnbench-mine.timer"]


def test_systemd_quoting_keeps_arguments_literal(tmp_path):
    files = sched.systemd_units("q", 60, [["/venv/bin/python", "-m", "x", "--out", "/a b/100%", "$HOME"]], tmp_path)
    service = files["unlearnbench-q.service"]
    # systemd's own parser: % specifiers doubled, $ doubled, the script one double-quoted word.
    line = next(ln for ln in service.splitlines() if ln.startswith("ExecStart="))
    assert line.startswith('ExecStart=/bin/sh -c "flock -n -E 75 ')
    assert "'/a b/100%%'" in line and "'$$HOME'" in line and "%%Y-%%m-%%d" in line


@pytest.mark.parametrize(("every", "delay", "calendar"), [
    (86400, 0, "*-*-* 00:00:00"), (86400, 6 * 3600 + 90, "*-*-* 06:01:30"), (6 * 3600, 1800, "*-*-* 00/6:30:00"),
    (3600, 0, "*-*-* 00/1:00:00"), (900, 120, "*-*-* *:02/15:00"), (10, 3, "*-*-* *:*:03/10"),
    (604800, 86400 + 7200, "Tue *-*-* 02:00:00"),
])
def test_every_becomes_a_calendar_that_systemd_reads_the_same_way(every, delay, calendar):
    import shutil
    import subprocess

    assert sched.on_calendar(every, delay) == calendar
    now = dt.datetime(2026, 3, 4, 5, 59, 30).astimezone()
    times = sched.next_runs(every_s=every, delay_s=delay, now=now)
    assert all(t > now for t in times) and times[0] - now <= dt.timedelta(seconds=every)
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)] == [every, every]
    if shutil.which("systemd-analyze"):  # systemd's own reading of the expression agrees
        res = subprocess.run(["systemd-analyze", "calendar", "--iterations", "3", calendar], capture_output=True,
                             text=True, check=True)
        assert "Normalized form:" in res.stdout


@pytest.mark.parametrize(("every", "delay", "message"), [
    (7 * 3600, 0, "does not divide a day"), (86400, 86400, "--delay must be shorter"), (0.5, 0, "whole seconds"),
    (2 * 86400, 0, "does not divide a day"),
])
def test_periods_a_calendar_cannot_hold_are_refused(every, delay, message):
    with pytest.raises(ConfigError, match=message):
        sched.on_calendar(every, delay)


@pytest.mark.parametrize("args, message", [
    (["--cron", "0 6 * * *", "--every", "1h", "--experiment", "e"], "exactly one"),
    (["--experiment", "e"], "exactly one"),
    (["--cron", "61 * * * *", "--experiment", "e"], "not a minute"),
    (["--cron", "0 6 * *", "--experiment", "e"], "five fields"),
    (["--every", "soon", "--experiment", "e"], "Bad interval"),
    (["--every", "1h", "--no-report"], "Nothing to schedule"),
    (["--every", "1h"], "needs an experiment"),
    (["--every", "1h", "--experiment", "e", "--name", "a b"], "Bad schedule name"),
    (["--every", "1h", "--experiment", "e", "--max-runs", "2"], "--foreground"),
    (["--cron", "30 2 30 2 *", "--experiment", "e"], "never fires within the next 5 years"),
    (["--every", "7h", "--experiment", "e"], "does not divide a day"),
])
def test_bad_input_is_one_sentence(args, message, tmp_path):
    res = _invoke([*args, "--unit-dir", str(tmp_path), "--crontab-file", str(tmp_path / "tab")])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cron_parser():
    t = dt.datetime(2026, 3, 4, 5, 59)  # a Wednesday
    assert sched.parse_cron("0 6 * * *").next_after(t) == dt.datetime(2026, 3, 4, 6, 0)
    assert sched.parse_cron("*/15 * * * *").next_after(dt.datetime(2026, 3, 4, 6, 1)) == dt.datetime(2026, 3, 4, 6, 15)
    assert sched.parse_cron("0 6 * * mon").next_after(t) == dt.datetime(2026, 3, 9, 6, 0)
    assert sched.parse_cron("0 0 * * 7").next_after(t) == dt.datetime(2026, 3, 8, 0, 0)  # 7 = Sunday
    # Both day fields restricted: either matches (Vixie cron).
    assert sched.parse_cron("0 0 1 * fri").next_after(t) == dt.datetime(2026, 3, 6, 0, 0)
    assert sched.parse_cron("@daily").next_after(t) == dt.datetime(2026, 3, 5, 0, 0)
    assert sched.parse_cron("30 8-10/2 * jan-mar *").next_times(t, 3) == [
        dt.datetime(2026, 3, 4, 8, 30), dt.datetime(2026, 3, 4, 10, 30), dt.datetime(2026, 3, 5, 8, 30)]
    assert sched.parse_cron("30 8-10/2 * apr *").next_after(t) == dt.datetime(2026, 4, 1, 8, 30)
    for bad in ("* * * *", "0 24 * * *", "0 0 32 * *", "0 0 * 13 *", "5-1 * * * *", "*/0 * * * *", "x * * * *",
                "0 0 L * *", "0 0 * * 1#2", "0 0 0 * * *", "@reboot"):
        with pytest.raises(ConfigError):
            sched.parse_cron(bad)
    # One sentence naming the field, with its article.
    with pytest.raises(ConfigError, match=r"'24' is not an hour \(0-23\)"):
        sched.parse_cron("24 24 * * *")
    with pytest.raises(ConfigError, match=r"'32' is not a day of the month \(1-31\)"):
        sched.parse_cron("0 0 32 * *")
    with pytest.raises(ConfigError, match=r"the range '5-1' runs backwards"):
        sched.parse_cron("5-1 * * * *")
    # A day that never comes (30 February, 31 April) is refused: croniter's bounded search finds
    # no minute within five years; 29 February (next in at most four years) is fine.
    for never in ("30 2 30 2 *", "0 0 31 4 *", "0 0 30,31 2 *"):
        with pytest.raises(ConfigError, match="never fires"):
            sched.parse_cron(never)
    assert sched.parse_cron("0 0 29 2 *").next_after(t) == dt.datetime(2028, 2, 29, 0, 0)
    assert sched.parse_duration("1h30m") == 5400 and sched.parse_duration("0.5s") == 0.5
    assert sched.parse_duration("2d") == 172800


def test_foreground_runs_n_times_on_a_tiny_interval(tmp_path):
    marker = tmp_path / "ticks"
    cmd = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    seen = []
    runs = sched.run_foreground([cmd, cmd], every_s=0.05, max_runs=3, on_run=lambda n, codes: seen.append(codes))
    assert runs == 3 and marker.read_text() == "x" * 6 and seen == [[0, 0]] * 3
    # A failing command is reported and the schedule goes on.
    bad = [sys.executable, "-c", "raise SystemExit(3)"]
    assert sched.run_foreground([bad], every_s=0.01, max_runs=2, on_run=lambda n, c: seen.append(c)) == 2
    assert seen[-2:] == [[3], [3]]
    # Cron timing: the loop sleeps until the next matching minute (clock and sleep injected).
    clock = {"t": dt.datetime(2026, 1, 1, 5, 58, 30)}
    waits = []

    def fake_sleep(s):
        waits.append(s)
        clock["t"] += dt.timedelta(seconds=s)

    sched.run_foreground([cmd], cron="0 6 * * *", max_runs=2, sleep=fake_sleep, now=lambda: clock["t"])
    assert waits == [90.0, 86400.0]
    # --every: the first run at once, unless delayed.
    waits.clear()
    sched.run_foreground([cmd], every_s=3600, max_runs=1, sleep=fake_sleep)
    assert waits == []
    sched.run_foreground([cmd], every_s=3600, delay_s=600, max_runs=1, sleep=fake_sleep)
    assert waits == [600]


def test_foreground_cli_renders_the_report(mlflow_uri, tmp_path):
    from report_helpers import unique_experiment

    experiment = unique_experiment("sched")
    log_study(mlflow_uri, experiment, records())
    out = tmp_path / "reports"
    res = _invoke(["--every", "0.1s", "--foreground", "--max-runs", "1", "--experiment", experiment,
                   "--out", str(out), "--tracking-uri", mlflow_uri])
    assert res.exit_code == 0, res.output
    assert "Stopped after 1 run(s)" in res.output and "exit codes [0]" in res.output
    history = sorted((out / experiment / "history").glob("*.json"))
    assert len(history) == 1
    assert json.loads(history[-1].read_text())["experiment"] == experiment


def test_schedule_a_study_and_its_report(tmp_path):
    tab = tmp_path / "crontab"
    study = tmp_path / "nightly.yaml"
    study.write_text("name: nightly\nmethods: [finetune]\nforget: ['class:3']\n")
    res = _invoke(["--cron", "0 6 * * *", "--study", str(study), "--crontab-file", str(tab), "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    line = tab.read_text().strip()
    # A fresh study run each time, then the report of the study's experiment, output to the log.
    bench, report = _steps(line)
    assert bench[1:7] == ["-m", "unlearnbench", "benchmark", str(study), "--new", "--quiet"]
    assert report[1:6] == ["-m", "unlearnbench", "report", "--experiment", "nightly"]
    res = _invoke(["--every", "6h", "--study", "digits", "--unit-dir", str(tmp_path / "u"), "--dry-run"])
    assert res.exit_code == 0 and "benchmark digits --new" in res.output and not (tmp_path / "u").exists()
    study.write_text("name: nightly\nmethods: [finetune]\nepochs: 3\n")
    res = _invoke(["--cron", "0 6 * * *", "--study", str(study), "--crontab-file", str(tmp_path / "t2")])
    assert res.exit_code == 2 and "Unknown config key 'epochs'" in res.output


def test_system_crontab_lines_carry_the_user_field(tmp_path):
    line = sched.cron_line("n", "0 6 * * *", [["/bin/true"]], tmp_path, tmp_path / "log", user="alice")
    assert line.startswith("0 6 * * * alice cd ")
    assert sched.cron_line("n", "@daily", [["/bin/true"]], tmp_path, tmp_path / "log").startswith("@daily cd ")
    assert sched.is_system_crontab(sched.Path("/etc/cron.d/unlearnbench")) and sched.is_system_crontab(sched.Path("/etc/crontab"))
    assert not sched.is_system_crontab(tmp_path / "tab") and not sched.is_system_crontab(None)
    # Through the CLI: /etc/cron.d gets the user field by default (dry run: nothing written there).
    res = _invoke(["--cron", "0 6 * * *", "--experiment", "e", "--crontab-file", "/etc/cron.d/unlearnbench",
                   "--dry-run", "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"0 6 * * * {sched.default_user()} cd " in res.output and "Would write /etc/cron.d/unlearnbench" in res.output
    tab = tmp_path / "tab"
    res = _invoke(["--cron", "0 6 * * *", "--experiment", "e", "--crontab-file", str(tab), "--cron-user", "bob",
                   "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert tab.read_text().startswith("0 6 * * * bob cd ")
    res = _invoke(["--cron", "0 6 * * *", "--experiment", "e", "--crontab-file", str(tab), "--cron-user", "b b"])
    assert res.exit_code == 2 and "Bad cron user" in res.output


def test_dry_run_checks_the_tools_and_prints_the_next_three_runs(tmp_path):
    res = _invoke(["--cron", "0 6 * * *", "--experiment", "e", "--dry-run", "--workdir", str(tmp_path)],
                  UNLEARNBENCH_CRONTAB="no-such-crontab-program")
    assert res.exit_code == 0, res.output
    assert "no-such-crontab-program is not installed here" in res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("Next runs: "))
    times = [dt.datetime.strptime(t.strip()[:19], "%Y-%m-%d %H:%M:%S") for t in line[len("Next runs: "):].split(",")]
    assert len(times) == 3 and all(t.hour == 6 and t.minute == 0 for t in times)
    assert [(b - a).days for a, b in zip(times, times[1:], strict=False)] == [1, 1]
    assert times[0] - dt.datetime.now() <= dt.timedelta(days=1)
    res = _invoke(["--every", "2h", "--delay", "30m", "--experiment", "e", "--dry-run", "--workdir", str(tmp_path)],
                  PATH="/nonexistent")
    assert res.exit_code == 0, res.output
    assert "OnCalendar=*-*-* 00/2:30:00" in res.output and "systemctl is not installed here" in res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("Next runs: "))
    times = [dt.datetime.strptime(t.strip()[:19], "%Y-%m-%d %H:%M:%S") for t in line.split(": ", 1)[1].split(",")]
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)] == [7200, 7200]
    assert all(t.hour % 2 == 0 and t.minute == 30 for t in times)
    assert 0 < (times[0] - dt.datetime.now()).total_seconds() <= 7200 + 60
    res = _invoke(["--cron", "0 6 * * *", "--delay", "5m", "--experiment", "e", "--dry-run"])
    assert res.exit_code == 2 and "--delay only applies with --every" in res.output


# ----------------------------------------------------------------------------- nothing unchecked
# reaches a cron line or a unit file (issue 20, item 4)


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("backend", ["cron", "systemd"])
def test_a_newline_in_the_experiment_or_the_workdir_is_refused_and_nothing_changes(tmp_path, backend):
    tab = tmp_path / "crontab"
    tab.write_text("MAILTO=me@example.org\n")
    units = tmp_path / "units"
    units.mkdir()
    odd = tmp_path / "a\nb"
    odd.mkdir()
    where = ["--cron", "0 6 * * *"] if backend == "cron" else ["--every", "24h"]
    before = _snapshot(tmp_path)
    for extra in (["--experiment", "exp\n* * * * * touch /tmp/pwned"], ["--experiment", "e", "--workdir", str(odd)],
                  ["--experiment", "e\r"], ["--experiment", "e", "--out", "rep\norts"]):
        res = _invoke([*where, *extra, "--crontab-file", str(tab), "--unit-dir", str(units)])
        assert res.exit_code == 2, res.output
        assert "control character" in res.output and "Traceback" not in res.output
        assert _snapshot(tmp_path) == before
    # The working folder is checked after it is resolved: `.` inside a folder named with a newline.
    import os

    cwd = os.getcwd()
    try:
        os.chdir(odd)
        res = _invoke([*where, "--experiment", "e", "--crontab-file", str(tab), "--unit-dir", str(units)])
    finally:
        os.chdir(cwd)
    assert res.exit_code == 2 and "control character" in res.output
    assert _snapshot(tmp_path) == before


_CONTROL = st.characters(categories=["Cc", "Zl", "Zp"])
_TEXT = st.text(st.characters(blacklist_categories=["Cc", "Zl", "Zp", "Cs"]), max_size=12)


@st.composite
def _with_control(draw):
    """A value with at least one control character somewhere in it."""
    head, tail = draw(_TEXT), draw(_TEXT)
    return head + draw(st.text(_CONTROL, min_size=1, max_size=3)) + tail


_OPTIONS = ["--experiment", "--out", "--workdir", "--study", "--tracking-uri", "--cron-user", "--crontab-command",
            "--name", "--cron", "--crontab-file", "--unit-dir"]


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(_OPTIONS), value=_with_control(), backend=st.sampled_from(["cron", "systemd"]))
def test_any_control_character_in_any_value_is_refused(tmp_path, option, value, backend):
    if "\x00" in value and option in ("--crontab-command",):
        value = value.replace("\x00", "\n")  # environment-like values cannot hold NUL
    tab = tmp_path / "crontab"
    tab.write_text("MAILTO=me@example.org\n")
    units = tmp_path / "units"
    units.mkdir(exist_ok=True)
    before = _snapshot(tmp_path)
    where = ["--cron", "0 6 * * *"] if backend == "cron" else ["--every", "24h"]
    args = {"--experiment": "e", "--crontab-file": str(tab), "--unit-dir": str(units), option: value}
    if option == "--cron":
        where = []
    res = _invoke([*where, *[x for kv in args.items() for x in kv]])
    assert res.exit_code == 2, (option, value, res.output)
    assert "Traceback" not in res.output
    assert _snapshot(tmp_path) == before


@settings(deadline=None)
@given(args=st.lists(_TEXT, min_size=1, max_size=4), workdir=_TEXT, bad=st.one_of(st.none(), _with_control()))
def test_cron_lines_and_units_hold_exactly_the_given_arguments(args, workdir, bad):
    """Any printable arguments come back out of the cron line as sh reads it, on one line; any
    control character anywhere is refused."""
    cmd = ["/venv/bin/python", "-m", "unlearnbench", "report", *args]
    where = sched.Path("/srv") / (workdir or "w")
    if bad is not None:
        with pytest.raises(ConfigError, match="control character"):
            sched.cron_line("n", "0 6 * * *", [[*cmd, bad]], where, where / "log")
        with pytest.raises(ConfigError, match="control character"):
            sched.systemd_units("n", 3600, [cmd], where / bad)
        return
    line = sched.cron_line("n", "0 6 * * *", [cmd, cmd], where, where / "log%")
    assert "\n" not in line and line.endswith(f"{sched.CRON_TAG}n")
    assert _steps(line) == [cmd, cmd]
    assert _cron_command(line)[1] == str(where) and _cron_command(line)[-2] == str(where / "log%")
    service = sched.systemd_units("n", 3600, [cmd, cmd], where)["unlearnbench-n.service"]
    assert len(service.splitlines()) == 8  # no argument added a line
    [exec_start] = [ln for ln in service.splitlines() if ln.startswith("ExecStart=/bin/sh -c ")]
    assert _steps(_systemd_unquote(exec_start[len("ExecStart=/bin/sh -c "):])) == [cmd, cmd]


def _systemd_unquote(word: str) -> str:
    """One double-quoted word of an ExecStart= line as systemd reads it (C escapes, then $$ and %%)."""
    import re

    assert word[0] == word[-1] == '"'
    text = re.sub(r"\\(.)", r"\1", word[1:-1])
    return text.replace("$$", "$").replace("%%", "%")


def test_a_run_that_finds_the_previous_one_running_exits_and_says_so(tmp_path):
    """Two runs of one cron line at once: the second exits at once and logs why (real sh, flock)."""
    import shutil
    import subprocess
    import time

    if shutil.which("flock") is None:
        pytest.skip("flock (util-linux) is not installed")
    ticks = tmp_path / "ticks"
    slow = [sys.executable, "-c", f"import time; open({str(ticks)!r}, 'a').write('x'); time.sleep(3)"]
    log = tmp_path / "out" / "schedule-n.log"
    log.parent.mkdir()
    line = sched.cron_line("n", "* * * * *", [slow], tmp_path, log)
    command = line.split(" ", 5)[5].split(sched.CRON_TAG)[0].replace("\\%", "%")  # what cron hands to sh
    first = subprocess.Popen(["/bin/sh", "-c", command])
    deadline = time.monotonic() + 30
    while not ticks.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    second = subprocess.run(["/bin/sh", "-c", command], timeout=30)
    assert time.monotonic() - t0 < 2.5 and second.returncode == 0  # did not wait for the first
    assert first.wait(timeout=30) == 0
    assert ticks.read_text() == "x"  # the work ran once
    assert "unlearnbench schedule n: skipped, the previous run still holds" in log.read_text()
    # Foreground runs take the same lock.
    import fcntl

    lock = sched.lock_path(log.parent, "n")
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        seen = []
        assert sched.run_foreground([slow], every_s=0.01, max_runs=1, lock=lock, on_run=lambda n, c: seen.append(c)) == 1
        assert seen == [[]] and ticks.read_text() == "x"


def test_the_removal_hint_removes_what_was_installed(tmp_path, monkeypatch):
    import shlex

    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    tab = tmp_path / "tab"
    tab.write_text("MAILTO=me@example.org\n")
    res = _invoke(["--cron", "0 6 * * *", "--experiment", "e", "--crontab-file", "tab", "--name", "nightly"])
    assert res.exit_code == 0, res.output
    hint = res.output.split("Remove it with: ", 1)[1].split("\n")[0]
    monkeypatch.chdir(tmp_path / "elsewhere")  # works from any folder: the crontab file is absolute
    args = shlex.split(hint)
    assert args[:2] == ["unlearnbench", "schedule"]
    res = _invoke(args[2:])
    assert res.exit_code == 0 and "Removed cron entry" in res.output, res.output
    assert tab.read_text() == "MAILTO=me@example.org\n"
    # The systemd hint names the unit folder it wrote to.
    res = _invoke(["--every", "1h", "--experiment", "e", "--unit-dir", "../units", "--name", "hourly",
                   "--workdir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    hint = res.output.split("Remove it with: ", 1)[1].split("\n")[0]
    res = _invoke(shlex.split(hint)[2:])
    assert res.exit_code == 0 and not list((tmp_path / "units").iterdir()), res.output
