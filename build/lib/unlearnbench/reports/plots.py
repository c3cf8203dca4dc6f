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


def _ta_key(rows: list[dict[str, Any]], spec: str) -> str:
    # Class-wise specs: the papers' TA excludes the forgotten classes.
    group = [r for r in rows if r["forget"] == spec]
    return "test_retained_acc" if any("test_retained_acc" in r["values"] for r in group) else "test_acc"


def _label_points(ax, points: list[tuple[float, float, str, str]]) -> None:
    """Name every marker next to it; markers at (nearly) the same place get their labels stacked
    so none is hidden under another (the salun point used to sit under the retrain star)."""
    from matplotlib.transforms import offset_copy

    placed: list[tuple[float, float]] = []
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    for x, y, label, color in points:
        near = sum(1 for (px, py) in placed if abs(px - x) / sx < 0.04 and abs(py - y) / sy < 0.04)
        placed.append((x, y))
        trans = offset_copy(ax.transData, fig=ax.figure, x=9, y=6 - 11 * near, units="points")
        ax.text(x, y, label, transform=trans, fontsize=7.5, color=color, va="center", ha="left", zorder=5,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})


def ua_vs_ta(rows: list[dict[str, Any]]) -> bytes | None:
    """UA (x) against TA (y) per method, mean ± std over seeds; the retrained model is the target.
    Every marker is labelled; the retrain star is hollow, so a method on top of it stays visible."""
    specs = list(dict.fromkeys(r["forget"] for r in rows))
    specs = [s for s in specs if any(_mean(r, "ua") and _mean(r, _ta_key(rows, s)) for r in rows if r["forget"] == s)]
    if not specs:
        return None
    colors = _color_map(r["label"] for r in rows)
    fig, axes = _grid(len(specs), 5.6, 4.2)
    for ax, spec in zip(axes, specs, strict=False):
        key = _ta_key(rows, spec)
        points = []
        for r in (r for r in rows if r["forget"] == spec):
            ua, ta = _mean(r, "ua"), _mean(r, key)
            if ua is None or ta is None:
                continue
            if r["method"] in _REF_STYLE:
                style = dict(_REF_STYLE[r["method"]])
                # Hollow and underneath: whatever sits on the target stays visible.
                ax.plot(ua[0], ta[0], linestyle="none", label=r["label"], zorder=1, mfc="none", mew=1.6, **style)
                if r["method"] == "retrain":
                    ax.axvline(ua[0], color="black", lw=0.8, ls="--", zorder=0)
                    ax.axhline(ta[0], color="black", lw=0.8, ls="--", zorder=0)
                points.append((ua[0], ta[0], r["label"], style["color"]))
            else:
                ax.errorbar(ua[0], ta[0], xerr=ua[1], yerr=ta[1], fmt="o", ms=7, capsize=3, alpha=0.85,
                            color=colors[r["label"]], label=r["label"], zorder=3)
                points.append((ua[0], ta[0], r["label"], colors[r["label"]]))
        ax.margins(0.12)
        ax.set_title(f"forget {spec}")
        ax.set_xlabel("UA (%) — target: retrain")
        ax.set_ylabel("TA (%)" + (", retained classes" if key == "test_retained_acc" else ""))
        ax.grid(alpha=0.3)
        _label_points(ax, points)
        ax.legend(fontsize=8, loc="best")
    return to_png(fig)


# The papers' four numbers and their gap keys; TA is test_retained_acc for class-wise specs.
GAP_METRICS = (("UA", "ua"), ("RA", "retain_acc"), ("TA", "test_acc"), ("MIA", "mia_efficacy"))


def _gap(row: dict[str, Any], key: str) -> tuple[float, float, bool] | None:
    """(mean |gap| over seeds, its std, beyond the noise) for one row and metric."""
    g = _mean(row, f"gap/{key}")
    vs = (row.get("vs_retrain") or {}).get(key)
    if g is None and vs is None:
        return None
    mean, std = g if g is not None else (abs(vs["diff"]), 0.0)
    return mean, std, bool(vs and vs.get("beyond_noise"))


