"""Where a result came from: git sha, package versions, device, seed, timestamps."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

import unlearnbench

_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "mlflow", "torchattacks")


def git_sha() -> str:
    """The commit of the unlearnbench checkout (or of the working directory's repo), else 'unknown'."""
    for where in (Path(unlearnbench.__file__).resolve().parent.parent, Path.cwd()):
        try:
            out = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0:
            return out.stdout.strip()
    return "unknown"


def versions() -> dict[str, str]:
    out = {"unlearnbench": unlearnbench.__version__, "python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def device_name(device: torch.device | str) -> str:
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{platform.processor() or platform.machine()}"


def _cpu_bf16() -> bool:
    from unlearnbench.core.train import cpu_has_bf16

    return cpu_has_bf16()


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def collect(device: torch.device | str, seed: int | None = None) -> dict:
    return {
        "git_sha": git_sha(),
        "versions": versions(),
        "device": device_name(device),
        "cpu_bf16": _cpu_bf16(),  # whether bf16 autocast could run on this CPU (the report's dtype)
        "seed": seed,
        "threads": torch.get_num_threads(),  # intra-op threads: they change CPU results (docs/studies.md)
        "host": platform.node(),
        "created": now(),
    }
