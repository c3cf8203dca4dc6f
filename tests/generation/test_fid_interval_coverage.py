"""The coverage simulation behind the FID interval (docs/generation.md, "FID interval"), deep only:
Gaussian features with a known population Fréchet distance, 200 replicates per setting (the
Monte-Carlo standard error of a 95 % coverage is then 1.5 points). Seeded, so it is the docs' table."""

from __future__ import annotations

import pytest
from fid_coverage import HIGH_DIM, SETTINGS, coverage

from unlearnbench.eval.metrics.generation import FID_INTERVAL_METHOD


@pytest.mark.deep
@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_basic_bootstrap_covers_the_population_fid_and_the_percentile_one_does_not(setting):
    assert FID_INTERVAL_METHOD == "basic"
    r = coverage(setting, reps=200)
    assert r["mean_fid"] > r["truth"]  # the plug-in FID is biased upwards
    assert abs(r["mean_bc"] - r["truth"]) < (r["mean_fid"] - r["truth"]) / 2  # the correction removes most of it
    assert r["cover/basic"] >= 0.92  # nominal 0.95; the docs' table has the measured values
    assert r["cover/percentile"] <= 0.5  # the interval the platform used before: it sits above the estimate
    assert r["cover/BCa"] <= 0.75


@pytest.mark.deep
def test_basic_bootstrap_falls_short_but_is_still_best_where_many_dimensions_count():
    """The flat 64-d setting: the docs say 85 % and that it is the best of the four; hold them to it."""
    r = coverage(HIGH_DIM, reps=200)
    assert r["mean_fid"] > 2 * r["truth"]  # a bias larger than the distance itself
    assert r["mean_bc"] - r["truth"] < 0.15 * (r["mean_fid"] - r["truth"])  # the bootstrap recovers most of it
    assert 0.80 <= r["cover/basic"] < 0.92
    assert r["cover/basic"] >= max(r["cover/percentile"], r["cover/BCa"], r["cover/bc-normal"])
