"""Read the runs of one MLflow experiment into a table a report can be built from.

Which runs a report covers: when the experiment holds study runs (``kind=study`` parents, written
by ``unlearnbench benchmark``), the children of the most recent study (or of ``parent_run_id``);
otherwise every evaluated run of the experiment. Within that set the newest finished run per
(forget spec, method, variant, seed) wins, so a resumed study that retried a failed job counts
the retry once. Runs logged by the evaluation engine follow contract C: metric keys such as
``ua``, ``retain_acc``, ``robust/test/pgd``; tags ``kind``, ``method``, ``forget``, ``seed``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from unlearnbench.core.errors import UserError

log = logging.getLogger(__name__)

# Run kinds that hold evaluated models (``study`` parents and ``report`` runs hold none).
EVALUATED_KINDS = ("retrain", "original", "unlearn")
# The columns every run row has besides its metrics.
ID_COLUMNS = (
    "run_id", "run_name", "status", "kind", "method", "variant", "label", "forget", "seed",
    "dataset", "model", "run_key", "start_time", "git_sha", "code", "error", "device", "cpu_bf16",
)


def code_version(tags: dict[str, str]) -> str:
    """Which code made a run: its git commit, or, from an installed wheel (no git checkout), the
    package version it logged (``unlearnbench 0.4.0``); "" when the run says neither."""
    sha = tags.get("git_sha", "")
    if sha and sha != "unknown":
        return sha
    version = tags.get("unlearnbench_version", "")
    return f"unlearnbench {version}" if version else ""


@dataclass
class RunSet:
    """The runs a report covers. ``runs`` has one row per evaluated run: ID_COLUMNS + metrics."""

    experiment: str
    tracking_uri: str
    runs: pd.DataFrame
    failed: pd.DataFrame
    parent: dict[str, Any] | None = None
    # run_id -> the run's report.json (curves, per-class accuracies) when it was loaded
    artifacts: dict[str, dict] = field(default_factory=dict)

    @property
    def metric_columns(self) -> list[str]:
        return [c for c in self.runs.columns if c not in ID_COLUMNS]


def label_of(method: str, variant: str) -> str:
    """The name a method row carries in tables: ``salun`` or ``salun [prune=0.5]``."""
    return f"{method} [{variant}]" if variant else method


def _client(tracking_uri: str | None):
    from mlflow import MlflowClient

    from unlearnbench.eval import tracking

    uri = tracking.resolve_uri(tracking_uri)
    tracking.check_reachable(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if not db.is_file():
            raise UserError(f"MLflow store {db} does not exist; run a study first or pass the right --tracking-uri.")
    # Alembic logs every schema migration at INFO on a fresh SQLite store.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri), uri


def _search(client, experiment_id: str, filter_string: str = "") -> list:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filter_string, max_results=1000, page_token=token,
            order_by=["attributes.start_time ASC"],
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _seed(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def _row(run) -> dict[str, Any]:
    tags = run.data.tags
    method = tags.get("method") or tags.get("kind") or "?"
    variant = tags.get("variant", "")
    row: dict[str, Any] = {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
        "kind": tags.get("kind", ""),
        "method": method,
        "variant": variant,
        "label": label_of(method, variant),
        "forget": tags.get("forget", ""),
        "seed": _seed(tags.get("seed")),
        "dataset": tags.get("dataset", ""),
        "model": tags.get("model", ""),
        "run_key": tags.get("run_key", ""),
        "start_time": int(run.info.start_time or 0),
        "git_sha": tags.get("git_sha", ""),
        "code": code_version(tags),
        "error": tags.get("error", ""),
        "device": tags.get("device", ""),
        "cpu_bf16": tags.get("cpu_bf16", "") == "true",
    }
    for key, value in run.data.metrics.items():
        if value is not None and math.isfinite(value):
            row[key] = float(value)
    return row


@contextlib.contextmanager
def _no_download_bars() -> Iterator[None]:
    # MLflow draws a tqdm bar per artifact download; a report reads one file per run.
    old = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = old


def _load_report_json(client, run_id: str, tmp: Path) -> dict | None:
    try:
        names = {a.path for a in client.list_artifacts(run_id)}
        if "report.json" not in names:
            return None
        local = client.download_artifacts(run_id, "report.json", str(tmp))
        return json.loads(Path(local).read_text())
    except Exception as exc:  # a missing or unreadable artifact only costs that run's plots
        log.warning("Could not read report.json of run %s: %s", run_id, exc)
        return None


def load_runs(
    experiment: str,
    tracking_uri: str | None = None,
    *,
    parent_run_id: str | None = None,
    with_artifacts: bool = True,
) -> RunSet:
    """Read the runs of ``experiment`` (see the module docstring for which runs count)."""
    client, uri = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise UserError(
            f"Experiment {experiment!r} does not exist in {uri}; pick one of: {', '.join(names) or '(none)'}."
        )
    all_runs = _search(client, exp.experiment_id)
    parents = [r for r in all_runs if r.data.tags.get("kind") == "study"]
    parent = None
    if parent_run_id is not None:
        parent = next((r for r in parents if r.info.run_id == parent_run_id), None)
        if parent is None:
            raise UserError(f"Run {parent_run_id} is not a study run of experiment {experiment!r}; omit --run-id.")
    elif parents:
        parent = max(parents, key=lambda r: r.info.start_time or 0)
    if parent is not None:
        members = [r for r in all_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    else:
        members = all_runs
    members = [r for r in members if r.data.tags.get("kind") in EVALUATED_KINDS]
    rows = [_row(r) for r in members]
    frame = pd.DataFrame(rows, columns=list(ID_COLUMNS)) if not rows else pd.DataFrame(rows)
    finished = frame[frame["status"] == "FINISHED"] if len(frame) else frame
    # The newest finished run per (forget, label, seed) wins: retries and re-runs replace older ones.
    if len(finished):
        finished = (
            finished.sort_values("start_time")
            .drop_duplicates(subset=["forget", "label", "seed"], keep="last")
            .reset_index(drop=True)
        )
    failed = frame[frame["status"] == "FAILED"] if len(frame) else frame
    if len(failed) and len(finished):
        # A failure that a later retry fixed is history, not a current problem.
        done = set(zip(finished["forget"], finished["label"], finished["seed"], strict=True))
        failed = failed[[(f, m, s) not in done for f, m, s in zip(failed["forget"], failed["label"], failed["seed"], strict=True)]]
    failed = failed.reset_index(drop=True)
    parent_info = None
    if parent is not None:
        tags = parent.data.tags
        parent_info = {
            "run_id": parent.info.run_id,
            "run_name": parent.info.run_name,
            "status": parent.info.status,
            "study_id": tags.get("study_id", ""),
            "study": tags.get("study", ""),
            "git_sha": tags.get("git_sha", ""),
            "start_time": int(parent.info.start_time or 0),
        }
    artifacts: dict[str, dict] = {}
    if with_artifacts and len(finished):
        with tempfile.TemporaryDirectory() as tmp, _no_download_bars():
            for run_id in finished["run_id"]:
                data = _load_report_json(client, run_id, Path(tmp) / run_id)
                if data is not None:
                    artifacts[run_id] = data
    return RunSet(experiment, uri, finished, failed, parent_info, artifacts)
