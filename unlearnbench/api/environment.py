"""The environment: what ``ls``, ``doctor``, ``ui`` and ``shadow info`` show, as data the CLI prints.

Torch-free at import, and ``list_registries`` stays torch-free when a registry snapshot of this
exact code exists (``api._listing``): ``unlearnbench ls`` answers in a fraction of a second.
"""

from __future__ import annotations

import errno
import platform
import socket
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from unlearnbench.api._listing import LISTABLE, listing, registry
from unlearnbench.core.errors import UnknownNameError, UserError

__all__ = ["LISTABLE", "Check", "describe_entry", "doctor_checks", "list_registries", "shadow_pool", "ui_command"]


# ----------------------------------------------------------------------------- ls


def _check_kind(kind: str) -> None:
    if kind != "all" and kind not in LISTABLE:
        raise UnknownNameError(f"Unknown list {kind!r}; choose all or one of: {', '.join(LISTABLE)}.")


def list_registries(kind: str = "all") -> dict[str, list[dict[str, Any]]]:
    """The rows (``name``, ``summary`` and each entry's info) of one registry (``kind``: datasets,
    models, methods, attacks, metrics, presets, recipes) or of all; an unknown kind is one sentence."""
    _check_kind(kind)
    return listing(list(LISTABLE) if kind == "all" else [kind])


def describe_entry(kind: str, name: str) -> dict[str, Any]:
    """One registry entry in full (``ls KIND NAME``): its info and one row per config key with
    type, default and meaning (see ``api._describe``)."""
    from unlearnbench.api._describe import describe

    _check_kind(kind)
    if kind == "all":
        raise UnknownNameError(f"Name the list {name!r} belongs to, e.g. unlearnbench ls methods {name}.")
    reg = registry(kind)
    if reg is None:
        raise UnknownNameError(f"The {kind} registry is not installed here.")
    return describe(kind, reg.entry(name))


# ----------------------------------------------------------------------------- doctor


@dataclass(frozen=True)
class Check:
    """One line of ``unlearnbench doctor``."""

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


def doctor_checks(tracking_uri: str | None = None) -> list[Check]:
    """Is this environment ready? One ``Check`` per piece: unlearnbench and Python, torch and its
    device, threads, the attack and optional packages, MLflow and its store; each missing piece
    with the line that installs it."""
    import unlearnbench

    checks = [Check("unlearnbench", "ok", f"{unlearnbench.__version__} on Python {platform.python_version()} "
                    f"({sys.executable})")]
    checks += _torch()
    checks.append(_threads())
    checks += _packages()
    checks += _store(tracking_uri)
    return checks


# ----------------------------------------------------------------------------- ui and shadow pools


def _port_free(host: str, port: int) -> bool:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except (socket.gaierror, UnicodeError):
        raise UserError(f"--host {host!r} is not an address or a name this machine can resolve; use 127.0.0.1.") from None
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UserError(f"--host {host} is not an address of this machine; use 127.0.0.1 or 0.0.0.0.") from None
            return False
    return True


def ui_command(tracking_uri: str | None = None, *, host: str = "127.0.0.1", port: int = 5000,
               workers: int = 1) -> tuple[list[str], str]:
    """The command line that starts the MLflow UI on the tracking store the other commands log to,
    and the store's URI; every input checked first (a store that is a server already, an unusable
    store, a port out of range or in use, an unknown host, fewer than one worker)."""
    from unlearnbench.eval import tracking

    uri = tracking.resolve_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise UserError(f"{uri} is already a tracking server; open it in a browser instead of starting a UI.")
    tracking.check_reachable(uri)
    if not 0 < port < 65536:
        raise UserError(f"--port {port} is not a valid port; use 1-65535.")
    if not _port_free(host, port):
        raise UserError(f"Port {port} on {host} is in use; pass another --port.")
    if workers < 1:
        raise UserError(f"--workers {workers} must be at least 1.")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", str(workers)]
    root = tracking.artifact_root(uri)
    if root is not None:
        cmd += ["--default-artifact-root", root.as_uri()]
    return cmd, uri


def shadow_pool(path: str | Path) -> Any:
    """A LiRA / U-LiRA shadow pool trained by ``train_shadow_pool`` (its manifest, shadows and
    hold-out attack results); see ``eval.shadow.ShadowPool``."""
    from unlearnbench.eval.shadow import ShadowPool

    return ShadowPool.load(path)