def gap_bars(rows: list[dict[str, Any]]) -> bytes | None:
    """|metric − retrain| per metric (UA, RA, TA, MIA) and method: bars = mean over seeds, error
    bars = std over seeds, ``*`` = the difference is beyond the noise (its 95 % interval excludes 0)."""
    specs = list(dict.fromkeys(r["forget"] for r in rows))
    panels = []
    for spec in specs:
        ta = _ta_key(rows, spec)
        metrics = [(lab, ta if key == "test_acc" else key) for lab, key in GAP_METRICS]
        methods = [r for r in rows if r["forget"] == spec and r["method"] not in REFERENCE_ROWS
                   and any(_gap(r, k) for _, k in metrics)]
        if methods:
            panels.append((spec, metrics, methods))
    if not panels:
        return None
    colors = _color_map(r["label"] for r in rows)
    fig = _figure(8.0, 3.6 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False).ravel()
    for ax, (spec, metrics, methods) in zip(axes, panels, strict=True):
        x = np.arange(len(metrics))
        width = 0.8 / len(methods)
        top = 0.0
        for i, r in enumerate(methods):
            vals = [_gap(r, k) or (np.nan, 0.0, False) for _, k in metrics]
            pos = x + (i - (len(methods) - 1) / 2) * width
            ax.bar(pos, [v[0] for v in vals], width, yerr=[v[1] for v in vals], capsize=2,
                   color=colors[r["label"]], label=f"{r['label']} ({len(r['seeds'])} seed{'s' * (len(r['seeds']) != 1)})",
                   edgecolor="white")
            for px, (m, sd, sig) in zip(pos, vals, strict=True):
                if sig and np.isfinite(m):
                    ax.text(px, m + sd, "*", ha="center", va="bottom", fontsize=10, color="#b3261e")
                if np.isfinite(m):
                    top = max(top, m + sd)
        ax.set_xticks(x, [f"{lab}\n({k})" for lab, k in metrics], fontsize=8)
        ax.set_ylim(0, max(1.0, top * 1.15))
        ax.set_ylabel("|value − retrain| (points)")
        ax.set_title(f"forget {spec}: gap to retrain (lower is better); error bars: std over seeds; "
                     "* beyond the noise", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return to_png(fig)


def pareto(rows: list[dict[str, Any]]) -> bytes | None:
    """Run time (x, log) against Avg. Gap (y) per method, mean ± std over seeds; the methods no
    other method beats on both are joined (the Pareto front); retrain's run time is the dashed
    line (its Avg. Gap is 0 by definition)."""
    specs = [s for s in dict.fromkeys(r["forget"] for r in rows)
             if any(_mean(r, "avg_gap") and _mean(r, "rte_seconds") for r in rows
                    if r["forget"] == s and r["method"] not in REFERENCE_ROWS)]
    if not specs:
        return None
    colors = _color_map(r["label"] for r in rows)
    fig, axes = _grid(len(specs), 5.6, 4.2)
    for ax, spec in zip(axes, specs, strict=False):
        pts = []
        for r in rows:
            if r["forget"] != spec or r["method"] in REFERENCE_ROWS:
                continue
            gap, rte = _mean(r, "avg_gap"), _mean(r, "rte_seconds")
            if gap is None or rte is None or rte[0] <= 0:
                continue
            ax.errorbar(rte[0], gap[0], xerr=rte[1], yerr=gap[1], fmt="o", ms=7, capsize=3, alpha=0.85,
                        color=colors[r["label"]], label=r["label"], zorder=3)
            pts.append((rte[0], gap[0], r["label"], colors[r["label"]]))
        front = sorted(p for p in pts if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in pts))
        if len(front) > 1:
            ax.plot([p[0] for p in front], [p[1] for p in front], color="#999999", lw=1, ls="-", zorder=1,
                    label="Pareto front")
        ret = next((r for r in rows if r["forget"] == spec and r["method"] == "retrain"), None)
        rte_ret = _mean(ret, "rte_seconds") if ret else None
        if rte_ret is not None and rte_ret[0] > 0:
            ax.axvline(rte_ret[0], color="black", ls="--", lw=1, zorder=0, label=f"retrain RTE {rte_ret[0]:.3g} s")
            # Retrain itself: Avg. Gap 0 by definition, at its run time (hollow: nothing hides under it).
            ax.plot(rte_ret[0], 0, linestyle="none", zorder=2, mfc="none", mew=1.6, clip_on=False,
                    **_REF_STYLE["retrain"])
        ax.set_xscale("log")
        ax.margins(x=0.2, y=0.15)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("run time, RTE (s, log)")
        ax.set_ylabel("Avg. Gap to retrain (points)")
        ax.set_title(f"forget {spec}: cost vs. closeness to retrain", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        _label_points(ax, pts)
        ax.legend(fontsize=7, loc="best")
    return to_png(fig)


def _robust_tick(key: str, group: list[dict[str, Any]]) -> str:
    """``test_retained\npgd\nn=404``: split, attack and the points each run attacked."""
    n = {int(r["values"][key]["n_points"]) for r in group if r["values"].get(key, {}).get("n_points")}
    text = key.replace("robust/", "").replace("clean/", "clean ").replace("/", "\n")
    return text + (f"\nn={'/'.join(map(str, sorted(n)))}" if n else "")


def robust_bars(rows: list[dict[str, Any]], threat: str = "") -> bytes | None:
    """Clean and robust accuracy per split: the original model (before) next to each method
    (after). ``threat`` (e.g. ``Linf, ε = 0.1``) goes into each title; every tick names its n."""
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
        ax.set_xticks(x, [_robust_tick(k, group) for k in keys], fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        seeds = sorted({len(r["seeds"]) for r in group})
        ax.set_title(f"forget {spec}: clean / robust accuracy" + (f", {threat}" if threat else "")
                     + f"; n = points per run; error bars: std over {'/'.join(map(str, seeds))} seed(s)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return to_png(fig)


def _curve_points(curve: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if isinstance(curve, dict) and "fpr" in curve and "tpr" in curve:
        fpr, tpr = np.asarray(curve["fpr"], dtype=float), np.asarray(curve["tpr"], dtype=float)
        if fpr.shape == tpr.shape and fpr.size > 1:
            return fpr, tpr
    return None


def _attack_order(name: str) -> tuple[int, str]:
    # The SVC of MIA-Efficacy first, then the threshold attacks, then the rest (LiRA, U-LiRA).
    attack = name.split("/")[1] if name.count("/") >= 2 else name
    order = {"svc_confidence": 0, "loss": 1, "confidence": 2, "entropy": 3, "m_entropy": 4}
    return order.get(attack, 5), name


def roc_curves(rows: list[dict[str, Any]], curves_by_label: dict[tuple[str, str], dict[str, Any]]) -> bytes | None:
    """MIA ROC curves on log-log axes (low-FPR behaviour is what matters), one panel per forget
    spec and attack; one curve per method (its first seed's run). The SVC of MIA-Efficacy comes
    first, with its operating point (its own threshold) marked; FPRs below 1/n_nonmembers, where
    TPR cannot be measured, are shaded."""
    from unlearnbench.eval.plots import n_nonmembers, shade_undefined

    panels: dict[tuple[str, str], list[tuple[str, str, np.ndarray, np.ndarray, dict]]] = {}
    for (spec, label), curves in curves_by_label.items():
        method = next((r["method"] for r in rows if r["forget"] == spec and r["label"] == label), label)
        for name, curve in sorted(curves.items()):
            pts = _curve_points(curve)
            if pts is not None:
                panels.setdefault((spec, name), []).append((label, method, *pts, curve))
    if not panels:
        return None
    colors = _color_map(r["label"] for r in rows)
    # Forget-vs-test is the unlearning question (does the forget set still look like training
    # data?); other pairs are in each run's roc/ artifacts. At most six panels stay readable.
    keys = [k for k in panels if "forget" in k[1]] or list(panels)
    keys = sorted(keys, key=lambda k: (k[0], _attack_order(k[1])))[:6]
    fig, axes = _grid(len(keys), 5.0, 4.2)
    floor = 1e-4
    for ax, key in zip(axes, keys, strict=False):
        ns = [n for *_, c in panels[key] if (n := n_nonmembers(c))]
        shade_undefined(ax, min(ns) if ns else None, floor)
        for label, method, fpr, tpr, curve in panels[key]:
            style = {"color": _REF_STYLE[method]["color"], "lw": 2.2} if method in _REF_STYLE else {"color": colors.get(label)}
            ax.plot(np.clip(fpr, floor, 1), np.clip(tpr, floor, 1), label=label, **style)
            if curve.get("op_fpr") and curve.get("op_tpr"):
                ax.plot(max(curve["op_fpr"][0], floor), max(curve["op_tpr"][0], floor), "o", mfc="none", ms=7,
                        mew=1.5, color=style["color"], zorder=4)
        ax.plot([floor, 1], [floor, 1], color="#999999", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        attack = key[1].split("/")[1] if key[1].count("/") >= 2 else key[1]
        what = "SVC of MIA-Efficacy (o = its threshold)" if attack.startswith("svc_") else f"{attack} threshold attack"
        n_text = f", n_non = {min(ns)}" if ns else ""
        ax.set_title(f"{what} — forget {key[0]}{n_text}", fontsize=8.5)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
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
