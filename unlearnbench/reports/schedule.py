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
    return [sys.executable, "-m", "unlearnbench.cli"]


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


_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_CRON_NAMES = {
    3: {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    4: {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
}
_CRON_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


@dataclass(frozen=True)
class CronSpec:
    """A parsed five-field cron expression (Vixie semantics: when both day fields are
    restricted, a day matches if either does)."""

    text: str
    fields: tuple[frozenset[int], ...]
    dom_any: bool
    dow_any: bool

    def matches(self, t: dt.datetime) -> bool:
        minute, hour, dom, month, dow = self.fields
        if t.minute not in minute or t.hour not in hour or t.month not in month:
            return False
        wd = (t.weekday() + 1) % 7  # cron: 0 = Sunday
        day_dom, day_dow = t.day in dom, wd in dow
        if self.dom_any or self.dow_any:
            return day_dom and day_dow
        return day_dom or day_dow

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after ``t`` (searched minute by minute, ≤ 4 years)."""
        cur = t.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        for _ in range(4 * 366 * 24 * 60):
            if self.matches(cur):
                return cur
            cur += dt.timedelta(minutes=1)
        raise ConfigError(f"Cron expression {self.text!r} never matches a date.")


def parse_cron(text: str) -> CronSpec:
    expr = _CRON_MACROS.get(text.strip().lower(), text.strip())
    parts = expr.split()
    if len(parts) != 5:
        raise ConfigError(f"Bad cron expression {text!r}: give five fields, e.g. \"0 6 * * *\" (06:00 daily).")
    fields = []
    for i, (part, (what, lo, hi)) in enumerate(zip(parts, _CRON_FIELDS, strict=True)):
        values: set[int] = set()
        for item in part.split(","):
            values |= _cron_item(item.lower(), i, what, lo, hi, text)
        if i == 4 and 7 in values:  # both 0 and 7 mean Sunday
            values = (values - {7}) | {0}
        fields.append(frozenset(values))
    return CronSpec(text, tuple(fields), dom_any=parts[2] == "*", dow_any=parts[4] == "*")


def _cron_value(token: str, i: int, what: str, lo: int, hi: int, text: str) -> int:
    token = str(_CRON_NAMES.get(i, {}).get(token, token))
    if not token.isdigit() or not lo <= int(token) <= hi:
        raise ConfigError(f"Bad cron expression {text!r}: {token!r} is not a {what} ({lo}-{hi}).")
    return int(token)


def _cron_item(item: str, i: int, what: str, lo: int, hi: int, text: str) -> set[int]:
    base, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) < 1:
            raise ConfigError(f"Bad cron expression {text!r}: step {step_text!r} must be a positive number.")
        step = int(step_text)
    if base == "*":
        start, end = lo, hi if i != 4 else 6
    elif "-" in base:
        a, b = base.split("-", 1)
        start, end = _cron_value(a, i, what, lo, hi, text), _cron_value(b, i, what, lo, hi, text)
        if start > end:
            raise ConfigError(f"Bad cron expression {text!r}: range {base!r} runs backwards.")
    else:
        start = _cron_value(base, i, what, lo, hi, text)
        end = hi if step_text else start
    return set(range(start, end + 1, step))


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


def cron_line(name: str, cron: str, commands: list[list[str]], workdir: Path, logfile: Path) -> str:
    spec = parse_cron(cron)
    body = "; ".join(_cron_quote(c) for c in commands)
    log_q = shlex.quote(str(logfile)).replace("%", "\\%")
    expr = " ".join(spec.text.split()) if not spec.text.startswith("@") else spec.text
    return f"{expr} cd {_cron_quote([str(workdir)])} && {{ {body}; }} >> {log_q} 2>&1 {CRON_TAG}{name}"


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


def systemd_units(name: str, every_s: float, commands: list[list[str]], workdir: Path) -> dict[str, str]:
    """The ``.service`` (oneshot, the commands in order) and ``.timer`` (every ``every_s``) files."""
    seconds = int(round(every_s))
    if seconds < 1:
        raise ConfigError("A systemd timer needs an interval of at least 1s; use --foreground for shorter ones.")
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
        f"OnActiveSec={seconds}s",
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


# ----------------------------------------------------------------------------- foreground


def run_foreground(
    commands: Sequence[Sequence[str]],
    *,
    every_s: float | None = None,
    cron: str | None = None,
    max_runs: int | None = None,
    workdir: Path | None = None,
    on_run: Callable[[int, list[int]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
) -> int:
    """Run ``commands`` on a schedule in this process until ``max_runs`` runs (forever if None).

    With ``every_s`` the first run starts at once and later runs keep a fixed rate (a run that
    overruns skips the missed slots instead of piling up); with ``cron`` each run waits for the
    next matching minute. A failing command is logged and the schedule goes on. Returns the
    number of runs.
    """
    if (every_s is None) == (cron is None):
        raise ConfigError("Give exactly one of --every or --cron.")
    spec = parse_cron(cron) if cron else None
    runs = 0
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
