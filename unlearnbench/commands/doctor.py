"""``unlearnbench doctor``: is this environment ready? One screen, one line per check, each missing
piece with the exact line that installs it."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata

import typer

from unlearnbench.commands._common import TrackingOpt, app, console, handle_errors


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" (works, but worth knowing), "missing" (a required piece), "optional"
    detail: str


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch() -> list[Check]:
    start = time.perf_counter()
    try:
        import torch
    except ImportError:
        return [Check("torch", "missing", "not installed: pip install torch torchvision "
                      "(https://pytorch.org/get-started for the CUDA build)")]
    took = time.perf_counter() - start
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        device = f"CUDA {torch.version.cuda}: {names} (--device auto uses cuda)"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "Apple MPS available; --device auto uses the CPU (pass --device mps)"
    else:
        device = "CPU only (--device auto uses the CPU)"
    checks = [Check("torch", "ok", f"{torch.__version__}, imported in {took:.1f} s; {device}")]
    tv = _version("torchvision")
    checks.append(Check("torchvision", "ok" if tv else "missing", tv or "not installed: pip install torchvision"))
    return checks


def _threads() -> Check:
    import os

    from unlearnbench.core import cpus

    usable = cpus.usable_cpus()
    try:
        import torch

        used = torch.get_num_threads()
    except ImportError:
        used = usable
    source = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}" if "OMP_NUM_THREADS" in os.environ else "default"
    detail = f"{cpus.describe()}; commands use {used} intra-op thread(s) ({source}; --threads overrides)"
    if used > usable:
        return Check("threads", "warn", f"{detail}: more threads than usable CPUs oversubscribe them")
    return Check("threads", "ok", detail)


def _packages() -> list[Check]:
    from unlearnbench.core.requirements import INSTALL, available, install_line

    out = []
    for module, required in (("torchattacks", True), ("safetensors", True), ("pyautoattack", False),
                             ("ray", False), ("psutil", False), ("timm", False)):
        version = _version(module) if available(module) else None
        if version:
            out.append(Check(module, "ok", version))
        else:
            out.append(Check(module, "missing" if required else "optional",
                             f"not installed, needed for {INSTALL[module][0]}: {install_line(module)}"))
    return out


def _store(tracking_uri: str | None) -> list[Check]:
    from unlearnbench.core.errors import UserError
    from unlearnbench.eval.tracking import check_reachable, resolve_uri

    mlflow_version = _version("mlflow")
    if mlflow_version is None:
        return [Check("mlflow", "missing", "not installed: pip install 'mlflow>=3.7,<4'")]
    uri = resolve_uri(tracking_uri)
    try:
        check_reachable(uri, timeout=3.0)
    except UserError as exc:
        return [Check("mlflow", "ok", mlflow_version), Check("MLflow store", "missing", str(exc))]
    return [Check("mlflow", "ok", mlflow_version), Check("MLflow store", "ok", f"{uri} (usable)")]


MARK = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "missing": ("MISSING", "bold red"), "optional": ("-", "dim")}


@app.command("doctor")
@handle_errors
def doctor(tracking_uri: str | None = TrackingOpt) -> None:
    """Check the environment in one screen: torch and its device, torchattacks, the MLflow store,
    threads and optional extras; each missing piece with the line that installs it. Exit 1 when a
    required piece is missing."""
    from rich.markup import escape

    import unlearnbench

    checks = [Check("unlearnbench", "ok", f"{unlearnbench.__version__} on Python {platform.python_version()} "
                    f"({sys.executable})")]
    checks += _torch()
    checks.append(_threads())
    checks += _packages()
    checks += _store(tracking_uri)
    width = max(len(c.name) for c in checks)
    for c in checks:
        label, style = MARK[c.status]
        console.print(f"[{style}]{label:>7s}[/] {c.name:<{width}}  {escape(c.detail)}", highlight=False, soft_wrap=True)
    missing = [c.name for c in checks if c.status == "missing"]
    if missing:
        console.print(f"Not ready: {', '.join(missing)} (see above).", highlight=False)
        raise typer.Exit(1)
    console.print("Ready.", highlight=False)
