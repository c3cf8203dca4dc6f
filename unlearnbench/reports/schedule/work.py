"""What a scheduled run executes and how it is kept single: the command lines, the checked values
that go into them, the ``flock`` run lock, and the in-process (foreground) loop."""

from __future__ import annotations

import datetime as dt
import logging
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from unlearnbench.core.boundary import check_value
from unlearnbench.core.errors import ConfigError
from unlearnbench.reports.schedule.timing import parse_cron

log = logging.getLogger(__name__)


CRON_TAG = "# unlearnbench-schedule:"
MARKER = "# Managed by `unlearnbench schedule`"
ENV_CRONTAB = "UNLEARNBENCH_CRONTAB"  # the crontab command (a fake one in tests)
ENV_CRONTAB_FILE = "UNLEARNBENCH_CRONTAB_FILE"
ENV_UNIT_DIR = "UNLEARNBENCH_SYSTEMD_DIR"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"Bad schedule name {name!r}: use letters, digits, '-' and '_' (at most 64).")
    return name


def cli_prefix() -> list[str]:
    """How a scheduled job starts this same installation (the venv's Python, not PATH's)."""
    return [sys.executable, "-m", "unlearnbench"]


def absolute_uri(uri: str | None, workdir: Path) -> str | None:
    """A relative SQLite path would resolve against cron's/systemd's working folder: pin it."""
    if uri and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((workdir / uri[len("sqlite:///") :]).resolve())
    return uri


def job_commands(
    *,
    study: str | None,
    report: bool,
    experiment: str | None,
    out: Path,
    tracking_uri: str | None,
    workdir: Path,
) -> list[list[str]]:
    """The command lines one scheduled run executes: the study (a fresh instance each time, so
    results track the current code and data), then the report of its experiment."""
    if study is None and not report:
        raise ConfigError("Nothing to schedule: pass --study FILE and/or keep --report.")
    if report and not experiment:
        raise ConfigError("The report needs an experiment: pass --experiment NAME.")
    uri = absolute_uri(tracking_uri, workdir)
    common = ["--tracking-uri", uri] if uri else []
    cmds: list[list[str]] = []
    if study is not None:
        exp = ["--experiment", experiment] if experiment else []
        cmds.append([*cli_prefix(), "benchmark", study, "--new", "--quiet", *exp, *common])
    if report:
        out_abs = out if out.is_absolute() else (workdir / out)
        cmds.append([*cli_prefix(), "report", "--experiment", experiment, "--out", str(out_abs), "--quiet", *common])
    return cmds


LOCK_BUSY = 75  # flock's exit code when the lock is held (-E); EX_TEMPFAIL


def lock_path(out: Path, name: str) -> Path:
    """The lock a schedule's runs take (next to its log), so two runs of it never overlap."""
    return out / f"schedule-{name}.lock"


def check_values(*values: str | Path | None) -> None:
    """Every value that goes into a cron line or unit file is a single printable line."""
    for v in values:
        if v is not None:
            check_value(str(v), f"The value {str(v)[:40]!r}")


def locked_script(name: str, commands: list[list[str]], lock: Path) -> str:
    """A /bin/sh script running ``commands`` in order under ``flock`` on ``lock``: while an earlier
    run holds the lock, this one exits at once and logs one line saying so. A failing study does
    not stop the report of whatever finished (``;``); the script fails when the last step does."""
    for cmd in commands:
        check_values(*cmd)
    check_values(name, lock)
    steps = "; ".join(shlex.join(c) for c in commands)
    note = f"unlearnbench schedule {name}: skipped, the previous run still holds {lock}"
    return (f"flock -n -E {LOCK_BUSY} {shlex.quote(str(lock))} sh -c {shlex.quote(steps)} || "
            f"{{ [ $? -eq {LOCK_BUSY} ] && echo \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" {shlex.quote(note)}; }}")


def tool_status(*names: str) -> list[tuple[str, str | None]]:
    """(program, path or None) for each program this schedule needs."""
    return [(n, shutil.which(n)) for n in names]


def run_foreground(
    commands: Sequence[Sequence[str]],
    *,
    every_s: float | None = None,
    cron: str | None = None,
    max_runs: int | None = None,
    delay_s: float = 0.0,
    workdir: Path | None = None,
    lock: Path | None = None,
    on_run: Callable[[int, list[int]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
) -> int:
    """Run ``commands`` on a schedule in this process until ``max_runs`` runs (forever if None).

    With ``every_s`` the first run starts at once (after ``delay_s``) and later runs keep a fixed
    rate (a run that overruns skips the missed slots instead of piling up); with ``cron`` each run
    waits for the next matching minute. A failing command is logged and the schedule goes on.
    ``lock``: the file installed schedules lock (``flock``); while another run holds it, this run
    is skipped and logged (its codes are empty). Returns the number of runs.
    """
    if (every_s is None) == (cron is None):
        raise ConfigError("Give exactly one of --every or --cron.")
    spec = parse_cron(cron) if cron else None
    runs = 0
    if every_s is not None and delay_s > 0:
        sleep(delay_s)
    start = time.monotonic()
    while max_runs is None or runs < max_runs:
        if spec is not None:
            t = now()
            wait = (spec.next_after(t) - t).total_seconds()
            sleep(max(0.0, wait))
        elif runs:
            elapsed = time.monotonic() - start
            slot = (int(elapsed // every_s) + 1) * every_s  # type: ignore[operator]
            sleep(max(0.0, slot - elapsed))
        codes = _run_locked(commands, workdir, lock)
        runs += 1
        if on_run is not None:
            on_run(runs, codes)
    return runs


def _run_locked(commands: Sequence[Sequence[str]], workdir: Path | None, lock: Path | None) -> list[int]:
    import contextlib
    import fcntl

    with contextlib.ExitStack() as stack:
        if lock is not None:
            fh = stack.enter_context(open(lock, "a"))
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the lock flock(1) takes for cron/systemd runs
            except BlockingIOError:
                log.warning("Skipped this run: the previous run still holds %s.", lock)
                return []
        codes = []
        for cmd in commands:
            res = subprocess.run(list(cmd), cwd=workdir)
            if res.returncode != 0:
                log.warning("Scheduled command exited with %d: %s", res.returncode, " ".join(cmd))
            codes.append(res.returncode)
        return codes
