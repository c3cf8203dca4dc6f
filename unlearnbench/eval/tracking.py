"""MLflow tracking. The engine never imports mlflow; this module turns results into runs.

Default store: a SQLite file in the working directory (``sqlite:///mlflow.db``); a server via
``--tracking-uri`` / ``MLFLOW_TRACKING_URI``. An unreachable server is reported in one sentence
before any work starts, instead of hanging in MLflow's retry loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from unlearnbench.core.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-./ ]")


def resolve_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def metric_key(name: str) -> str:
    """MLflow accepts letters, digits and ``_ - . / space``; map anything else to ``_``."""
    return _KEY_BAD.sub("_", name)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with a clear sentence when the tracking store cannot be used."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
                if resp.status >= 400:
                    raise OSError(f"HTTP {resp.status}")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(
                f"MLflow server {uri} is unreachable ({reason}); start it or pass "
                f"--tracking-uri {DEFAULT_URI} to log locally."
            ) from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if db.parent != Path("") and not db.parent.exists():
            raise UserError(f"Folder {db.parent} for the MLflow store {uri} does not exist; create it first.")
    elif uri.startswith("file:") or "://" not in uri:
        pass
    else:
        scheme = uri.split("://", 1)[0]
        if scheme not in ("postgresql", "mysql", "mssql", "databricks"):
            raise UserError(f"Unsupported tracking URI {uri!r}; use sqlite:///mlflow.db or http://host:port.")


def _quiet_mlflow() -> None:
    # Alembic prints every schema migration at INFO on a fresh SQLite store.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


def setup(uri: str | None = None, experiment: str = "unlearnbench") -> str:
    """Point MLflow at ``uri`` (checked) and select ``experiment`` (created if missing)."""
    import mlflow

    uri = resolve_uri(uri)
    check_reachable(uri)
    _quiet_mlflow()
    mlflow.set_tracking_uri(uri)
    try:
        if mlflow.get_experiment_by_name(experiment) is None and (root := artifact_root(uri)) is not None:
            # Without this MLflow puts a SQLite store's artifacts in ./mlruns of whatever folder
            # the first run happens to start in; keep them next to the database instead.
            mlflow.create_experiment(experiment, artifact_location=root.as_uri())
        mlflow.set_experiment(experiment)
    except Exception as exc:  # MLflow raises many types for a broken store
        raise UserError(f"Cannot use MLflow store {uri} ({str(exc).splitlines()[0][:160]}).") from None
    return uri


def artifact_root(uri: str) -> Path | None:
    """Artifact folder of a local SQLite store: ``mlartifacts`` next to the database file."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :]).expanduser().resolve().parent / "mlartifacts"


@contextlib.contextmanager
def run(
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
) -> Iterator[Any]:
    """Start a run, log params and tags; a failing body marks the run FAILED and re-raises."""
    import mlflow

    kwargs: dict[str, Any] = {"run_name": name, "nested": nested or parent_run_id is not None}
    if parent_run_id is not None:
        kwargs["parent_run_id"] = parent_run_id
    with mlflow.start_run(**kwargs) as active:
        if params:
            log_params(params)
        if tags:
            mlflow.set_tags({k: str(v) for k, v in tags.items()})
        yield active


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    # MLflow caps param values at 6000 characters.
    mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import math

    import mlflow

    clean = {metric_key(k): float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_history(history: list[dict], step_key: str = "epoch") -> None:
    for record in history:
        step = int(record.get(step_key, 0))
        log_metrics({k: v for k, v in record.items() if k != step_key and isinstance(v, (int, float))}, step=step)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=artifact_path)


# ----------------------------------------------------------------------------- reports


