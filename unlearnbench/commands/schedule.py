"""``unlearnbench schedule``: run a study and/or report periodically (cron, systemd, foreground)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from unlearnbench.commands._common import TrackingOpt, app, check_outputs, console, handle_errors, setup_output


@app.command()
@handle_errors
def schedule(
    cron: str | None = typer.Option(None, "--cron", help='Cron expression, e.g. "0 6 * * *" (06:00 daily): installs a cron entry.'),
    every: str | None = typer.Option(None, "--every", help="Period such as 24h, 6h or 30m (dividing a day) or 7d: installs a calendar-based systemd user timer that catches up missed runs."),
    delay: str | None = typer.Option(None, "--delay", help="With --every: the offset of each run into its period, counted from midnight (Monday for 7d), e.g. --every 24h --delay 6h runs at 06:00."),
    foreground: bool = typer.Option(False, "--foreground", help="Run here on the --cron/--every schedule instead of installing."),
    max_runs: int | None = typer.Option(None, "--max-runs", min=1, help="With --foreground: stop after this many runs."),
    study: str | None = typer.Option(None, "--study", help="Study YAML (or shipped example) to run each time, afresh."),
    report: bool = typer.Option(True, "--report/--no-report", help="Render the experiment's report after each run."),
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="MLflow experiment (default: the study's)."),
    out: Path = typer.Option(Path("reports"), "--out", "-o", help="Report folder."),
    name: str = typer.Option("default", "--name", help="Name of the schedule (several can coexist)."),
    remove: bool = typer.Option(False, "--remove", help="Remove the schedule --name (cron entry and systemd units)."),
    remove_all: bool = typer.Option(False, "--remove-all", help="Remove every unlearnbench schedule."),
    list_: bool = typer.Option(False, "--list", help="List installed unlearnbench schedules."),
    workdir: Path = typer.Option(Path("."), "--workdir", help="Folder the scheduled commands run in."),
    crontab_file: Path | None = typer.Option(
        None, "--crontab-file", envvar="UNLEARNBENCH_CRONTAB_FILE",
        help="Manage this crontab file directly instead of calling `crontab`; in /etc/cron.d (e.g. /etc/cron.d/unlearnbench) each line names the user it runs as.",
    ),
    cron_user: str | None = typer.Option(
        None, "--cron-user", help="User field of system crontab lines (default: you, for /etc/cron.d and /etc/crontab files).",
    ),
    crontab_command: str | None = typer.Option(
        None, "--crontab-command", envvar="UNLEARNBENCH_CRONTAB", help="The crontab program (default: crontab)."
    ),
    unit_dir: Path | None = typer.Option(
        None, "--unit-dir", envvar="UNLEARNBENCH_SYSTEMD_DIR",
        help="systemd user-unit folder (default ~/.config/systemd/user; when given, units are only written).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be installed; change nothing."),
    tracking_uri: str | None = TrackingOpt,
) -> None:
    """Make studies and reports periodic: a cron entry (--cron), a systemd user timer (--every),
    or an in-process scheduler (--foreground). --remove and --list manage installed schedules."""
    setup_output(True)
    from unlearnbench.api import ConfigError
    from unlearnbench.core.boundary import check_value
    from unlearnbench.reports import schedule as sched

    # Nothing unchecked reaches a cron line or a unit file: no value may hold a newline or any
    # other control character (one would start a second cron line of the user's choosing).
    for option, value in (("--cron", cron), ("--every", every), ("--delay", delay), ("--study", study),
                          ("--experiment", experiment), ("--out", out), ("--name", name), ("--workdir", workdir),
                          ("--crontab-file", crontab_file), ("--cron-user", cron_user),
                          ("--crontab-command", crontab_command), ("--unit-dir", unit_dir),
                          ("--tracking-uri", tracking_uri)):
        if value is not None:
            check_value(str(value), option)
    sched.check_name(name)
    crontab = sched.Crontab.from_env(crontab_file, crontab_command)
    units = unit_dir or sched.default_unit_dir()
    custom_units = unit_dir is not None or bool(os.environ.get(sched.ENV_UNIT_DIR))

    if list_:
        _list(sched, crontab, units)
        return
    if remove or remove_all:
        _remove(sched, crontab, units, None if remove_all else name, crontab_given=crontab_file is not None
                or crontab_command is not None, custom_units=custom_units, dry_run=dry_run)
        return

    if (cron is None) == (every is None):
        raise ConfigError('Give exactly one of --cron "0 6 * * *" (cron entry) or --every 24h (systemd timer).')
    if max_runs is not None and not foreground:
        raise ConfigError("--max-runs only applies with --foreground.")
    every_s = sched.parse_duration(every) if every else None
    if delay is not None and every is None:
        raise ConfigError("--delay only applies with --every (a cron expression says when it runs).")
    delay_s = sched.parse_duration(delay) if delay else 0.0
    if cron:
        sched.parse_cron(cron)
    user = None
    if cron and (cron_user is not None or sched.is_system_crontab(crontab.file)):
        if crontab.file is None:
            raise ConfigError("--cron-user is for system crontab files; pass --crontab-file /etc/cron.d/NAME too.")
        user = sched.check_user(cron_user or sched.default_user())
    workdir = workdir.resolve()
    check_value(str(workdir), f"The working folder {str(workdir)!r}")
    if not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} is not a folder.")
    if study is not None:
        from unlearnbench.api import load_study

        cfg = load_study(study)  # a broken study fails now, not at 6 a.m.
        experiment = check_value(experiment or cfg.experiment_name, "The study's experiment name")
        # A file is pinned to its absolute path (the scheduler runs elsewhere); a shipped name stays.
        study = str(Path(study).resolve()) if Path(study).is_file() else study
    commands = sched.job_commands(study=study, report=report, experiment=experiment, out=out,
                                  tracking_uri=tracking_uri, workdir=workdir)
    out_dir = out if out.is_absolute() else workdir / out
    lock = sched.lock_path(out_dir, name)
    if foreground:
        if dry_run:
            for c in commands:
                console.print(" ".join(c), highlight=False, soft_wrap=True)
            _print_next_runs(sched, cron, every_s, delay_s, calendar=False)
            return
        what = f"cron {cron!r}" if cron else f"every {every}"
        console.print(f"Running {len(commands)} command(s) {what} in the foreground; Ctrl-C stops.")
        runs = sched.run_foreground(
            commands, every_s=every_s, cron=cron, max_runs=max_runs, delay_s=delay_s, workdir=workdir,
            lock=_lock_folder(out_dir, lock),
            on_run=lambda n, codes: console.print(f"run {n} done (exit codes {codes})"),
        )
        console.print(f"Stopped after {runs} run(s).")
        return

    if cron:
        logfile = out_dir / f"schedule-{name}.log"
        line = sched.cron_line(name, cron, commands, workdir, logfile, user=user, lock=lock)
        if dry_run:
            console.print(line, highlight=False, soft_wrap=True)
            _print_next_runs(sched, cron, None, 0.0)
            if crontab.file is None:
                _check_tools(sched, crontab.command.split()[0] if crontab.command.split() else "crontab",
                             hint="install cron (apt-get install cron) or pass --crontab-file")
            else:
                console.print(f"Would write {crontab.file}" + (f" (lines run as user {user})" if user else "") + ".",
                              highlight=False)
            return
        check_outputs(("--out", logfile.parent, True), ("--crontab-file", crontab.file, False))
        _need_flock()
        logfile.parent.mkdir(parents=True, exist_ok=True)
        replaced = sched.install_cron(crontab, name, line)
        console.print(f"{'Replaced' if replaced else 'Installed'} cron entry {name!r} in {crontab.where()}:",
                      highlight=False)
        console.print(f"  {line}", highlight=False, soft_wrap=True)
        console.print(f"Output goes to {logfile}. Remove it with: "
                      + _removal_hint(name, crontab_file=crontab_file, crontab_command=crontab_command),
                      highlight=False, soft_wrap=True)
        return

    files = sched.systemd_units(name, every_s, commands, workdir, delay_s=delay_s, lock=lock)
    if dry_run:
        for fname, text in files.items():
            console.print(f"# {units / fname}\n{text}", highlight=False, soft_wrap=True)
        _print_next_runs(sched, None, every_s, delay_s)
        if not custom_units:
            _check_tools(sched, "systemctl", hint="this machine has no systemd; use --cron or --foreground")
        return
    check_outputs(("--unit-dir", units, True), ("--out", out_dir, True))
    _need_flock()
    out_dir.mkdir(parents=True, exist_ok=True)  # the run lock lives there
    written = sched.install_systemd(units, files)
    timer = f"{sched.unit_name(name)}.timer"
    console.print("Wrote " + ", ".join(str(p) for p in written), highlight=False, soft_wrap=True)
    if not custom_units and sched.systemctl("daemon-reload") and sched.systemctl("enable", "--now", timer):
        console.print(f"Enabled {timer}; logs: journalctl --user -u {sched.unit_name(name)}.service", highlight=False)
    else:
        console.print(f"Activate it with: systemctl --user daemon-reload && systemctl --user enable --now {timer}",
                      highlight=False, soft_wrap=True)
    console.print("Remove it with: " + _removal_hint(name, unit_dir=unit_dir), highlight=False, soft_wrap=True)


def _removal_hint(name: str, *, crontab_file: Path | None = None, crontab_command: str | None = None,
                  unit_dir: Path | None = None) -> str:
    """The exact command that removes this schedule: the same crontab file, program or unit
    folder as the install (absolute, so it works from any folder)."""
    import shlex

    args = ["unlearnbench", "schedule", "--remove", "--name", name]
    if crontab_file is not None:
        args += ["--crontab-file", str(crontab_file.resolve())]
    if crontab_command is not None:
        args += ["--crontab-command", crontab_command]
    if unit_dir is not None:
        args += ["--unit-dir", str(unit_dir.resolve())]
    return shlex.join(args)


def _need_flock() -> None:
    import shutil

    from unlearnbench.api import UserError

    if shutil.which("flock") is None:
        raise UserError("flock (util-linux) is not installed; scheduled runs need it so two never overlap "
                        "(apt-get install util-linux), or use --foreground.")


def _lock_folder(out_dir: Path, lock: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    return lock


def _print_next_runs(sched, cron: str | None, every_s: float | None, delay_s: float, calendar: bool = True) -> None:
    times = sched.next_runs(cron=cron, every_s=every_s, delay_s=delay_s, calendar=calendar)
    when = ", ".join(t.strftime("%Y-%m-%d %H:%M:%S %Z").strip() for t in times)
    console.print(f"Next runs: {when}", highlight=False, soft_wrap=True)


def _check_tools(sched, program: str, *, hint: str) -> None:
    for name, path in sched.tool_status(program):
        if path:
            console.print(f"Check: {name} found at {path}.", highlight=False)
        else:
            console.print(f"[yellow]Check: {name} is not installed here[/]; installing would fail ({hint}).",
                          highlight=False, soft_wrap=True)


def _list(sched, crontab, units: Path) -> None:
    found = False
    try:
        for name, line in sched.list_cron(crontab):
            console.print(f"cron     {name}: {line}", highlight=False, soft_wrap=True)
            found = True
    except Exception as exc:  # no cron here is not an error when listing
        console.print(f"(cron not readable: {exc})", highlight=False)
    for name, path in sched.list_systemd(units):
        console.print(f"systemd  {name}: {path}", highlight=False)
        found = True
    if not found:
        console.print("No unlearnbench schedule installed.")


def _remove(sched, crontab, units: Path, name: str | None, *, crontab_given: bool, custom_units: bool,
            dry_run: bool) -> None:
    from unlearnbench.api import UserError

    which = f"schedule {name!r}" if name else "every unlearnbench schedule"
    removed_any = False
    try:
        lines = [ln for n, ln in sched.list_cron(crontab) if name is None or n == name]
        if lines and not dry_run:
            sched.remove_cron(crontab, name)
        for ln in lines:
            console.print(f"{'Would remove' if dry_run else 'Removed'} cron entry: {ln}", highlight=False, soft_wrap=True)
        removed_any |= bool(lines)
    except UserError:
        if crontab_given:
            raise  # the user pointed at a crontab: failing to read it is an error
    paths = sched.our_units(units, name)
    if paths and not dry_run:
        if not custom_units:
            for p in paths:
                if p.suffix == ".timer":
                    sched.systemctl("disable", "--now", p.name)
        sched.remove_systemd(units, name)
        if not custom_units:
            sched.systemctl("daemon-reload")
    for p in paths:
        console.print(f"{'Would remove' if dry_run else 'Removed'} {p}", highlight=False)
    removed_any |= bool(paths)
    if not removed_any:
        console.print(f"No installed entry for {which}.")
