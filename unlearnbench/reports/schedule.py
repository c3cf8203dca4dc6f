"""Periodic studies and reports: a cron entry, a systemd user timer, or an in-process loop.

Every entry this module writes carries its name, so ``remove`` deletes exactly its own entries:

- cron: one line ending in ``# unlearnbench-schedule:<name>``, written through the ``crontab``
  command (or straight into a crontab file when one is given, e.g. for tests or /etc/cron.d);
- systemd: ``unlearnbench-<name>.service`` + ``.timer`` in the user unit folder, each starting
  with the ``MARKER`` comment; files without it are never touched.

The scheduled work is a list of command lines (``unlearnbench benchmark`` and/or ``report``) run
one after the other; this module never imports the CLI, it only builds and runs command lines.

What is left to this module is what cron, systemd and croniter do not do: croniter parses cron
expressions and finds their next times, systemd's calendar timers fire (and catch up after
downtime, ``Persistent=true``) and never start a service that is still running, cron fires its
lines. Here: refusing every value that would not stay on its line (``core.boundary.check_value``), cron
expressions that cannot fire within five years, and overlapping runs (``flock``: a run that finds
the previous one still going exits and says so in the log); quoting for sh, cron and systemd.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from unlearnbench.core.boundary import check_value
from unlearnbench.core.errors import ConfigError, UserError

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


# ----------------------------------------------------------------------------- the work


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


# ----------------------------------------------------------------------------- durations and cron


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``24h``, ``30m``, ``1h30m``, ``10s``, ``0.5s`` → seconds."""
    compact = text.replace(" ", "").lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ConfigError(f"Bad interval {text!r}: write it like 24h, 30m, 1h30m or 10s.")
    seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"Bad interval {text!r}: it must be longer than zero.")
    return seconds


# (name with its article, lowest, highest) of the five fields, for error messages.
_CRON_FIELDS = (("a minute", 0, 59), ("an hour", 0, 23), ("a day of the month", 1, 31), ("a month", 1, 12),
                ("a day of the week", 0, 7))
_CRON_MACROS = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
_CRON_TOKEN = re.compile(r"^[0-9a-z*,/-]+$")
# Names cron knows (month and weekday fields only); croniter would also take L, W, #, ?.
_CRON_WORDS = {3: set("jan feb mar apr may jun jul aug sep oct nov dec".split()),
               4: set("sun mon tue wed thu fri sat".split())}