def log_report(
    report: Any,
    *,
    checkpoint: str | Path | None = None,
    artifacts: bool = True,
    log_checkpoint: bool = True,
    parent_run_id: str | None = None,
    nested: bool = False,
    run_name: str | None = None,
    uri: str | None = None,
    experiment: str | None = None,
    extra_tags: Mapping[str, Any] | None = None,
    extra_params: Mapping[str, Any] | None = None,
) -> str:
    """Log an ``eval.report.Report`` to MLflow and return the run id.

    Logs into the active run when one is open (and neither ``parent_run_id`` nor ``nested`` is
    given), otherwise starts a run (a child of ``parent_run_id`` if given). params = the
    flattened ``report.config`` (+ ``extra_params``); metrics = ``report.values`` plus
    ``time/<step>`` timings; tags = kind, method, dataset, model, forget, seed, git_sha
    (+ ``extra_tags``); artifacts (unless ``artifacts=False``) = ``report.json``,
    ``per_class.csv``, ``roc/<pair>.png`` and, unless ``log_checkpoint=False``, the checkpoint
    under ``checkpoint/``. Pass ``uri``/``experiment`` to select the store here, otherwise the
    one from ``setup`` is used. Call only from the driver process (SQLite locks under
    concurrent writers).
    """
    import mlflow

    from unlearnbench.core.config import flatten

    if uri is not None or experiment is not None:
        setup(uri, experiment or "unlearnbench")
    params = {**flatten(report.config), **{k: str(v) for k, v in (extra_params or {}).items()}}
    tags = {**report.tags(), **{k: str(v) for k, v in (extra_tags or {}).items()}}
    active = mlflow.active_run()
    if active is not None and parent_run_id is None and not nested:
        _log_new_params(active.info.run_id, params)
        mlflow.set_tags(tags)
        _log_report_body(report, checkpoint, artifacts, log_checkpoint)
        return active.info.run_id
    name = run_name or report.name or f"{tags['kind'] or 'eval'}-{tags['method'] or tags['model']}-{tags['dataset']}"
    with run(name, params=params, tags=tags, nested=nested, parent_run_id=parent_run_id) as started:
        _log_report_body(report, checkpoint, artifacts, log_checkpoint)
        return started.info.run_id


def _log_new_params(run_id: str, params: Mapping[str, str]) -> None:
    """MLflow refuses to change a logged param: log only keys the run does not have yet."""
    import mlflow

    existing = mlflow.tracking.MlflowClient().get_run(run_id).data.params
    for key in params.keys() & existing.keys():
        if str(params[key])[:6000] != existing[key]:
            log.warning("param %s is already %r on run %s; keeping it (report says %r)", key, existing[key],
                        run_id, params[key])
    fresh = {k: v for k, v in params.items() if k not in existing}
    if fresh:
        log_params(fresh)


def _log_report_body(report: Any, checkpoint: str | Path | None, artifacts: bool, log_checkpoint: bool) -> None:
    import tempfile

    from unlearnbench.eval.plots import save_roc_pngs

    log_metrics(report.values)
    log_metrics(getattr(report, "counts", {}))  # n behind each value (n/<key>, <attack>/n_members): intervals
    log_metrics({f"time/{k}": v for k, v in report.timings.items()})
    if artifacts:
        with tempfile.TemporaryDirectory(prefix="unlearnbench-report-") as tmp:
            folder = Path(tmp)
            (folder / "report.json").write_text(report.to_json())
            log_artifact(folder / "report.json")
            report.per_class.to_csv(folder / "per_class.csv", index=False)
            log_artifact(folder / "per_class.csv")
            for png in save_roc_pngs(report.curves, folder / "roc"):
                log_artifact(png, "roc")
    if checkpoint is not None and log_checkpoint:
        log_artifact(checkpoint, "checkpoint")


def runs_frame(
    experiment: str | None = None,
    *,
    uri: str | None = None,
    filter_string: str = "",
    parent_run_id: str | None = None,
) -> Any:
    """Runs of ``experiment`` (all experiments if None) as a pandas DataFrame
    (``run_id, status, start_time, metrics.<k>, params.<k>, tags.<k>``), newest first."""
    import mlflow

    uri = resolve_uri(uri)
    check_reachable(uri)
    _quiet_mlflow()
    mlflow.set_tracking_uri(uri)
    if parent_run_id:
        clause = f"tags.mlflow.parentRunId = '{parent_run_id}'"
        filter_string = f"{filter_string} and {clause}" if filter_string else clause
    kwargs: dict[str, Any] = {"filter_string": filter_string, "order_by": ["attributes.start_time DESC"]}
    if experiment is None:
        kwargs["search_all_experiments"] = True
    else:
        if mlflow.get_experiment_by_name(experiment) is None:
            raise UserError(f"MLflow experiment {experiment!r} does not exist in {uri}; check --experiment.")
        kwargs["experiment_names"] = [experiment]
    return mlflow.search_runs(**kwargs)


def load_report(run_id: str, *, uri: str | None = None) -> Any:
    """The ``Report`` logged with a run (its ``report.json`` artifact)."""
    import mlflow

    from unlearnbench.eval.report import Report

    uri = resolve_uri(uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="report.json")
    except Exception as exc:  # missing run or artifact
        raise UserError(f"Run {run_id} has no report.json artifact ({str(exc).splitlines()[0][:120]}).") from None
    return Report.load(local)
