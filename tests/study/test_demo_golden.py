"""No behaviour change: the demo's numbers are those main produced before the architecture changes.

``golden/demo_summary.json`` holds the point value of every metric of every row of the demo
study's summary.json. It was first written before issue 24's changes (the study layer, the API
front door, one parse and one data load per request) and re-written after them, when every value
the two had in common was bit-identical except those another change redefined on purpose (its
``about`` gives the counts and the commits). This test re-runs the demo end to end (train, retrain,
five methods, MIA, PGD, MLflow, report) and compares every value exactly: a refactoring that
changes a seed, a split, a data pass or the order of random draws changes some of them; a change
meant to move numbers re-writes the file and says so.

Minutes on a 2-core CPU, so ``deep`` (``make test-deep``). Exact equality holds on the machine and
torch build the golden file came from; CPU kernels of another machine may differ in the last bits.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden") / "demo_summary.json"


def point_values(summary: dict) -> dict[str, dict[str, float]]:
    """Row key -> metric -> mean, leaving out run times (time/*, rte_seconds, train/epoch_seconds:
    not results)."""
    return {f"{r['forget']}|{r['label']}|{r['variant']}": {
        k: v["mean"] for k, v in r["values"].items() if not k.startswith("time/") and not k.endswith("_seconds")}
        for r in summary["rows"]}


def differences(golden: dict, now: dict) -> list[str]:
    out = [f"row {k} missing" for k in golden.keys() - now.keys()]
    out += [f"row {k} new" for k in now.keys() - golden.keys()]
    for row in golden.keys() & now.keys():
        g, n = golden[row], now[row]
        out += [f"{row}: {k} missing" for k in g.keys() - n.keys()]
        out += [f"{row}: {k} new" for k in n.keys() - g.keys()]
        for k in g.keys() & n.keys():
            same = g[k] == n[k] or (isinstance(g[k], float) and isinstance(n[k], float)
                                    and math.isnan(g[k]) and math.isnan(n[k]))
            if not same:
                out.append(f"{row}: {k} was {g[k]!r}, now {n[k]!r}")
    return sorted(out)


def test_the_comparison_sees_a_changed_value():
    golden = json.loads(GOLDEN.read_text())["rows"]
    changed = json.loads(json.dumps(golden))
    row = next(iter(changed))
    key = next(k for k in changed[row] if k.startswith("mia_efficacy"))
    changed[row][key] = changed[row][key] + 1e-12
    assert differences(golden, golden) == []
    assert differences(golden, changed) == [f"{row}: {key} was {golden[row][key]!r}, now {changed[row][key]!r}"]
    del changed[row]
    assert f"row {row} missing" in differences(golden, changed)


@pytest.mark.deep
@pytest.mark.timeout(1800)
def test_demo_numbers_are_the_golden_ones(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("UNLEARNBENCH_DATA", None)
    cmd = [sys.executable, "-m", "unlearnbench", "demo", "--out", str(tmp_path / "reports"), "--work-dir",
           str(tmp_path / "work"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--quiet"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1700)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "reports" / "demo" / "summary.json").read_text())
    golden = json.loads(GOLDEN.read_text())
    assert summary["source"]["study_id"] == golden["study_id"]  # the same study configuration
    assert differences(golden["rows"], point_values(summary)) == []
