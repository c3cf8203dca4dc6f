"""The systemd backend: a oneshot ``.service`` and a calendar ``.timer`` (``Persistent=true``) per
schedule in the user unit folder, each marked as ours."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from unlearnbench.core.errors import UserError
from unlearnbench.reports.schedule.timing import on_calendar
from unlearnbench.reports.schedule.work import ENV_UNIT_DIR, MARKER, check_values, lock_path, locked_script

log = logging.getLogger(__name__)


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
