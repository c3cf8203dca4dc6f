"""The cron backend: one tagged line per schedule in the user's crontab (through the ``crontab``
command) or in a crontab file (``/etc/cron.d`` lines name their user)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from unlearnbench.core.errors import ConfigError, UserError
from unlearnbench.reports.schedule.timing import parse_cron
from unlearnbench.reports.schedule.work import (
    CRON_TAG,
    ENV_CRONTAB,
    ENV_CRONTAB_FILE,
    check_values,
    lock_path,
    locked_script,
)


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
            from unlearnbench.core.boundary import read_text

            return read_text(self.file, "Crontab file").splitlines() if self.file.is_file() else []
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
