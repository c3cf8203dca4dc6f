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


def _png(make_figure):
    """``make_figure`` (returns a Figure or None) as a function returning PNG bytes (or None);
    the figure itself stays reachable as ``.figure`` (tests measure its text extents)."""
    import functools

    @functools.wraps(make_figure)
    def render(*args: Any, **kwargs: Any) -> bytes | None:
        fig = make_figure(*args, **kwargs)
        return None if fig is None else to_png(fig)

    render.figure = make_figure  # type: ignore[attr-defined]
    return render


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


# At most this wide (inches at 100 dpi): a figure then shows at its own size in an 800 px window
# (the report's column is 768 px there), so 7.5 pt text stays about 10 px instead of being scaled
# down to 6 px; panels are stacked instead of set side by side.
MAX_WIDTH = 7.6


def _grid(n: int, width: float, height: float):
    fig = _figure(min(width, MAX_WIDTH), height * n)
    axes = fig.subplots(n, 1, squeeze=False).ravel()
    return fig, axes


def _spread(row: dict, key: str) -> float | None:
    """The std over seeds as an error bar, only where there are two seeds or more: one seed has
    no spread to show (a zero-length bar would claim one)."""
    v = _mean(row, key)
    return v[1] if v is not None and len(row.get("seeds") or ()) >= 2 else None


def _ta_key(rows: list[dict[str, Any]], spec: str) -> str:
    # Class-wise specs: the papers' TA excludes the forgotten classes.
    group = [r for r in rows if r["forget"] == spec]
    return "test_retained_acc" if any("test_retained_acc" in r["values"] for r in group) else "test_acc"


# Where a label may go, in points from its marker: right, left, then further up and down.
_OFFSETS = [(dx, dy, ha) for dy in (0, 11, -11, 22, -22, 33, -33, 44, -44)
            for dx, ha in ((8, "left"), (-8, "right"))]


def _label_points(fig, panels: list[tuple[Any, list[tuple[float, float, str, str]]]]) -> None:
    """Name every marker next to it with no label over another label, a marker or the legend,
    and every label inside its axes: each label takes the first free place of ``_OFFSETS``,
    measured from matplotlib's text extents once the layout is final (it is frozen then, so the
    places stay where they were measured)."""
    from matplotlib.transforms import Bbox, offset_copy

    fig.canvas.draw()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    for ax, points in panels:
        inside = ax.get_window_extent(renderer)
        taken: list[Any] = []
        if ax.get_legend() is not None:
            taken.append(ax.get_legend().get_window_extent(renderer))
        for x, y, *_ in points:
            px, py = ax.transData.transform((x, y))
            taken.append(Bbox.from_extents(px - 5, py - 5, px + 5, py + 5))  # the marker itself
        for x, y, label, color in points:
            text = None
            for dx, dy, ha in _OFFSETS:
                if text is not None:
                    text.remove()
                trans = offset_copy(ax.transData, fig=fig, x=dx, y=dy, units="points")
                text = ax.text(x, y, label, transform=trans, fontsize=7.5, color=color, va="center", ha=ha,
                               zorder=5, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
                box = text.get_window_extent(renderer)
                fits = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0 and box.y1 <= inside.y1)
                if fits and not any(box.overlaps(t) for t in taken):
                    break
            else:
                log.info("No free place for the label %r; it may touch another one.", label)
            taken.append(text.get_window_extent(renderer))


