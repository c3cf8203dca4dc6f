"""The report's figures measured, not looked at: text extents from matplotlib's renderer (no label
over another, every label inside its axes), error bars only where seeds give a spread, axes that
hold the data, ROC panels scaled to the measurable region, whiskers equal to the intervals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from unlearnbench.reports import plots


def _row(method, ua, ta, *, seeds=1, label=None, forget="class:3", gap=None, rte=None, extra=None):
    std = 1.5 if seeds >= 2 else None
    values = {"ua": {"mean": ua, "std": std}, "test_retained_acc": {"mean": ta, "std": std}}
    if gap is not None:
        values["avg_gap"] = {"mean": gap, "std": std}
    if rte is not None:
        values["rte_seconds"] = {"mean": rte, "std": 0.1 * rte if seeds >= 2 else None}
    values.update(extra or {})
    return {"forget": forget, "method": method, "label": label or method, "seeds": list(range(seeds)),
            "values": values, "vs_retrain": {}}


# Crowded on purpose: close points with long names, one right on the retrain star.
CROWDED = [
    _row("retrain", 100.0, 97.0, gap=0.0, rte=40.0), _row("original", 0.5, 98.5),
    _row("salun", 99.6, 96.9, gap=0.5, rte=3.0), _row("l1_sparse", 98.8, 96.6, gap=0.9, rte=2.5),
    _row("finetune", 97.9, 97.2, gap=1.4, rte=2.8), _row("random_label", 99.1, 96.2, gap=1.1, rte=3.3),
    _row("scar", 98.4, 95.8, label="scar [stats_source=val]", gap=1.9, rte=4.1),
    _row("gradient_ascent", 96.9, 95.9, gap=2.6, rte=1.2),
]


def _label_boxes(fig):
    """(axes extent, [(label, extent)]) per visible axes, after a draw."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return [(ax.get_window_extent(r), [(t.get_text(), t.get_window_extent(r)) for t in ax.texts],
             ax.get_legend().get_window_extent(r) if ax.get_legend() else None)
            for ax in fig.axes if ax.get_visible()]


@pytest.mark.parametrize("make", [plots.ua_vs_ta.figure, plots.pareto.figure])
def test_no_label_overlaps_another_or_leaves_its_axes(make):
    fig = make(CROWDED)
    for inside, labels, legend in _label_boxes(fig):
        names = [n for n, _ in labels]
        methods = [r["label"] for r in CROWDED if make is plots.ua_vs_ta.figure or r["method"] not in ("retrain", "original")]
        assert sorted(names) == sorted(methods)  # every marker named, once
        for (a, box_a), (b, box_b) in itertools.combinations(labels, 2):
            assert not box_a.overlaps(box_b), (a, b)
        for name, box in labels:
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, name
            assert legend is None or not box.overlaps(legend), name
    assert fig.get_figwidth() <= plots.MAX_WIDTH  # shows at its size in an 800 px window


def test_pareto_points_sit_inside_readable_axes():
    fig = plots.pareto.figure(CROWDED)
    ax = fig.axes[0]
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert ax.get_xscale() == "log"
    pts = [(r["values"]["rte_seconds"]["mean"], r["values"]["avg_gap"]["mean"]) for r in CROWDED
           if r["method"] not in ("retrain", "original")]
    for x, y in pts:
        assert x0 * 2 <= x <= x1 / 2 and y0 < y < y1  # off the axis lines, not squeezed onto them
    assert x1 >= 40.0 * 2  # retrain's run time (the dashed line) is inside too
    assert y1 <= max(y for _, y in pts) * 2  # the points use the height, not a sliver of it


@pytest.mark.parametrize("seeds", [1, 2])
def test_error_bars_only_with_two_seeds_or_more(seeds):
    rows = [_row("retrain", 100.0, 97.0, gap=0.0, rte=40.0, seeds=seeds),
            _row("salun", 90.0, 95.0, gap=2.0, rte=3.0, seeds=seeds), _row("ft", 80.0, 96.0, gap=3.0, rte=1.0, seeds=seeds)]
    for make in (plots.ua_vs_ta.figure, plots.pareto.figure):
        fig = make(rows)
        bars = [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert bars
        assert all(c.has_xerr == (seeds >= 2) and c.has_yerr == (seeds >= 2) for c in bars), make


def test_roc_panels_start_just_below_the_measurable_region():
    fpr = np.linspace(0, 1, 41)
    curve = {"fpr": fpr.tolist(), "tpr": np.sqrt(fpr).tolist(), "n_members": [180], "n_nonmembers": [40]}
    rows = [_row("salun", 90.0, 95.0)]
    fig = plots.roc_curves.figure(rows, {("class:3", "salun"): {"mia/loss/forget_test": curve}})
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((0.5 / 40, 1.0))  # 1/n = 0.025 is the smallest measurable FPR
    # The shaded (undefined) strip covers log10(2) of the log10(80) decades: under a fifth.
    assert np.log10(2) / np.log10(80) < 0.2


def test_robust_whiskers_are_the_95_percent_intervals_clipped_to_0_100():
    extra = {"robust/test/pgd": {"mean": 40.0, "std": 2.0, "ci": [35.0, 47.0], "n_points": 200},
             "clean/test": {"mean": 98.0, "std": 1.0, "ci": [95.0, 101.0], "n_points": 200}}
    rows = [_row("salun", 90.0, 95.0, seeds=3, extra=extra)]
    fig = plots.robust_bars.figure(rows, "Linf, ε = 8/255")
    ax = fig.axes[0]
    [bars] = [c for c in ax.containers if isinstance(c, BarContainer)]
    segments = bars.errorbar.lines[2][0].get_segments()
    spans = sorted((float(seg[0][1]), float(seg[1][1])) for seg in segments)
    assert spans == [(35.0, 47.0), (95.0, 100.0)]  # the interval, cut at 100 %
    assert fig.get_figwidth() <= plots.MAX_WIDTH
