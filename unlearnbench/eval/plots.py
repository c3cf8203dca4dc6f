"""ROC plots (log-log, as LiRA recommends) drawn without pyplot's global state."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _group(curves: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``mia/<attack>/<pair>`` curves grouped by pair: {pair: {attack: curve}}."""
    groups: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, curve in curves.items():
        parts = name.split("/")
        pair, attack = (parts[-1], "/".join(parts[1:-1]) or parts[0]) if len(parts) >= 3 else (name, name)
        groups.setdefault(pair, {})[attack] = curve
    return groups


def roc_figure(title: str, curves: dict[str, dict[str, list[float]]]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    floor = 1e-4
    for attack, c in sorted(curves.items()):
        fpr = np.maximum(np.asarray(c["fpr"], dtype=float), floor)
        tpr = np.maximum(np.asarray(c["tpr"], dtype=float), floor)
        ax.plot(fpr, tpr, label=attack, lw=1.3)
    ax.plot([floor, 1], [floor, 1], ls="--", color="grey", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def save_roc_pngs(curves: dict[str, dict[str, list[float]]], folder: str | Path) -> list[Path]:
    """One log-log ROC PNG per member/non-member pair (all attacks on one plot)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for pair, group in sorted(_group(curves).items()):
        path = folder / f"{pair}.png"
        roc_figure(f"ROC ({pair.replace('_', ' vs ')})", group).savefig(path)
        paths.append(path)
    return paths
