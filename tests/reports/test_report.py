"""Reports from hand-made MLflow runs: numbers, regressions, files, CLI."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import re
import statistics

import pytest
from report_helpers import BASE, COUNTS, log_study, records
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.eval import intervals as iv
from unlearnbench.reports import build_report, load_runs, write_report

runner = CliRunner()


def _md_table(markdown: str, spec: str) -> dict[str, dict[str, str]]:
    """Parse the Markdown table under '## Forget `spec`' into {method: {header: cell}}."""
    section = markdown.split(f"## Forget `{spec}`", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        table[cells[0]] = dict(zip(header, cells, strict=True))
    return table


def _fmt(values: list[float], n: int | None = None, floor: float | None = None) -> str:
    """mean ± std [95 % interval]: scipy's t interval over seeds and, for a proportion with n
    points per run, statsmodels' Wilson interval on those n images (every seed is scored on the
    same images), their half-widths added in quadrature; ``floor``: the least value the quantity
    can take (0 for a gap or a run time)."""
    from scipy import stats
    from statsmodels.stats.proportion import proportion_confint

    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    sd = statistics.stdev(values)
    lo, hi = (mean, mean) if sd == 0 else stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sd / len(values) ** 0.5)
    if n is not None:
        wlo, whi = (100 * v for v in proportion_confint(mean / 100 * n, n, method="wilson"))
        lo, hi = mean - math.hypot(mean - lo, mean - wlo), mean + math.hypot(hi - mean, whi - mean)
        lo, hi = max(0.0, lo), min(100.0, hi)
    if floor is not None:
        lo = max(lo, floor)
    return f"{mean:.2f} ± {sd:.2f} [{lo:.2f}, {hi:.2f}]"


def test_markdown_numbers_equal_the_mlflow_metrics(mlflow_uri, experiment, tmp_path):
    from mlflow import MlflowClient

    log_study(mlflow_uri, experiment, records())
    result = build_report(experiment, tmp_path, tracking_uri=mlflow_uri)
    md = result.markdown.read_text()
    table = _md_table(md, "class:3")
    assert [k for k in table if not k.startswith("*n")] == ["retrain", "original", "l1_sparse", "salun"]  # references first

    # Read the metrics back from MLflow (not from the fixture) and recompute mean ± sample std.
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("kind") != "study"]
    assert len(runs) == 12
    columns = {"UA": "ua", "RA": "retain_acc", "TA": "test_acc", "MIA-Efficacy": "mia_efficacy",
               "Robust test pgd": "robust/test/pgd", "Avg. Gap": "avg_gap", "RTE (s)": "rte_seconds"}
    summary = json.loads(result.summary_json.read_text())
    for method in BASE:
        mine = [r for r in runs if r.data.tags["method"] == method]
        row = next(r for r in summary["rows"] if r["label"] == method)
        assert row["seeds"] == [0, 1, 2]
        for header, key in columns.items():
            values = [r.data.metrics[key] for r in mine]
            floor = 0.0 if key in ("avg_gap", "rte_seconds") else None  # never below 0 (salun's Avg. Gap)
            assert table[method][header].rstrip("*") == _fmt(values, COUNTS.get(f"n/{key}"), floor), (method, header)
            assert row["values"][key]["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12, abs=1e-12)
            assert row["values"][key]["n"] == 3
        assert table[method]["Seeds"] == "3"
    # The known numbers themselves (guards against reading the wrong runs consistently).
    # (t interval over 3 seeds: mean ± 4.303 sd / sqrt 3, and the Wilson interval on the 360 (180,
    # 1200) images each seed is scored on, added in quadrature; RA of the original: 3 equal seeds,
    # so the Wilson interval of 99.9 % on 1200 points alone, not on 3 × 1200)
    assert table["salun"]["UA"] == "98.83 ± 1.26 [94.58, 100.00]"  # clipped to 100 %; within noise
    assert table["salun"]["TA"] == "95.88 ± 0.33 [93.16, 97.69]"
    assert table["l1_sparse"]["TA"].endswith("*")  # 3.2 points below retrain: beyond the noise
    assert table["original"]["RA"] == "99.90 ± 0.00 [99.50, 99.98]"
    assert table["retrain"]["UA"] == "100.00 ± 0.00 [97.91, 100.00]"  # Wilson: 180 / (180 + 1.96²)
    assert table["*n (points)*"]["UA"] == "180" and table["*n (points)*"]["RA"] == "1200"
    assert table["salun"]["Avg. Gap"] == "0.83 ± 0.38 [0.00, 1.78]"  # the t interval reaches -0.12: clipped
    assert "No previous report" in md


def test_gaps_to_retrain_beyond_the_noise(mlflow_uri, experiment, tmp_path):
    """``*`` marks a difference to retrain whose 95 % interval excludes 0: l1_sparse's TA (94.08 vs
    97.25, three seeds each on 360 test images) is beyond it; salun's TA (95.88, 1.4 points
    below) and UA (1.2 points from retrain's on 180-image forget sets) are not; a single seed
    uses Newcombe on the run's n."""
    log_study(mlflow_uri, experiment, records())
    summary = build_report(experiment, tmp_path, tracking_uri=mlflow_uri).summary
    salun = next(r for r in summary["rows"] if r["label"] == "salun")
    retrain = next(r for r in summary["rows"] if r["label"] == "retrain")
    assert "vs_retrain" in retrain and retrain["vs_retrain"] == {}
    l1 = next(r for r in summary["rows"] if r["label"] == "l1_sparse")
    ta = l1["vs_retrain"]["test_acc"]
    diffs = [s["test_acc"] - r["test_acc"] for s, r in zip(BASE["l1_sparse"], BASE["retrain"], strict=True)]
    assert ta["diff"] == pytest.approx(statistics.fmean(diffs)) and ta["beyond_noise"] is True
    assert ta["ci"][1] < 0
    # salun: 1.4 points below on the same 360 images per seed is within the test-set noise
    # (paired t over seeds plus Newcombe from one run's Wilson intervals of both rows)
    s_ta = salun["vs_retrain"]["test_acc"]
    assert s_ta["ci"][0] < 0 < s_ta["ci"][1] and s_ta["beyond_noise"] is False
    ua = salun["vs_retrain"]["ua"]
    assert ua["diff"] == pytest.approx(98.833333 - 100) and ua["ci"][0] < 0 < ua["ci"][1]
    assert ua["beyond_noise"] is False

    one = {"retrain": BASE["retrain"][:1], "salun": [dict(BASE["salun"][0], ua=95.0)]}
    log_study(mlflow_uri, experiment + "-one", records(one))
    rows = build_report(experiment + "-one", tmp_path, tracking_uri=mlflow_uri).summary["rows"]
    cell = next(r for r in rows if r["label"] == "salun")["vs_retrain"]["ua"]
    # UA 95 % vs 100 % of 180 forget images: Newcombe's interval of the difference
    lo, hi = iv.newcombe(0.95, 180, 1.0, 180)
    assert cell["ci"] == pytest.approx([100 * lo, 100 * hi]) and cell["beyond_noise"] is True


def test_classwise_ta_is_the_retained_classes_accuracy(mlflow_uri, experiment, tmp_path):
    base = {"retrain": [dict(m, test_retained_acc=m["test_acc"] + 1.0) for m in BASE["retrain"]],
            "salun": [dict(m, test_retained_acc=50.0 + i) for i, m in enumerate(BASE["salun"])]}
    log_study(mlflow_uri, experiment, records(base))
    md = build_report(experiment, tmp_path, tracking_uri=mlflow_uri).markdown.read_text()
    table = _md_table(md, "class:3")
    assert table["salun"]["TA"] == _fmt([50.0, 51.0, 52.0], 324) + "*"
    assert table["retrain"]["TA"] == _fmt([m["test_acc"] + 1.0 for m in BASE["retrain"]], 324)


def test_single_seed_has_no_std(mlflow_uri, experiment, tmp_path):
    base = {"retrain": BASE["retrain"][:1], "salun": BASE["salun"][:1]}
    log_study(mlflow_uri, experiment, records(base))
    md = build_report(experiment, tmp_path, tracking_uri=mlflow_uri).markdown.read_text()
    # one seed: no std; the Wilson interval of 99 % of the 180 forget images
    w = iv.wilson(0.99, 180)
    assert _md_table(md, "class:3")["salun"]["UA"] == f"99.00 [{100 * w[0]:.2f}, {100 * w[1]:.2f}]"


def _worse(base: dict) -> dict:
    worse = copy.deepcopy(base)
    for m in worse["salun"]:
        m["test_acc"] -= 5.0  # TA: higher is better -> regression
    for m in worse["l1_sparse"]:
        m["ua"] -= 10.0  # UA further from retrain's 100 -> regression
        m["retain_acc"] += 2.0  # RA better -> improvement
    for m in worse["original"]:
        m["ua"] = 30.0  # a reference row is not judged by its distance to retrain
    return worse


def test_regressions_are_flagged_against_the_previous_report(mlflow_uri, experiment, tmp_path):
    log_study(mlflow_uri, experiment, records())
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    first = write_report(load_runs(experiment, mlflow_uri), tmp_path, now=t0)
    assert first.previous_created is None and first.changes == []

    log_study(mlflow_uri, experiment, records(_worse(BASE)))  # the next study of the experiment
    second = write_report(load_runs(experiment, mlflow_uri), tmp_path, now=t0 + dt.timedelta(days=1))
    assert second.previous_created == first.summary["created"]
    flagged = {(c.label, c.metric, c.status) for c in second.changes}
    assert ("salun", "test_acc", "regression") in flagged
    assert ("l1_sparse", "ua", "regression") in flagged
    assert ("l1_sparse", "retain_acc", "improvement") in flagged
    assert not any(c.label == "original" and c.metric == "ua" for c in second.changes)
    # Unchanged metrics are not flagged (retrain is identical in both studies).
    assert not any(c.label == "retrain" for c in second.changes)
    assert {(c.label, c.metric) for c in second.regressions} == {("salun", "test_acc"), ("l1_sparse", "ua")}
    md = second.markdown.read_text()
    assert "**REGRESSION** salun on class:3: TA (test_acc) 95.88 → 90.88" in md
    html = second.html.read_text()
    assert "2 regressions" in html

    # Re-rendering the same runs compares with the last report of *other* runs: same flags.
    third = write_report(load_runs(experiment, mlflow_uri), tmp_path, now=t0 + dt.timedelta(days=2))
    assert [c.to_dict() for c in third.changes] == [c.to_dict() for c in second.changes]
    assert len(list((tmp_path / experiment).glob("history/*.json"))) == 3

    # A small change stays within the tolerance; a larger tolerance silences the TA drop.
    quiet = write_report(load_runs(experiment, mlflow_uri), tmp_path / "tol", tolerance=6.0, now=t0)
    assert quiet.changes == []


def test_missing_method_and_failed_runs_are_reported(mlflow_uri, experiment, tmp_path):
    log_study(mlflow_uri, experiment, records())
    write_report(load_runs(experiment, mlflow_uri), tmp_path, now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    base = {k: v for k, v in BASE.items() if k != "l1_sparse"}
    failed = [{"method": "l1_sparse", "forget": "class:3", "seed": s, "kind": "unlearn", "error": "RuntimeError: boom"}
              for s in range(3)]
    log_study(mlflow_uri, experiment, records(base), failed=failed)
    result = write_report(load_runs(experiment, mlflow_uri), tmp_path,
                          now=dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc))
    assert [(c.label, c.status) for c in result.regressions] == [("l1_sparse", "missing")]
    md = result.markdown.read_text()
    assert "## Failed runs" in md and "RuntimeError: boom" in md
    assert len(result.summary["failed"]) == 3


def test_report_command_and_user_errors(mlflow_uri, experiment, tmp_path):
    log_study(mlflow_uri, experiment, records())
    out = tmp_path / "reports"
    res = runner.invoke(app, ["report", "--experiment", experiment, "--out", str(out), "--tracking-uri", mlflow_uri, "-q"])
    assert res.exit_code == 0, res.output
    assert (out / experiment / "report.html").is_file() and (out / experiment / "summary.md").is_file()
    assert "No previous report" in res.output
    # The report was attached to the study run, so it opens in the MLflow UI too.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    parent = load_runs(experiment, mlflow_uri, with_artifacts=False).parent
    assert {a.path for a in client.list_artifacts(parent["run_id"], "report")} == {"report/report.html", "report/summary.md"}

    res = runner.invoke(app, ["report", "--experiment", "no-such-experiment", "--tracking-uri", mlflow_uri])
    assert res.exit_code == 2
    assert "does not exist" in res.output and "Traceback" not in res.output
    from mlflow import MlflowClient as _Client

    _Client(tracking_uri=mlflow_uri).create_experiment(experiment + "-empty")
    res = runner.invoke(app, ["report", "--experiment", experiment + "-empty", "--tracking-uri", mlflow_uri,
                              "--out", str(out)])
    assert res.exit_code == 2 and "no evaluated runs" in res.output
    assert not (out / (experiment + "-empty")).exists()  # nothing half-written
    res = runner.invoke(app, ["report", "--experiment", experiment, "--tracking-uri", f"sqlite:///{tmp_path}/none.db"])
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not (tmp_path / "none.db").exists()


def test_html_is_self_contained(mlflow_uri, experiment, tmp_path):
    log_study(mlflow_uri, experiment, records())
    html = build_report(experiment, tmp_path, tracking_uri=mlflow_uri).html.read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 6  # UA vs TA, gap bars, Pareto, ROC, robust bars, per-class heat map
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html  # nothing to fetch


def test_report_cli_gates_on_regressions_and_picks_a_study(mlflow_uri, experiment, tmp_path):
    """--fail-on-regression exits 1 on the worse study, --tolerance widens the gate, --run-id picks
    an older study: the CLI flags a scheduled job would use."""
    out = str(tmp_path / "reports")
    base = ["report", "--experiment", experiment, "--out", out, "--tracking-uri", mlflow_uri, "-q"]
    first_id = log_study(mlflow_uri, experiment, records())
    res = runner.invoke(app, [*base, "--fail-on-regression"])
    assert res.exit_code == 0, res.output  # nothing to compare with yet
    log_study(mlflow_uri, experiment, records(_worse(BASE)))
    res = runner.invoke(app, [*base, "--fail-on-regression"])
    assert res.exit_code == 1, res.output
    assert "2 regression(s)" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, [*base, "--fail-on-regression", "--tolerance", "20"])
    assert res.exit_code == 0, res.output  # TA −5 and UA −10 are within 20 points
    res = runner.invoke(app, [*base, "--run-id", first_id, "--no-log"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "reports" / experiment / "summary.md").read_text()
    assert f"parent run {first_id}" in md
    assert _md_table(md, "class:3")["salun"]["TA"].startswith("95.88 ± 0.33 [")  # the first study's numbers, not the worse ones
    res = runner.invoke(app, [*base, "--run-id", "0" * 32])
    assert res.exit_code == 2 and "is not a study run" in res.output
    res = runner.invoke(app, [*base, "--tolerance", "-1"])
    assert res.exit_code == 2 and "--tolerance must be zero or positive" in res.output


def _summary(cells: dict[str, dict[str, dict]]) -> dict:
    """A summary dict with one class:3 row per label: {label: {key: Stat dict}}."""
    rows = [{"forget": "class:3", "label": lab, "method": lab, "values": vals} for lab, vals in cells.items()]
    return {"rows": rows}


def test_interval_gate_flags_changes_beyond_the_noise_only():
    from unlearnbench.reports.compare import compare
    from unlearnbench.reports.summary import Stat

    def one(v, n=360):  # one seed, a proportion on n points: Wilson
        return Stat.of([v], "test_acc", {"n/test_acc": n}).to_dict()

    # One seed, 360 test images: TA 96.0 -> 94.5 is within the noise (Newcombe ±2.6 points) ...
    before = _summary({"retrain": {"test_acc": one(97.0)}, "salun": {"test_acc": one(96.0)}})
    after = _summary({"retrain": {"test_acc": one(97.0)}, "salun": {"test_acc": one(94.5)}})
    assert compare(after, before) == []
    # ... but beyond the fixed 1-point tolerance, which stays available.
    fixed = compare(after, before, tolerance=1.0)
    assert [(c.label, c.status, c.rule) for c in fixed] == [("salun", "regression", "tolerance")]
    # 10,000 test images: the same 1.5-point drop is beyond the noise.
    big_before = _summary({"salun": {"test_acc": one(96.0, 10_000)}})
    big_after = _summary({"salun": {"test_acc": one(94.5, 10_000)}})
    (change,) = compare(big_after, big_before)
    lo, hi = iv.newcombe(0.945, 10_000, 0.96, 10_000)
    assert change.status == "regression" and change.rule == "interval"
    assert change.noise == pytest.approx(50 * (hi - lo))
    assert "beyond the 95 % noise" in change.describe()
    # Three seeds each: Welch's t from mean / std / seeds (no counts known: old summaries).
    seeds_before = _summary({"salun": {"test_acc": Stat.of([96.0, 96.2, 95.8]).to_dict()}})
    seeds_after = _summary({"salun": {"test_acc": Stat.of([95.0, 95.3, 94.7]).to_dict()}})
    (change,) = compare(seeds_after, seeds_before)
    w = iv.welch([95.0, 95.3, 94.7], [96.0, 96.2, 95.8])
    assert change.status == "regression" and change.noise == pytest.approx((w[1] - w[0]) / 2)
    # A previous summary from before intervals existed (mean, std, n only): the fixed 1-point rule.
    legacy = _summary({"salun": {"test_acc": {"mean": 96.0, "std": None, "n": 1}}})
    (change,) = [c for c in compare(after, legacy) if c.status != "new"]
    assert change.rule == "tolerance" and change.status == "regression"
    # Reference metrics: the distance to retrain must grow beyond the four cells' noise.
    def ua(v):
        return Stat.of([v], "ua", {"n/ua": 180}).to_dict()

    near = _summary({"retrain": {"ua": ua(100.0)}, "scar": {"ua": ua(99.0)}})
    far = _summary({"retrain": {"ua": ua(100.0)}, "scar": {"ua": ua(97.0)}})
    worse = _summary({"retrain": {"ua": ua(100.0)}, "scar": {"ua": ua(80.0)}})
    assert compare(far, near) == []  # 1 -> 3 points from retrain on 180 images: noise
    (change,) = compare(worse, near)
    assert change.status == "regression" and change.current_distance == pytest.approx(20.0)


def test_pruned_rows_are_compared_with_their_sparse_retrain():
    import pandas as pd

    from unlearnbench.reports.summary import summarize

    rows = []
    for label, method, variant, ua in (("retrain", "retrain", "", 100.0), ("retrain [prune=0.95]", "retrain", "prune=0.95", 90.0),
                                       ("salun [prune=0.95]", "salun", "prune=0.95", 90.0), ("salun", "salun", "", 90.0)):
        rows.append({"forget": "class:3", "label": label, "method": method, "variant": variant, "kind": "x",
                     "seed": 0, "ua": ua, "n/ua": 180})
    out = {r["label"]: r for r in summarize(pd.DataFrame(rows), ["ua", "n/ua"])}
    assert out["salun [prune=0.95]"]["vs_retrain"]["ua"]["diff"] == 0.0  # vs the sparse retrain
    assert out["salun"]["vs_retrain"]["ua"]["diff"] == -10.0 and out["salun"]["vs_retrain"]["ua"]["beyond_noise"]
    assert out["retrain [prune=0.95]"]["vs_retrain"] == {}


def test_coinciding_markers_get_separate_labels():
    """A method right on the retrain star (salun used to hide under it) is still named: every
    point gets a label, and labels of coinciding points do not overlap."""
    from unlearnbench.reports.plots import _figure, _label_points

    fig = _figure(5, 4)
    ax = fig.subplots()
    ax.set_xlim(0, 100)
    ax.set_ylim(90, 100)
    _label_points(fig, [(ax, [(99.0, 97.0, "retrain", "black"), (99.2, 97.05, "salun", "orange"),
                              (20.0, 92.0, "ft", "blue")])])
    fig.canvas.draw()
    boxes = {t.get_text(): t.get_window_extent() for t in ax.texts}
    assert set(boxes) == {"retrain", "salun", "ft"}
    assert not boxes["retrain"].overlaps(boxes["salun"])


def test_report_files_follow_the_umask(mlflow_uri, experiment, tmp_path):
    """A shared report must open for a colleague: 0644 under umask 022, like any file `cp` makes."""
    import os
    import stat

    log_study(mlflow_uri, experiment, records())
    old = os.umask(0o022)
    try:
        result = build_report(experiment, tmp_path, tracking_uri=mlflow_uri)
    finally:
        os.umask(old)
    folder = result.html.parent
    files = [result.html, result.markdown, folder / "summary.json", *sorted((folder / "history").glob("*.json"))]
    assert len(files) == 4 and all(f.is_file() for f in files)
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files} == {f.name: "0o644" for f in files}


