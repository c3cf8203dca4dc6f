"""Results that read well: repr() and a notebook's _repr_html_ for Report, UnlearnData and
RobustResult show numbers with n and intervals, never tensor dumps; to_frame() keeps n and the
intervals (checked against statsmodels' Wilson interval)."""

from __future__ import annotations

import pytest
import torch
from statsmodels.stats.proportion import proportion_confint

import unlearnbench as ub
from unlearnbench.robust.evaluate import RobustResult, wilson


@pytest.fixture(scope="module")
def report_and_data():
    from unlearnbench.core.data import prepare
    from unlearnbench.core.models import create_model

    _, data = prepare("digits", "class:3", split_seed=0)
    torch.manual_seed(0)
    model = create_model("cnn", 10, 1, 8, data.info.mean, data.info.std).eval()
    report = ub.evaluate(model, data, metrics=["forget_acc", "retain_acc", "test_acc"],
                         reference={"forget_acc": 0.0, "test_acc": 90.0}, name="demo")
    return report, data


def test_to_frame_has_n_and_intervals(report_and_data):
    report, _ = report_and_data
    frame = report.to_frame()
    assert list(frame.columns) == ["value", "n", "ci_low", "ci_high", "reference", "gap", "gap_ci_low",
                                   "gap_ci_high", "direction"]
    n = report.n("test_acc")
    assert frame.loc["test_acc", "n"] == n and n == len(report_and_data[1].test)
    lo, hi = proportion_confint(round(report["test_acc"] / 100 * n), n, method="wilson")
    assert frame.loc["test_acc", "ci_low"] == pytest.approx(100 * lo, abs=1e-6)
    assert frame.loc["test_acc", "ci_high"] == pytest.approx(100 * hi, abs=1e-6)
    assert frame.loc["forget_acc", "reference"] == 0.0
    g = report.gap_interval("test_acc")
    assert (frame.loc["test_acc", "gap_ci_low"], frame.loc["test_acc", "gap_ci_high"]) == pytest.approx(g)


def test_report_repr_and_html(report_and_data):
    report, _ = report_and_data
    text = repr(report)
    assert text.startswith("Report 'demo': cnn on digits forget class:3") or text.startswith("Report 'demo'")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("test_acc"))
    lo, hi = report.interval("test_acc")
    assert f"[{lo:.2f}, {hi:.2f}]" in line and f"n={report.n('test_acc')}" in line and "reference 90.00" in line
    assert "tensor(" not in text and len(text.splitlines()) < 20
    html = report._repr_html_()
    assert html.startswith("<div>") and "<table" in html and "ci_low" in html and "tensor(" not in html


def test_unlearn_data_repr(report_and_data):
    _, data = report_and_data
    text = repr(data)
    assert "tensor(" not in text and len(text.splitlines()) <= 12
    assert "digits: 1x8x8 uint8 images" in text and "10 classes" in text
    assert f"retain: {len(data.retain)} images" in text and "forget: class:3" in text
    assert "[0, 1] images as they are" in text
    assert "<table>" in data._repr_html_() and "tensor(" not in data._repr_html_()


def test_robust_result_repr_and_wilson():
    for k, n in ((0, 10), (3, 10), (10, 10), (57, 200)):
        assert wilson(k / n, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-12)
    res = RobustResult(clean_acc=90.0, robust_acc=40.0, n=200, stages={"clean": 180, "apgd-ce": 90, "apgd-t": 80},
                       seconds=12.5, attack="autoattack", stage_seconds={"apgd-ce": 5.0, "apgd-t": 7.5},
                       robust=torch.zeros(200, dtype=torch.bool))
    text = repr(res)
    lo, hi = proportion_confint(80, 200, method="wilson")
    assert f"robust   40.00%  [{100 * lo:.2f}, {100 * hi:.2f}]" in text and "n=200" in text
    assert "clean 180 -> apgd-ce 90 (5.0 s) -> apgd-t 80 (7.5 s)" in text and "tensor(" not in text
    assert res._repr_html_().startswith("<pre>")
    # one stage recorded (a result built by hand): no stage line
    one = RobustResult(clean_acc=90.0, robust_acc=40.0, n=10, stages={"pgd": 4}, seconds=1.0, attack="pgd")
    assert "after each stage" not in repr(one) and "n=10" in repr(one)