@dataclass(frozen=True)
class CronSpec:
    """A five-field cron expression (or ``@daily``-style macro), checked and evaluated with
    ``croniter`` (Vixie semantics: when both day fields are restricted, either may match)."""

    text: str

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after ``t`` (same time zone as ``t``)."""
        from croniter import croniter

        return croniter(self.text, t).get_next(dt.datetime)

    def next_times(self, t: dt.datetime, n: int = 3) -> list[dt.datetime]:
        from croniter import croniter

        it = croniter(self.text, t)
        return [it.get_next(dt.datetime) for _ in range(n)]


def parse_cron(text: str) -> CronSpec:
    """Check ``text`` and return it as a :class:`CronSpec`; a mistake is one sentence naming the
    field, e.g. "'24' is not an hour (0-23)"."""
    from croniter import croniter

    expr = " ".join(text.strip().lower().split())
    if expr.startswith("@"):
        if expr not in _CRON_MACROS:
            raise ConfigError(f"Bad cron expression {text!r}: use five fields or one of {', '.join(sorted(_CRON_MACROS))}.")
        return CronSpec(expr)
    parts = expr.split()
    if len(parts) != 5:
        raise ConfigError(f"Bad cron expression {text!r}: give five fields, e.g. \"0 6 * * *\" (06:00 daily).")
    for i, (part, (what, lo, hi)) in enumerate(zip(parts, _CRON_FIELDS, strict=True)):
        # croniter also takes extensions cron does not (L, #, ?), and reads a backwards range as
        # wrapping around; cron rejects both.
        if any(a.isdigit() and b.isdigit() and int(a) > int(b) for a, b in re.findall(r"(\w+)-(\w+)", part)):
            raise ConfigError(f"Bad cron expression {text!r}: the range {part!r} runs backwards.")
        alone = " ".join(p if j == i else "*" for j, p in enumerate(parts))
        words = set(re.findall(r"[a-z]+", part))
        if not _CRON_TOKEN.match(part) or not words <= _CRON_WORDS.get(i, set()) or not croniter.is_valid(alone):
            raise ConfigError(f"Bad cron expression {text!r}: {part!r} is not {what} ({lo}-{hi}).")
    if not croniter.is_valid(expr):
        raise ConfigError(f"Bad cron expression {text!r}: croniter rejects it; check each field.")
    check_fires(expr, text)
    return CronSpec(expr)


FIRE_WITHIN_YEARS = 5


def check_fires(expr: str, text: str, now: dt.datetime | None = None) -> None:
    """Refuse an expression with no matching minute in the next five years (``30 2 30 2 *``:
    30 February). croniter bounds its search by ``max_years_between_matches``."""
    from croniter import CroniterBadDateError, croniter

    try:
        croniter(expr, now or dt.datetime.now(), max_years_between_matches=FIRE_WITHIN_YEARS).get_next(dt.datetime)
    except CroniterBadDateError:
        raise ConfigError(f"Cron expression {text!r} never fires within the next {FIRE_WITHIN_YEARS} years "
                          "(a date that does not exist?); check the day and month fields.") from None


# ----------------------------------------------------------------------------- cron backend


@dataclass(frozen=True)
class Crontab:
    """Where cron entries live: a file managed directly, or the user's crontab via a command."""

    file: Path | None = None
    command: str = "crontab"

    @classmethod
    def from_env(cls, file: Path | None = None, command: str | None = None) -> Crontab:
        env_file = os.environ.get(ENV_CRONTAB_FILE)
        return cls(
            file=file or (Path(env_file) if env_file else None),
            command=command or os.environ.get(ENV_CRONTAB) or "crontab",
        )

    def _argv(self) -> list[str]:
        argv = shlex.split(self.command)
        if not argv or shutil.which(argv[0]) is None:
            raise UserError(
                f"The crontab command {self.command!r} is not installed; install cron "
                "(apt-get install cron) or use --every for a systemd timer."
            )
        return argv

    def read(self) -> list[str]:
        if self.file is not None:
            return self.file.read_text().splitlines() if self.file.is_file() else []
        res = subprocess.run([*self._argv(), "-l"], capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            if "no crontab" in (res.stderr + res.stdout).lower():
                return []
            raise UserError(f"`{self.command} -l` failed ({res.stderr.strip()[:160]}); check cron is usable.")
        return res.stdout.splitlines()

    def write(self, lines: list[str]) -> None:
        text = "\n".join(lines) + ("\n" if lines else "")
        if self.file is not None:
            from unlearnbench.reports.render import write_text_atomic

            write_text_atomic(self.file, text)
            return
        res = subprocess.run([*self._argv(), "-"], input=text, capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise UserError(f"`{self.command} -` rejected the new crontab ({res.stderr.strip()[:160]}).")

    def where(self) -> str:
        return str(self.file) if self.file is not None else f"the user crontab (`{self.command}`)"


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


def cron_line(name: str, cron: str, commands: list[list[str]], workdir: Path, logfile: Path,
              user: str | None = None, lock: Path | None = None) -> str:
    """One crontab line. ``user``: the user field that system crontabs (``/etc/cron.d/*``,
    ``/etc/crontab``) have between the schedule and the command; a user crontab has none.
    ``lock``: the run lock (default: next to ``logfile``)."""
    spec = parse_cron(cron)
    check_values(workdir, logfile, user)
    script = locked_script(name, commands, lock or lock_path(logfile.parent, name))
    command = f"cd {shlex.quote(str(workdir))} && {{ {script}; }} >> {shlex.quote(str(logfile))} 2>&1"
    who = f" {check_user(user)}" if user else ""
    # In a crontab line an unescaped % ends the command (cron turns \% back into %).
    return f"{spec.text}{who} {command.replace('%', chr(92) + '%')} {CRON_TAG}{name}"


_USER = re.compile(r"^[a-z_][a-z0-9_.-]*\$?$", re.IGNORECASE)


def check_user(user: str) -> str:
    if not _USER.match(user) or len(user) > 32:
        raise ConfigError(f"Bad cron user {user!r}: give a login name such as {default_user()!r}.")
    return user


def default_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment
        return "root" if os.geteuid() == 0 else str(os.geteuid())


def is_system_crontab(path: Path | None) -> bool:
    """``/etc/crontab`` and files in ``/etc/cron.d`` name the user on every line."""
    if path is None:
        return False
    p = Path(os.path.abspath(path))
    return p == Path("/etc/crontab") or p.parent == Path("/etc/cron.d")


def _is_ours(line: str, name: str | None) -> bool:
    if CRON_TAG not in line:
        return False
    tag = line.rsplit(CRON_TAG, 1)[1].strip()
    return name is None or tag == name


def install_cron(crontab: Crontab, name: str, line: str) -> bool:
    """Add (or replace) entry ``name``; returns True when an older entry was replaced."""
    lines = crontab.read()
    kept = [ln for ln in lines if not _is_ours(ln, name)]
    crontab.write([*kept, line])
    return len(kept) != len(lines)


def remove_cron(crontab: Crontab, name: str | None) -> list[str]:
    """Remove entry ``name`` (every unlearnbench entry when None); returns the removed lines."""
    lines = crontab.read()
    removed = [ln for ln in lines if _is_ours(ln, name)]
    if removed:
        crontab.write([ln for ln in lines if not _is_ours(ln, name)])
    return removed


def list_cron(crontab: Crontab) -> list[tuple[str, str]]:
    return [(ln.rsplit(CRON_TAG, 1)[1].strip(), ln) for ln in crontab.read() if _is_ours(ln, None)]


# ----------------------------------------------------------------------------- systemd backend


def default_unit_dir() -> Path:
    env = os.environ.get(ENV_UNIT_DIR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def unit_name(name: str) -> str:
    return f"unlearnbench-{name}"


def _systemd_quote(arg: str) -> str:
    # systemd expands %specifiers and $VARS in ExecStart; double them so arguments stay literal.
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.search(r"[\s\"'\\;]", arg) or arg == "":
        arg = '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def on_calendar(every_s: float, delay_s: float = 0.0) -> str:
    """systemd ``OnCalendar=`` for "every ``every_s``, ``delay_s`` into each period": periods that
    divide a minute, an hour or a day, or one week (from Monday 00:00); the offset counts from the
    start of each period. Calendar times keep their place across reboots and logins."""
    s, d = int(round(every_s)), int(round(delay_s))
    if s != every_s or d != delay_s or s < 1:
        raise ConfigError("--every and --delay must be whole seconds for a systemd timer; use --foreground "
                          "for shorter or fractional intervals.")
    if d >= s:
        raise ConfigError(f"--delay must be shorter than --every ({s} s): it is the offset within each period.")
    hh, mm, ss = d // 3600 % 24, d // 60 % 60, d % 60
    if s == 604800:
        return f"{_WEEKDAYS[d // 86400]} *-*-* {hh:02d}:{mm:02d}:{ss:02d}"
    if s == 86400:
        return f"*-*-* {hh:02d}:{mm:02d}:{ss:02d}"
    if 86400 % s == 0 and s % 3600 == 0:
        return f"*-*-* {hh:02d}/{s // 3600}:{mm:02d}:{ss:02d}"
    if 3600 % s == 0 and s % 60 == 0:
        return f"*-*-* *:{mm:02d}/{s // 60}:{ss:02d}"
    if 60 % s == 0:
        return f"*-*-* *:*:{ss:02d}/{s}"
    raise ConfigError(f"--every {s} s does not divide a day into whole minutes or hours (e.g. 15m, 1h, 6h, 24h, "
                      "7d); use --cron for other periods.")


def systemd_units(name: str, every_s: float, commands: list[list[str]], workdir: Path,
                  delay_s: float = 0.0, lock: Path | None = None) -> dict[str, str]:
    """The ``.service`` (oneshot: the commands in order, under the run lock) and ``.timer``
    (calendar-based, ``Persistent=true``: a run missed while the machine was off starts at the
    next boot) files. ``lock`` defaults to one in ``workdir``."""
    calendar = on_calendar(every_s, delay_s)
    check_values(workdir)
    script = locked_script(name, commands, lock or lock_path(workdir, name))
    unit = unit_name(name)
    service = "\n".join([
        f"{MARKER} (name={name})",
        "[Unit]",
        f"Description=unlearnbench scheduled study/report ({name})",
        "",
        "[Service]",
        "Type=oneshot",
        f"WorkingDirectory={_systemd_quote(str(workdir))}",
        f"ExecStart=/bin/sh -c {_systemd_quote(script)}",
        "",
    ])
    timer = "\n".join([
        f"{MARKER} (name={name})",
        "[Unit]",
        f"Description=Run {unit}.service at {calendar}",
        "",
        "[Timer]",
        f"OnCalendar={calendar}",
        "Persistent=true",
        f"Unit={unit}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])
    return {f"{unit}.service": service, f"{unit}.timer": timer}


def _ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(MARKER)
    except OSError:
        return False


def install_systemd(unit_dir: Path, files: dict[str, str]) -> list[Path]:
    from unlearnbench.reports.render import write_text_atomic

    written = []
    for fname, text in files.items():
        path = unit_dir / fname
        if path.exists() and not _ours(path):
            raise UserError(f"{path} exists and was not written by unlearnbench; pick another --name.")
        write_text_atomic(path, text)
        written.append(path)
    return written


def our_units(unit_dir: Path, name: str | None) -> list[Path]:
    if not unit_dir.is_dir():
        return []
    pattern = f"{unit_name(name)}.*" if name else "unlearnbench-*.*"
    return sorted(p for p in unit_dir.glob(pattern) if p.suffix in (".service", ".timer") and _ours(p))


def remove_systemd(unit_dir: Path, name: str | None) -> list[Path]:
    removed = our_units(unit_dir, name)
    for p in removed:
        p.unlink()
    return removed


def list_systemd(unit_dir: Path) -> list[tuple[str, Path]]:
    return [(p.stem[len("unlearnbench-") :], p) for p in our_units(unit_dir, None) if p.suffix == ".timer"]


def systemctl(*args: str) -> bool:
    """Run ``systemctl --user ARGS``; False (and a warning) when systemd is not usable here."""
    exe = shutil.which("systemctl")
    if exe is None:
        return False
    res = subprocess.run([exe, "--user", *args], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        log.warning("systemctl --user %s failed: %s", " ".join(args), res.stderr.strip()[:200])
        return False
    return True


def next_runs(*, cron: str | None = None, every_s: float | None = None, delay_s: float = 0.0,
              now: dt.datetime | None = None, n: int = 3, calendar: bool = True) -> list[dt.datetime]:
    """When the schedule runs next: cron's next matching minutes, or for ``--every`` the next
    times of its calendar (periods counted from local midnight, Monday for a week); with
    ``calendar=False`` (the foreground loop) ``delay_s`` from now and then every ``every_s``."""
    now = now or dt.datetime.now().astimezone()
    if cron is not None:
        return parse_cron(cron).next_times(now, n)
    if every_s is None:
        raise ConfigError("Give exactly one of --every or --cron.")
    if not calendar:
        return [now + dt.timedelta(seconds=delay_s + i * every_s) for i in range(n)]
    on_calendar(every_s, delay_s)  # the same periods as the timer
    base = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if every_s == 604800:
        base -= dt.timedelta(days=base.weekday())
    first = base + dt.timedelta(seconds=delay_s)
    k = max(0, int((now - first).total_seconds() // every_s) + 1) if first <= now else 0
    return [first + dt.timedelta(seconds=(k + i) * every_s) for i in range(n)]


def tool_status(*names: str) -> list[tuple[str, str | None]]:
    """(program, path or None) for each program this schedule needs."""
    return [(n, shutil.which(n)) for n in names]


# ----------------------------------------------------------------------------- foreground


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