def test_summary_tables_are_the_terminal_cells_of_a_summary():
    """``api.summary_tables`` (what ``unlearnbench report`` prints): mean ± sample std, the t
    interval over seeds (96 ± 4.303 · 1/√3 = ±2.48), ``beyond_noise`` from the row's gap to
    retrain, specs in the summary's order, and no common seed count when rows differ."""
    from unlearnbench import api
    from unlearnbench.reports.summary import Stat

    def row(spec, label, vals, beyond=False):
        return {"forget": spec, "label": label, "method": label, "seeds": list(range(len(vals))),
                "values": {"test_acc": Stat.of(vals, "test_acc", {}).to_dict()},
                "vs_retrain": {"test_acc": {"beyond_noise": beyond}}}

    summary = {"rows": [row("random:10", "retrain", [96.0, 95.0, 97.0]),
                        row("random:10", "salun", [80.0, 81.0, 79.0], beyond=True),
                        row("class:3", "retrain", [90.0, 92.0]), row("class:3", "salun", [91.0, 89.0, 90.0])]}
    first, second = api.summary_tables(summary)
    assert (first["forget"], first["seeds"], second["forget"], second["seeds"]) == ("random:10", 3, "class:3", None)
    assert first["columns"] == [{"key": "test_acc", "label": "TA"}]
    retrain, salun = first["rows"]
    assert retrain["cells"] == [{"value": "96.00 ± 1.00", "beyond_noise": False, "ci": "[93.52, 98.48]"}]
    assert salun["cells"] == [{"value": "80.00 ± 1.00", "beyond_noise": True, "ci": "[77.52, 82.48]"}]
    assert [r["seeds"] for r in second["rows"]] == [2, 3]
    assert api.expected_tables(summary) == []  # no paper block: nothing beside ours
