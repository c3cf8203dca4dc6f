"""``unlearnbench doctor``: is this environment ready? One screen, one line per check, each missing
piece with the exact line that installs it."""

from __future__ import annotations

import typer

from unlearnbench.commands._common import TrackingOpt, app, console, handle_errors

MARK = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "missing": ("MISSING", "bold red"), "optional": ("-", "dim")}


@app.command("doctor")
@handle_errors
def doctor(tracking_uri: str | None = TrackingOpt) -> None:
    """Check the environment in one screen: torch and its device, torchattacks, the MLflow store,
    threads and optional extras; each missing piece with the line that installs it. Exit 1 when a
    required piece is missing."""
    from rich.markup import escape

    from unlearnbench import api

    checks = api.doctor_checks(tracking_uri)
    width = max(len(c.name) for c in checks)
    for c in checks:
        label, style = MARK[c.status]
        console.print(f"[{style}]{label:>7s}[/] {c.name:<{width}}  {escape(c.detail)}", highlight=False, soft_wrap=True)
    missing = [c.name for c in checks if c.status == "missing"]
    if missing:
        console.print(f"Not ready: {', '.join(missing)} (see above).", highlight=False)
        raise typer.Exit(1)
    console.print("Ready.", highlight=False)
