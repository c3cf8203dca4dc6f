"""ROC plots (log-log, as LiRA recommends) drawn without pyplot's global state.

FPRs below 1/n_nonmembers cannot be measured (only FPR 0 is reachable there): that region is
shaded and labelled, and the curves are drawn from it only as the floor they are clipped to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FLOOR = 1e-4  # the log axes start here


def _group(curves: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``mia/<attack>/<pair>`` curves grouped by pair: {pair: {attack: curve}}."""
    groups: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, curve in curves.items():
        parts = name.split("/")
        pair, attack = (parts[-1], "/".join(parts[1:-1]) or parts[0]) if len(parts) >= 3 else (name, name)
        groups.setdefault(pair, {})[attack] = curve
    return groups


def n_nonmembers(curve: dict) -> int | None:
    """The non-member count a curve records (``eval.roc.AttackStats.curve``), if any."""
    n = curve.get("n_nonmembers")
    if isinstance(n, (list, tuple)):
        n = n[0] if n else None
    return int(n) if n is not None and n == n and n > 0 else None


def shade_undefined(ax, n_non: int | None, floor: float = FLOOR) -> None:
    """Shade FPR < 1/n_nonmembers, where TPR at that FPR is undefined."""
    if not n_non:
        return
    edge = 1.0 / n_non
    if edge <= floor:
        return
    ax.axvspan(floor, edge, color="#bbbbbb", alpha=0.35, hatch="//", lw=0, zorder=0,
               label=f"FPR < 1/{n_non}: undefined")


def roc_figure(title: str, curves: dict[str, dict[str, list[float]]]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    floor = FLOOR
    ns = [n for c in curves.values() if (n := n_nonmembers(c))]
    shade_undefined(ax, min(ns) if ns else None, floor)
    for attack, c in sorted(curves.items()):
        fpr = np.maximum(np.asarray(c["fpr"], dtype=float), floor)
        tpr = np.maximum(np.asarray(c["tpr"], dtype=float), floor)
        (line,) = ax.plot(fpr, tpr, label=attack, lw=1.3)
        if c.get("op_fpr") and c.get("op_tpr"):  # the SVC's own decision threshold (MIA-Efficacy)
            ax.plot(max(c["op_fpr"][0], floor), max(c["op_tpr"][0], floor), "o", color=line.get_color(), ms=6,
                    mfc="none", label=f"{attack} at its threshold")
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