@_png
def ua_vs_ta(rows: list[dict[str, Any]]) -> bytes | None:
    """UA (x) against TA (y) per method, mean ± std over seeds; the retrained model is the target.
    Every marker is labelled; the retrain star is hollow, so a method on top of it stays visible."""
    specs = list(dict.fromkeys(r["forget"] for r in rows))
    specs = [s for s in specs if any(_mean(r, "ua") and _mean(r, _ta_key(rows, s)) for r in rows if r["forget"] == s)]
    if not specs:
        return None
    colors = _color_map(r["label"] for r in rows)
    fig, axes = _grid(len(specs), MAX_WIDTH, 4.6)
    panels = []
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
                ax.errorbar(ua[0], ta[0], xerr=_spread(r, "ua"), yerr=_spread(r, key), fmt="o", ms=7, capsize=3,
                            alpha=0.85, color=colors[r["label"]], label=r["label"], zorder=3)
                points.append((ua[0], ta[0], r["label"], colors[r["label"]]))
        ax.margins(0.25)
        # Percentages: the room for labels stays within what the axes can mean.
        ax.set_xlim(max(ax.get_xlim()[0], -3.0), min(ax.get_xlim()[1], 103.0))
        ax.set_ylim(max(ax.get_ylim()[0], -3.0), min(ax.get_ylim()[1], 103.0))
        ax.set_title(f"forget {spec}")
        ax.set_xlabel("UA (%) — target: retrain")
        ax.set_ylabel("TA (%)" + (", retained classes" if key == "test_retained_acc" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        panels.append((ax, points))
    _label_points(fig, panels)
    return fig


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


@_png
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
    fig = _figure(MAX_WIDTH, 3.6 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False).ravel()
    for ax, (spec, metrics, methods) in zip(axes, panels, strict=True):
        x = np.arange(len(metrics))
        width = 0.8 / len(methods)
        top = 0.0
        for i, r in enumerate(methods):
            vals = [_gap(r, k) or (np.nan, 0.0, False) for _, k in metrics]
            if len(r["seeds"]) < 2:  # no spread to show
                vals = [(m, 0.0, sig) for m, _, sig in vals]
            pos = x + (i - (len(methods) - 1) / 2) * width
            ax.bar(pos, [v[0] for v in vals], width, yerr=[v[1] for v in vals] if len(r["seeds"]) >= 2 else None,
                   capsize=2,
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
        ax.set_title(f"forget {spec}: gap to retrain (lower is better)\nerror bars: std over seeds (≥ 2 seeds); "
                     "* beyond the noise", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


@_png
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
    fig, axes = _grid(len(specs), MAX_WIDTH, 4.6)
    panels = []
    for ax, spec in zip(axes, specs, strict=False):
        pts, tops = [], [1.0]
        for r in rows:
            if r["forget"] != spec or r["method"] in REFERENCE_ROWS:
                continue
            gap, rte = _mean(r, "avg_gap"), _mean(r, "rte_seconds")
            if gap is None or rte is None or rte[0] <= 0:
                continue
            tops.append(gap[0] + (_spread(r, "avg_gap") or 0.0))
            ax.errorbar(rte[0], gap[0], xerr=_spread(r, "rte_seconds"), yerr=_spread(r, "avg_gap"), fmt="o", ms=7,
                        capsize=3, alpha=0.85, color=colors[r["label"]], label=r["label"], zorder=3)
            pts.append((rte[0], gap[0], r["label"], colors[r["label"]]))
        front = sorted(p for p in pts if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in pts))
        if len(front) > 1:
            ax.plot([p[0] for p in front], [p[1] for p in front], color="#999999", lw=1, ls="-", zorder=1,
                    label="Pareto front")
        ret = next((r for r in rows if r["forget"] == spec and r["method"] == "retrain"), None)
        rte_ret = _mean(ret, "rte_seconds") if ret else None
        xs = [p[0] for p in pts]
        if rte_ret is not None and rte_ret[0] > 0:
            ax.axvline(rte_ret[0], color="black", ls="--", lw=1, zorder=0, label=f"retrain RTE {rte_ret[0]:.3g} s")
            xs.append(rte_ret[0])
        # Limits from the data, with room for labels: a decade-wide margin on the log axis and
        # 30 % above the highest gap, so no point sits on an axis line.
        ax.set_xscale("log")
        if xs:
            ax.set_xlim(min(xs) / 2.5, max(xs) * 2.5)
        top = max(tops)
        ax.set_ylim(-0.08 * top, top * 1.35)
        ax.axhline(0, color="black", lw=0.6, zorder=0)
        ax.set_xlabel("run time, RTE (s, log scale)")
        ax.set_ylabel("Avg. Gap to retrain (points)")
        ax.set_title(f"forget {spec}: cost vs. closeness to retrain (retrain: gap 0)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        panels.append((ax, pts))
    _label_points(fig, panels)
    return fig


def _robust_tick(key: str, group: list[dict[str, Any]]) -> str:
    """``test_retained\npgd\nn=404``: split, attack and the points each run attacked."""
    n = {int(r["values"][key]["n_points"]) for r in group if r["values"].get(key, {}).get("n_points")}
    text = key.replace("robust/", "").replace("clean/", "clean ").replace("/", "\n")
    return text + (f"\nn={'/'.join(map(str, sorted(n)))}" if n else "")


@_png
def robust_bars(rows: list[dict[str, Any]], threat: str = "") -> bytes | None:
    """Clean and robust accuracy per split: the original model (before) next to each method
    (after). ``threat`` (e.g. ``Linf, ε = 0.1``) goes into each title; every tick names its n."""
    keys = sorted({k for r in rows for k in r["values"] if k.startswith(("robust/", "clean/"))},
                  key=lambda k: (k.split("/")[1], k.startswith("robust/"), k))
    specs = [s for s in dict.fromkeys(r["forget"] for r in rows)]
    if not keys or not specs:
        return None
    colors = _color_map(r["label"] for r in rows)
    # Panels of at most five splits × attacks each, stacked, so the figure keeps MAX_WIDTH and its
    # text its size at 800 px.
    chunks = [(spec, keys[i:i + 5]) for spec in specs for i in range(0, len(keys), 5)]
    fig = _figure(MAX_WIDTH, 3.9 * len(chunks))
    axes = fig.subplots(len(chunks), 1, squeeze=False).ravel()
    for ax, (spec, part) in zip(axes, chunks, strict=True):
        group = [r for r in rows if r["forget"] == spec and any(k in r["values"] for k in part)]
        if not group:
            ax.set_visible(False)
            continue
        width = 0.8 / len(group)
        x = np.arange(len(part))
        for i, r in enumerate(group):
            means = [(_mean(r, k) or (np.nan, 0.0))[0] for k in part]
            color = _REF_STYLE[r["method"]]["color"] if r["method"] in _REF_STYLE else colors[r["label"]]
            label = f"{r['label']} (before)" if r["method"] == "original" else r["label"]
            ax.bar(x + (i - (len(group) - 1) / 2) * width, means, width, yerr=_whiskers(r, part, means), capsize=2,
                   color=color, label=label, hatch="//" if r["method"] == "original" else None, edgecolor="white",
                   error_kw={"elinewidth": 1, "ecolor": "#333333"})
        ax.set_xticks(x, [_robust_tick(k, group) for k in part], fontsize=8)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"forget {spec}: clean / robust accuracy" + (f", {threat}" if threat else "")
                     + "\nn = points per run; whiskers: 95 % interval", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _whiskers(row: dict[str, Any], keys: list[str], means: list[float]) -> np.ndarray:
    """(2, len(keys)) distances from each bar's top to its 95 % interval (t over seeds, at least
    Wilson on the points), clipped to [0, 100]; 0 where the value has no interval."""
    out = np.zeros((2, len(keys)))
    for j, (k, m) in enumerate(zip(keys, means, strict=True)):
        ci = (row["values"].get(k) or {}).get("ci")
        if ci is not None and np.isfinite(m):
            lo, hi = max(0.0, ci[0]), min(100.0, ci[1])
            out[:, j] = (max(0.0, m - lo), max(0.0, hi - m))
    return out


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


@_png
def roc_curves(rows: list[dict[str, Any]], curves_by_label: dict[tuple[str, str], dict[str, Any]]) -> bytes | None:
    """MIA ROC curves on log-log axes (low-FPR behaviour is what matters), one panel per forget
    spec and attack; one curve per method (its first seed's run). The SVC of MIA-Efficacy comes
    first, with its operating point (its own threshold) marked; FPRs below 1/n_nonmembers, where
    TPR cannot be measured, are shaded, and the axes start at half that (0.5/n)."""
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
    fig, axes = _grid(len(keys), MAX_WIDTH, 4.4)
    for ax, key in zip(axes, keys, strict=False):
        ns = [n for *_, c in panels[key] if (n := n_nonmembers(c))]
        # The axes start just below 1/n_nonmembers, the lowest FPR that can be measured: the
        # undefined region is a narrow shaded strip, not most of the panel.
        floor = 0.5 / min(ns) if ns else 1e-4
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
    return fig


@_png
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
    return fig


def _class_sort(c: str) -> tuple[int, Any]:
    return (0, int(c)) if str(c).lstrip("-").isdigit() else (1, str(c))
