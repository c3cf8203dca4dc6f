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
        mlflow.set_experiment(experiment)
    except Exception as exc:  # MLflow raises many types for a broken store
        raise UserError(f"Cannot use MLflow store {uri} ({str(exc).splitlines()[0][:160]}).") from None
    return uri


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
