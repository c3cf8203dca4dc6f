"""Jobs of unequal cost (a study's methods run different epochs): the executor's ETA learns the
seconds per unit of cost from the jobs finished so far."""

from __future__ import annotations

import io
import re
import time

import pytest

from unlearnbench.core import progress
from unlearnbench.core.executor import ExecutorConfig, run_jobs, weighted_eta


def test_weighted_eta_numbers():
    cost = [1.0, 9.0, 1.0, 9.0]
    assert weighted_eta(cost, set(), 5.0) is None
    assert weighted_eta(cost, {0}, 2.0) == pytest.approx(2.0 * 19 / 1)  # a cheap job done: 19 units left
    assert weighted_eta(cost, {0, 1}, 20.0) == pytest.approx(20.0 * 10 / 10)
    assert weighted_eta(cost, {0, 1, 2, 3}, 40.0) == 0.0


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_run_jobs_prints_the_weighted_eta(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", stream)
    progress.set_enabled(True)
    progress.set_line_mode(True)
    try:
        out = run_jobs(_sleep, [(0.05,), (0.25,), (0.05,)], ExecutorConfig(), description="jobs",
                       weights=[1, 5, 1])
    finally:
        progress.set_enabled(False)
        progress.set_line_mode(None)
    assert [o.value for o in out] == [0.05, 0.25, 0.05]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and all(ln.startswith("jobs | ") for ln in lines)
    eta = int(re.search(r"ETA (\d+):(\d\d)", lines[0]).group(2))
    # after the cheap first job (~0.05 s for 1 unit), 6 units are left: ~0.3 s, never a naive 2x0.05
    assert eta == 0 and "1/3 jobs" in lines[0]
