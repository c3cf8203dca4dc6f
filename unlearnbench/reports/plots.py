"""Report figures, rendered with matplotlib's Agg canvas straight to PNG bytes.

No pyplot: the figures never touch a global backend or a display, so reports render on headless
machines and inside schedulers, and the caller's own matplotlib state is left alone.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from unlearnbench.reports.summary import REFERENCE_ROWS

log = logging.getLogger(__name__)

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_REF_STYLE = {"retrain": dict(color="black", marker="*", ms=16), "original": dict(color="#7f7f7f", marker="X", ms=11)}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """Inline an image: the MLflow artifact viewer cannot load sibling files of an HTML artifact."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _mean(row: dict, key: str) -> tuple[float, float] | None:
    v = row["values"].get(key)
    if v is None or not math.isfinite(v["mean"]):
        return None
    return v["mean"], (v["std"] or 0.0)


def _color_map(labels: Iterable[str]) -> dict[str, str]:
    methods = [lab for lab in dict.fromkeys(labels) if lab not in REFERENCE_ROWS]
    return {lab: _COLORS[i % len(_COLORS)] for i, lab in enumerate(methods)}


def _grid(n: int, width: float, height: float):
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = _figure(width * cols, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def ua_vs_ta(rows: list[dict[str, Any]]) -> bytes | None:
    """UA (x) against TA (y) per method, mean ± std over seeds; the retrained model is the target."""
    def ta_key(spec: str) -> str:
        # Class-wise specs: the papers' TA excludes the forgotten classes.
        group = [r for r in rows if r["forget"] == spec]
        return "test_retained_acc" if any("test_retained_acc" in r["values"] for r in group) else "test_acc"

    specs = list(dict.fromkeys(r["forget"] for r in rows))
    specs = [s for s in specs if any(_mean(r, "ua") and _mean(r, ta_key(s)) for r in rows if r["forget"] == s)]
    if not specs:
        return None
    colors = _color_map(r["label"] for r in rows)
    fig, axes = _grid(len(specs), 5.6, 4.2)
    for ax, spec in zip(axes, specs, strict=False):
        key = ta_key(spec)
        for r in (r for r in rows if r["forget"] == spec):
            ua, ta = _mean(r, "ua"), _mean(r, key)
            if ua is None or ta is None:
                continue
            if r["method"] in _REF_STYLE:
                style = _REF_STYLE[r["method"]]
                ax.plot(ua[0], ta[0], linestyle="none", label=r["label"], zorder=3, **style)
                if r["method"] == "retrain":
                    ax.axvline(ua[0], color="black", lw=0.8, ls="--", zorder=1)
                    ax.axhline(ta[0], color="black", lw=0.8, ls="--", zorder=1)
            else:
                ax.errorbar(ua[0], ta[0], xerr=ua[1], yerr=ta[1], fmt="o", ms=8, capsize=3,
                            color=colors[r["label"]], label=r["label"], zorder=2)
        ax.set_title(f"forget {spec}")
        ax.set_xlabel("UA (%) — target: retrain")
        ax.set_ylabel("TA (%)" + (", retained classes" if key == "test_retained_acc" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return to_png(fig)


def robust_bars(rows: list[dict[str, Any]]) -> bytes | None:
    """Clean and robust accuracy per split: the original model (before) next to each method (after)."""
    keys = sorted({k for r in rows for k in r["values"] if k.startswith(("robust/", "clean/"))},
                  key=lambda k: (k.split("/")[1], k.startswith("robust/"), k))
    specs = [s for s in dict.fromkeys(r["forget"] for r in rows)]
    if not keys or not specs:
        return None
    colors = _color_map(r["label"] for r in rows)
    # One full-width panel per spec: groups of bars need room as splits × attacks grow.
    fig = _figure(max(7.0, 1.1 * len(keys) + 3.0), 3.8 * len(specs))
    axes = fig.subplots(len(specs), 1, squeeze=False).ravel()
    for ax, spec in zip(axes, specs, strict=False):
        group = [r for r in rows if r["forget"] == spec and any(k in r["values"] for k in keys)]
        if not group:
            ax.set_visible(False)
            continue
        width = 0.8 / len(group)
        x = np.arange(len(keys))
        for i, r in enumerate(group):
            means = [(_mean(r, k) or (np.nan, 0.0)) for k in keys]
            color = _REF_STYLE[r["method"]]["color"] if r["method"] in _REF_STYLE else colors[r["label"]]
            label = f"{r['label']} (before)" if r["method"] == "original" else r["label"]
            ax.bar(x + (i - (len(group) - 1) / 2) * width, [m[0] for m in means], width,
                   yerr=[m[1] for m in means], capsize=2, color=color, label=label,
                   hatch="//" if r["method"] == "original" else None, edgecolor="white")
        ax.set_xticks(x, [k.replace("robust/", "").replace("clean/", "clean ").replace("/", "\n") for k in keys],
                      fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"forget {spec}: clean / robust accuracy")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return to_png(fig)


def _curve_points(curve: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if isinstance(curve, dict) and "fpr" in curve and "tpr" in curve:
        fpr, tpr = np.asarray(curve["fpr"], dtype=float), np.asarray(curve["tpr"], dtype=float)
        if fpr.shape == tpr.shape and fpr.size > 1:
            return fpr, tpr
    return None


def roc_curves(rows: list[dict[str, Any]], curves_by_label: dict[tuple[str, str], dict[str, Any]]) -> bytes | None:
    """MIA ROC curves on log-log axes (low-FPR behaviour is what matters), one panel per forget
    spec and attack; one curve per method (its first seed's run)."""
    panels: dict[tuple[str, str], list[tuple[str, str, np.ndarray, np.ndarray]]] = {}
    for (spec, label), curves in curves_by_label.items():
        method = next((r["method"] for r in rows if r["forget"] == spec and r["label"] == label), label)
        for name, curve in sorted(curves.items()):
            pts = _curve_points(curve)
            if pts is not None:
                panels.setdefault((spec, name), []).append((label, method, *pts))
    if not panels:
        return None
    colors = _color_map(r["label"] for r in rows)
    # Forget-vs-test is the unlearning question (does the forget set still look like training
    # data?); other pairs are in each run's roc/ artifacts. At most four panels stay readable.
    keys = [k for k in panels if "forget" in k[1]] or list(panels)
    keys = keys[:4]
    fig, axes = _grid(len(keys), 5.0, 4.2)
    floor = 1e-4
    for ax, key in zip(axes, keys, strict=False):
        for label, method, fpr, tpr in panels[key]:
            style = {"color": _REF_STYLE[method]["color"], "lw": 2.2} if method in _REF_STYLE else {"color": colors.get(label)}
            ax.plot(np.clip(fpr, floor, 1), np.clip(tpr, floor, 1), label=label, **style)
        ax.plot([floor, 1], [floor, 1], color="#999999", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{key[1]} — forget {key[0]}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return to_png(fig)


def per_class_heatmap(matrix: dict[str, dict[str, float]], title: str) -> bytes | None:
    """Rows = methods, columns = classes, cell = mean per-class accuracy (%) over seeds."""
    if not matrix:
        return None
    labels = list(matrix)
    classes = sorted({c for row in matrix.values() for c in row}, key=_class_sort)
    data = np.array([[matrix[lab].get(c, np.nan) for c in classes] for lab in labels], dtype=float)
    fig = _figure(max(5.0, 0.55 * len(classes) + 2.5), max(2.4, 0.45 * len(labels) + 1.4))
    ax = fig.subplots()
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=45 if len(classes) > 12 else 0, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    if data.size <= 400:
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                if np.isfinite(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if data[i, j] < 60 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    return to_png(fig)


def _class_sort(c: str) -> tuple[int, Any]:
    return (0, int(c)) if str(c).lstrip("-").isdigit() else (1, str(c))
