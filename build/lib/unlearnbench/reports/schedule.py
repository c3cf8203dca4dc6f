"""Periodic studies and reports: a cron entry, a systemd user timer, or an in-process loop.

Every entry this module writes carries its name, so ``remove`` deletes exactly its own entries:

- cron: one line ending in ``# unlearnbench-schedule:<name>``, written through the ``crontab``
  command (or straight into a crontab file when one is given, e.g. for tests or /etc/cron.d);
- systemd: ``unlearnbench-<name>.service`` + ``.timer`` in the user unit folder, each starting
  with the ``MARKER`` comment; files without it are never touched.

The scheduled work is a list of command lines (``unlearnbench benchmark`` and/or ``report``) run
one after the other; this module never imports the CLI, it only builds and runs command lines.
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
    return CronSpec(expr)


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


def _cron_quote(cmd: list[str]) -> str:
    # In a crontab line an unescaped % ends the command; quote for /bin/sh first.
    return " ".join(shlex.quote(a) for a in cmd).replace("%", "\\%")


def cron_line(name: str, cron: str, commands: list[list[str]], workdir: Path, logfile: Path,
              user: str | None = None) -> str:
    """One crontab line. ``user``: the user field that system crontabs (``/etc/cron.d/*``,
    ``/etc/crontab``) have between the schedule and the command; a user crontab has none."""
    spec = parse_cron(cron)
    body = "; ".join(_cron_quote(c) for c in commands)
    log_q = shlex.quote(str(logfile)).replace("%", "\\%")
    who = f" {check_user(user)}" if user else ""
    return f"{spec.text}{who} cd {_cron_quote([str(workdir)])} && {{ {body}; }} >> {log_q} 2>&1 {CRON_TAG}{name}"


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


def systemd_units(name: str, every_s: float, commands: list[list[str]], workdir: Path,
                  delay_s: float = 0.0) -> dict[str, str]:
    """The ``.service`` (oneshot, the commands in order) and ``.timer`` (every ``every_s``) files.
    The first run starts when the timer is activated, or ``delay_s`` after it."""
    seconds = int(round(every_s))
    if seconds < 1:
        raise ConfigError("A systemd timer needs an interval of at least 1s; use --foreground for shorter ones.")
    first = max(1, int(round(delay_s)))  # 1s: right after activation
    unit = unit_name(name)
    # A failing study must not stop the report of whatever did finish: '-' ignores its exit code.
    execs = [f"ExecStart={'-' if i < len(commands) - 1 else ''}{' '.join(_systemd_quote(a) for a in cmd)}"
             for i, cmd in enumerate(commands)]
    service = "\n".join([
        f"{MARKER} (name={name})",
        "[Unit]",
        f"Description=unlearnbench scheduled study/report ({name})",
        "",
        "[Service]",
        "Type=oneshot",
        f"WorkingDirectory={_systemd_quote(str(workdir))}",
        *execs,
        "",
    ])
    timer = "\n".join([
        f"{MARKER} (name={name})",
        "[Unit]",
        f"Description=Run {unit}.service every {seconds}s",
        "",
        "[Timer]",
        f"OnActiveSec={first}s",
        f"OnUnitActiveSec={seconds}s",
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
              now: dt.datetime | None = None, n: int = 3) -> list[dt.datetime]:
    """When the schedule would run next: cron's next matching minutes, or for ``--every`` the
    activation time (plus ``delay_s``) and then every ``every_s``."""
    now = now or dt.datetime.now().astimezone()
    if cron is not None:
        return parse_cron(cron).next_times(now, n)
    if every_s is None:
        raise ConfigError("Give exactly one of --every or --cron.")
    return [now + dt.timedelta(seconds=delay_s + i * every_s) for i in range(n)]


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
    on_run: Callable[[int, list[int]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
) -> int:
    """Run ``commands`` on a schedule in this process until ``max_runs`` runs (forever if None).

    With ``every_s`` the first run starts at once (after ``delay_s``) and later runs keep a fixed
    rate (a run that overruns skips the missed slots instead of piling up); with ``cron`` each run
    waits for the next matching minute. A failing command is logged and the schedule goes on. Returns the
    number of runs.
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
        codes = []
        for cmd in commands:
            res = subprocess.run(list(cmd), cwd=workdir)
            if res.returncode != 0:
                log.warning("Scheduled command exited with %d: %s", res.returncode, " ".join(cmd))
            codes.append(res.returncode)
        runs += 1
        if on_run is not None:
            on_run(runs, codes)
    return runs
