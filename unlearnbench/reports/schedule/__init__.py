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

from pathlib import Path

from unlearnbench.reports.schedule.cron import (
    Crontab,
    check_user,
    cron_line,
    default_user,
    install_cron,
    is_system_crontab,
    list_cron,
    remove_cron,
)
from unlearnbench.reports.schedule.systemd import (
    default_unit_dir,
    install_systemd,
    list_systemd,
    our_units,
    remove_systemd,
    systemctl,
    systemd_units,
    unit_name,
)
from unlearnbench.reports.schedule.timing import (
    FIRE_WITHIN_YEARS,
    CronSpec,
    check_fires,
    next_runs,
    on_calendar,
    parse_cron,
    parse_duration,
)
from unlearnbench.reports.schedule.work import (
    CRON_TAG,
    ENV_CRONTAB,
    ENV_CRONTAB_FILE,
    ENV_UNIT_DIR,
    LOCK_BUSY,
    MARKER,
    absolute_uri,
    check_name,
    check_values,
    cli_prefix,
    job_commands,
    lock_path,
    locked_script,
    run_foreground,
    tool_status,
)

__all__ = [
    "CRON_TAG", "ENV_CRONTAB", "ENV_CRONTAB_FILE", "ENV_UNIT_DIR", "FIRE_WITHIN_YEARS", "LOCK_BUSY", "MARKER",
    "CronSpec", "Crontab", "Path", "absolute_uri", "check_fires", "check_name", "check_user", "check_values",
    "cli_prefix", "cron_line", "default_unit_dir", "default_user", "install_cron", "install_systemd",
    "is_system_crontab", "job_commands", "list_cron", "list_systemd", "lock_path", "locked_script", "next_runs",
    "on_calendar", "our_units", "parse_cron", "parse_duration", "remove_cron", "remove_systemd", "run_foreground",
    "systemctl", "systemd_units", "tool_status", "unit_name",
]
