"""Details of the report a reader checks first: counts as integers, intervals inside the range a
value can take, the code version without a git checkout, the device and precision actually used."""

from __future__ import annotations

import math

import pytest

from unlearnbench.reports.runs import code_version
from unlearnbench.reports.summary import Stat, cell_text, digits_for, valid_range


def test_counts_print_as_integers():
    row = {"values": {"n/ua": Stat.of([124.0, 124.0], "n/ua").to_dict(),
                      "ua": Stat.of([91.25, 93.75], "ua").to_dict()}, "vs_retrain": {}}
    assert cell_text(row, "n/ua", ci=False) == "124 ± 0"
    assert cell_text(row, "ua", ci=False) == "92.50 ± 1.77"
    assert digits_for("mia/loss/forget_test/n_members") == 0 and digits_for("rte_seconds") == 2


@pytest.mark.parametrize(("key", "values", "lo", "hi"), [
    ("rte_seconds", [0.05, 0.9, 0.06], 0.0, math.inf),  # t interval reaches below 0 s unclipped
    ("time/unlearn", [0.01, 1.0], 0.0, math.inf),
    ("avg_gap", [0.1, 6.0], 0.0, math.inf),
    ("clean/test", [99.9, 92.0], 0.0, 100.0),
    ("mia/loss/forget_test/auc", [0.99, 0.7], 0.0, 1.0),
])
def test_intervals_stay_inside_the_values_range(key, values, lo, hi):
    from unlearnbench.eval import intervals as iv

    raw = iv.t_interval(values)
    assert raw[0] < lo or raw[1] > hi  # the case the clipping is for
    ci = Stat.of(values, key).ci
    assert valid_range(key) == (lo, hi)
    assert lo <= ci[0] <= ci[1] <= hi
    assert ci == (max(raw[0], lo), min(raw[1], hi))  # clipped, not recomputed


def test_code_version_falls_back_to_the_package_version():
    assert code_version({"git_sha": "abc123", "unlearnbench_version": "0.4.0"}) == "abc123"
    assert code_version({"git_sha": "unknown", "unlearnbench_version": "0.4.0"}) == "unlearnbench 0.4.0"
    assert code_version({"unlearnbench_version": "0.4.0"}) == "unlearnbench 0.4.0"
    assert code_version({}) == ""


def test_every_tracked_run_carries_the_package_version():
    import unlearnbench
    from unlearnbench.eval.tracking import standard_tags

    tags = standard_tags({"git_sha": "unknown"})
    assert tags["unlearnbench_version"] == unlearnbench.__version__
    assert "mlflow.source.git.commit" not in tags  # "unknown" is no commit


@pytest.mark.parametrize(("device", "cpu_bf16", "used"), [
    ("cpu:x86_64", False, "fp32"), ("cpu:x86_64", True, "bf16 autocast"), ("cuda:NVIDIA H100 80GB HBM3", False, "bf16 autocast"),
])
def test_the_protocol_line_states_the_device_and_precision_actually_used(device, cpu_bf16, used):
    from unlearnbench.reports.expected import protocol, recipe_line

    study = {"name": "s", "dataset": "cifar10", "recipe": "fast-cifar"}  # amp on CUDA, cpu_bf16 on bf16 CPUs
    line = recipe_line(protocol(study, [], hardware=[{"device": device, "cpu_bf16": cpu_bf16}]))
    assert f"ran on {device} in {used}." in line
    assert "bf16 autocast on CUDA" not in line and "CUDA and bf16 CPUs" not in line  # not the recipe's rule
    # Without run provenance (an old store) the recipe's rule is all there is, and it says so.
    assert "bf16 autocast" in recipe_line(protocol(study, []))


def test_fp32_recipe_stays_fp32_on_a_bf16_cpu():
    from unlearnbench.reports.expected import protocol, recipe_line

    study = {"name": "s", "dataset": "cifar10", "recipe": "fast-cifar", "train": {"cpu_bf16": False}}
    line = recipe_line(protocol(study, [], hardware=[{"device": "cpu:x86_64", "cpu_bf16": True}]))
    assert line.endswith("ran on cpu:x86_64 in fp32.") or "ran on cpu:x86_64 in fp32." in line


def test_the_retrain_recipe_line_states_the_precision_used_too():
    """With a separate Retrain recipe, its settings also drop the recipe's precision rule when the
    hardware is known, and say what the Retrain references computed in there."""
    from unlearnbench.reports.expected import protocol, recipe_line

    study = {"name": "s", "dataset": "cifar10", "recipe": "fast-cifar", "retrain_recipe": "paper-retrain"}
    line = recipe_line(protocol(study, [], hardware=[{"device": "cuda:NVIDIA H100", "cpu_bf16": False}]))
    assert "fp32)" not in line and "autocast on CUDA" not in line and "CUDA and bf16 CPUs" not in line
    assert "`paper-retrain` (" in line and ", ran on cuda:NVIDIA H100 in fp32" in line  # paper-retrain: amp off
    assert "; ran on cuda:NVIDIA H100 in bf16 autocast." in line  # fast-cifar: amp on CUDA
