"""What ``unlearnbench ls`` lists, without importing torch.

Listing the registries live imports every registering module, and with them torch (about a
second and 900 MB). The listing only changes when the package's code does, so it is kept as a
snapshot stamped with a fingerprint of the package's sources: ``_listing.json`` next to this
file (written when the wheel is built: ``python -m unlearnbench.api._listing``), else a
per-user cache (``$XDG_CACHE_HOME/unlearnbench``, written by the first live listing). A
snapshot whose fingerprint differs from the code's is never shown: ``ls`` lists live instead.
Installed plug-ins (entry points) are in no snapshot: with any present, ``ls`` lists live.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("_listing.json")

# Which registry `ls KIND` shows; modules are imported only when listed live.
LISTABLE = {
    "datasets": ("unlearnbench.core.data", "DATASETS"),
    "models": ("unlearnbench.core.models", "MODELS"),
    "methods": ("unlearnbench.unlearn", "METHODS"),
    "attacks": ("unlearnbench.robust.attacks", "ATTACKS"),
    "metrics": ("unlearnbench.eval.metrics", "METRICS"),
    "presets": ("unlearnbench.unlearn.presets", "PRESETS"),
    "recipes": ("unlearnbench.core.recipes", "RECIPES"),
}
PLUGIN_GROUPS = ("unlearnbench.datasets", "unlearnbench.models", "unlearnbench.methods", "unlearnbench.attacks",
                 "unlearnbench.metrics")


def registry(kind: str) -> Any:
    module, attr = LISTABLE[kind]
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None


def _plain(value: Any) -> Any:
    """JSON-able, as ``ls --json`` prints it: config classes by name, tuples as lists."""
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def live(kinds: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The listing from the registries themselves (imports them, and torch)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for k in kinds:
        reg = registry(k)
        if reg is None:
            continue
        # functions in an entry's info (a generation model's factory) are plumbing, not shown
        out[k] = [_plain({"name": e.name, "summary": e.summary,
                          **{c: v for c, v in e.info.items() if c != "summary" and not inspect.isfunction(v)}})
                  for e in reg.entries()]
    return out


def _plugins_installed() -> bool:
    """Whether any installed distribution declares an ``unlearnbench.*`` entry point.

    Reads each ``*.dist-info/entry_points.txt`` on ``sys.path`` as text: parsing every
    distribution's entry points with ``importlib.metadata`` took longer than the rest of ``ls``.
    """
    headers = tuple(f"[{g}]" for g in PLUGIN_GROUPS)
    for folder in sys.path:
        try:
            entries = list(os.scandir(folder or "."))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                text = Path(entry.path, "entry_points.txt").read_text(errors="replace")
            except OSError:
                continue
            if any(h in text for h in headers):
                return True
    return False


def fingerprint() -> str:
    """sha256 over the package's Python sources (paths and contents): a few milliseconds."""
    import hashlib

    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unlearnbench" / "listing.json"


def _read(path: Path, stamp: str) -> dict[str, Any] | None:
    try:
        snap = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return snap["listing"] if isinstance(snap, dict) and snap.get("fingerprint") == stamp else None


def listing(kinds: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The listing of ``kinds``: from a snapshot of this exact code when there is one and no
    plug-in is installed, else live (and then cached for the next ``ls``)."""
    if _plugins_installed():
        return live(kinds)
    stamp = fingerprint()
    for path in (SNAPSHOT, cache_file()):
        snap = _read(path, stamp)
        if snap is not None and all(k in snap for k in kinds):
            return {k: snap[k] for k in kinds}
    everything = live(list(LISTABLE))
    try:  # a cache that cannot be written (read-only home) only costs the next ls its speed
        _write(cache_file(), everything, stamp)
    except OSError:
        pass
    return {k: everything[k] for k in kinds if k in everything}


def _write(path: Path, data: dict[str, Any], stamp: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"fingerprint": stamp, "listing": data}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def write_snapshot() -> Path:
    _write(SNAPSHOT, live(list(LISTABLE)), fingerprint())
    return SNAPSHOT


if __name__ == "__main__":
    print(write_snapshot())
