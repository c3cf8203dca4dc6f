"""What ``unlearnbench ls`` lists, without importing torch.

Listing the registries live imports every registering module, and with them torch (about a
second and 900 MB). The built-in entries are fixed per release, so a snapshot of the listing,
``_listing.json`` next to this file, answers ``ls`` at once; a test checks it equals the live
registries (regenerate with ``python -m unlearnbench.commands._listing``). Installed plug-ins
(entry points) are not in the snapshot: with any present, ``ls`` lists live.
"""

from __future__ import annotations

import importlib
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
        out[k] = [_plain({"name": e.name, "summary": e.summary, **{c: v for c, v in e.info.items() if c != "summary"}})
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


def listing(kinds: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The snapshot when it holds every asked kind and no plug-in is installed; else the live listing."""
    if SNAPSHOT.is_file() and not _plugins_installed():
        try:
            snap = json.loads(SNAPSHOT.read_text())
        except (OSError, ValueError):
            snap = {}
        if all(k in snap for k in kinds):
            return {k: snap[k] for k in kinds}
    return live(kinds)


def write_snapshot() -> Path:
    SNAPSHOT.write_text(json.dumps(live(list(LISTABLE)), indent=1, sort_keys=True) + "\n")
    return SNAPSHOT


if __name__ == "__main__":
    print(write_snapshot())
