"""MLflow tracking. The engine never imports mlflow; this module turns results into runs.

Default store: a SQLite file in the working directory (``sqlite:///mlflow.db``); a server via
``--tracking-uri`` / ``MLFLOW_TRACKING_URI``. An unreachable server is reported in one sentence
before any work starts, instead of hanging in MLflow's retry loop.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from unlearnbench.core.errors import UserError

# The store checks live in eval.store; re-exported here, where their callers have always found them.
from unlearnbench.eval.store import (  # noqa: F401
    DEFAULT_URI,
    check_reachable,
    quote_path,
    resolve_uri,
    sqlite_file,
    store_lock,
)

log = logging.getLogger(__name__)

_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-./ ]")


def metric_key(name: str) -> str:
    """MLflow accepts letters, digits and ``_ - . / space``; map anything else to ``_``."""
    return _KEY_BAD.sub("_", name)


def _quiet_mlflow() -> None:
    # Alembic prints every schema migration at INFO on a fresh SQLite store.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


def setup(uri: str | None = None, experiment: str = "unlearnbench") -> str:
    """Point MLflow at ``uri`` (checked) and select ``experiment`` (created if missing, and tagged
    as model training so MLflow's UI opens it in its training view, not the GenAI one)."""
    import mlflow

    uri = resolve_uri(uri)
    check_reachable(uri)
    _quiet_mlflow()
    db = sqlite_file(uri)
    # Creating or migrating a store, and creating its experiment, happen under the store's lock:
    # concurrent first writers then take turns instead of racing MLflow's migration.
    with store_lock(db, uri) if db is not None else contextlib.nullcontext():
        mlflow.set_tracking_uri(uri)
        try:
            if mlflow.get_experiment_by_name(experiment) is None and (root := artifact_root(uri)) is not None:
                # Without this MLflow puts a SQLite store's artifacts in ./mlruns of whatever folder
                # the first run happens to start in; keep them next to the database instead.
                mlflow.create_experiment(experiment, artifact_location=root.as_uri())
            exp = mlflow.set_experiment(experiment)
            mark_training(exp)
        except Exception as exc:  # MLflow raises many types for a broken store
            raise UserError(f"Cannot use MLflow store {uri} ({str(exc).splitlines()[0][:160]}).") from None
    return uri


# MLflow 3's UI picks an experiment's view from this tag (its values are in the UI's
# ExperimentKind enum; MLflow's onboarding skill documents the two main ones). Untagged
# experiments without runs open in the GenAI view (traces, judges, "Evaluations").
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def mark_training(experiment: Any) -> None:
    """Tag ``experiment`` (an MLflow ``Experiment``) as model training, unless a user chose a kind."""
    import mlflow

    if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def artifact_root(uri: str) -> Path | None:
    """Artifact folder of a local SQLite store: ``mlartifacts`` next to the database file."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts"  # no ~: SQLite does not expand it


@contextlib.contextmanager
def run(
    name: str | None,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    run_id: str | None = None,
    start_ms: int | None = None,
) -> Iterator[Any]:
    """A live run around the work it records: RUNNING from entry, so its duration is the work's;
    ended FINISHED, FAILED (an exception) or KILLED (Ctrl-C, ``KeyboardInterrupt``), and the
    exception re-raised; a ``UserError`` (bad input found during the work) deletes the run. ``run_id`` reopens an existing run (a resumed study's parent; system
    metrics then continue their steps). With ``enable_system_metrics`` on, ``system/*`` metrics
    are sampled while the body runs."""
    import mlflow

    kwargs: dict[str, Any] = {"nested": nested or parent_run_id is not None, "log_system_metrics": False}
    if start_ms is not None and run_id is None:
        # Work that already ran (a study job): the run starts when it did.
        from mlflow.tracking.fluent import _get_experiment_id

        client = mlflow.MlflowClient()
        exp_id = client.get_run(parent_run_id).info.experiment_id if parent_run_id else _get_experiment_id()
        created = client.create_run(exp_id, start_time=int(start_ms), run_name=name,
                                    tags={"mlflow.parentRunId": parent_run_id} if parent_run_id else None)
        kwargs["run_id"] = created.info.run_id
    elif run_id is not None:
        kwargs["run_id"] = run_id
    else:
        kwargs["run_name"] = name
    if parent_run_id is not None and "run_id" not in kwargs:
        kwargs["parent_run_id"] = parent_run_id
    active = mlflow.start_run(**kwargs)
    monitor = system_metrics_monitor(active.info.run_id, resume=run_id is not None)
    status = "FAILED"
    try:
        if params:
            log_params(params)
        if tags:
            mlflow.set_tags(standard_tags(tags))
        yield active
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except UserError:
        # A request refused for its input (found only once the data was read) is no run: it is
        # ended and moved to MLflow's trash, so the run list holds work, not typos.
        status = "DELETE"
        raise
    finally:
        if monitor is not None:
            monitor.finish()
        _end(active.info.run_id, "FAILED" if status == "DELETE" else status)
        if status == "DELETE":
            mlflow.MlflowClient().delete_run(active.info.run_id)


def _end(run_id: str, status: str) -> None:
    """End ``run_id`` with ``status``: pop it from MLflow's active-run stack if it is there (the
    body may have ended it itself), else just set its status."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)
    elif mlflow.MlflowClient().get_run(run_id).info.status == "RUNNING":
        mlflow.MlflowClient().set_terminated(run_id, status)


def system_metrics_monitor(run_id: str, *, resume: bool = False) -> Any:
    """When ``enable_system_metrics`` is on: a started sampler of ``run_id`` (call ``finish()``
    before ending the run); else None. ``resume``: a reopened run, whose steps continue."""
    return _start_monitor(run_id, resume=resume) if _SYSTEM_METRICS["on"] else None


def _start_monitor(run_id: str, *, resume: bool) -> Any:
    """MLflow's own system-metrics sampler, plus a last sample when the run ends.

    MLflow's monitor publishes only after each full sampling interval (10 s by default;
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``), so a run shorter than one interval got no
    ``system/*`` metric at all and every run lost its tail. ``finish`` here takes one more sample
    and publishes what the sampler had collected since its last publication."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class _Monitor(SystemMetricsMonitor):
        def finish(self) -> None:
            super().finish()  # stops the sampler thread and flushes what it published
            try:
                self.collect_metrics()
                pending = self.aggregate_metrics()
                if pending:
                    self.publish_metrics(pending)
                    self.mlflow_logger.flush()
            except Exception as exc:  # a broken sampler must not fail the run it observes
                log.warning("Could not log the last system-metrics sample: %s", exc)

    monitor = _Monitor(run_id, resume_logging=resume)
    monitor.start()
    return monitor


_SYSTEM_METRICS = {"on": False}


def enable_system_metrics(on: bool = True, interval: float | None = None) -> None:
    """Runs started from now on sample CPU/GPU/memory with MLflow's own sampler (``system/*``
    metrics; needs psutil, and pynvml for NVIDIA GPUs). Off by default: a thread per run."""
    if on:
        try:
            import psutil  # noqa: F401
        except ImportError:
            raise UserError("--system-metrics needs psutil: pip install 'unlearnbench[system-metrics]'.") from None
    _SYSTEM_METRICS["on"] = on
    if on and interval is not None:
        import mlflow

        mlflow.set_system_metrics_sampling_interval(interval)


def system_metrics_enabled() -> bool:
    return bool(_SYSTEM_METRICS["on"])


def param_value(value: Any) -> str:
    """A param as a user would type it (``--set`` syntax), never a Python repr: None → ``null``,
    booleans → ``true``/``false``, sequences → ``a,b``, mappings → JSON."""
    import json

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(param_value(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps({str(k): value[k] for k in value}, default=param_value, sort_keys=True)
    if isinstance(value, type):
        return value.__name__
    return str(value)


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    # MLflow caps param values at 6000 characters.
    mlflow.log_params({k: param_value(v)[:6000] for k, v in params.items()})


def standard_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags as strings, plus MLflow's own ``mlflow.source.git.commit`` (the UI's "Source"
    commit) wherever our ``git_sha`` is known, and ``unlearnbench_version``."""
    import unlearnbench

    out = {k: str(v) for k, v in tags.items()}
    # Which code made the run even without a git checkout (a wheel install): the report's "Code:".
    out.setdefault("unlearnbench_version", unlearnbench.__version__)
    sha = out.get("git_sha", "")
    if sha and sha != "unknown":
        out.setdefault("mlflow.source.git.commit", sha)
    return out


def set_tags(tags: Mapping[str, Any]) -> None:
    """Tags on the active run (``standard_tags`` conventions)."""
    import mlflow

    mlflow.set_tags(standard_tags(tags))


def readable_run_name(kind: str, *, method: str = "", dataset: str = "", model: str = "", forget: str = "",
             seed: Any = None, label: str = "") -> str:
    """A name a person can read in the run list: ``salun · class:3 · seed 0 (cnn on digits)``."""
    what = label or method or kind
    parts = [what]
    if kind == "unlearn" and method and label and label != method:
        parts = [label]
    if forget:
        parts.append(forget if kind != "original" else f"before {forget}")
    if seed not in (None, ""):
        parts.append(f"seed {seed}")
    where = " on ".join(p for p in (model, dataset) if p)
    return " · ".join(parts) + (f" ({where})" if where else "")


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


def log_inputs(entries: list[Mapping[str, Any]]) -> None:
    """Log the splits a run used as MLflow dataset inputs (name, digest, source; the split as
    the input's context), from ``eval.inputs.dataset_inputs`` entries."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    for e in entries:
        src = str(e.get("source", ""))
        source = HTTPDatasetSource(src) if src.startswith(("http://", "https://")) else CodeDatasetSource({"source": src})
        dataset = MetaDataset(source, name=str(e["name"]), digest=str(e["digest"]))
        mlflow.log_input(dataset, context=str(e["context"]),
                         tags={"n": str(e.get("n", "")), "forget": str(e.get("forget", "")),
                               "split_seed": str(e.get("split_seed", ""))})


def log_epochs(history: list[Mapping[str, Any]], prefix: str = "") -> None:
    """Per-epoch curves with the epoch as step (``history``: dicts with an ``epoch`` key)."""
    for record in history:
        step = int(record.get("epoch", 0))
        log_metrics({f"{prefix}{k}": v for k, v in record.items() if k != "epoch" and isinstance(v, (int, float))},
                    step=step)


def log_model(model: Any, example: Any, name: str = "model") -> str:
    """Log ``model`` as an MLflow PyTorch model of the active run, with an input example and the
    signature inferred from it (so it can be registered and served); returns its model URI.
    ``example``: a small float tensor batch in the model's input format ([0, 1] images)."""
    import copy

    import mlflow
    import mlflow.pytorch
    import torch

    model = copy.deepcopy(model).to("cpu").eval()  # the caller's model stays where it is
    x = example.detach().float().cpu()
    with torch.no_grad():
        y = model(x).numpy()
    signature = mlflow.models.infer_signature(x.numpy(), y)
    # Pinned requirements: MLflow would otherwise infer them by importing the model in a
    # subprocess (tens of seconds).
    info = mlflow.pytorch.log_model(model, name=name, input_example=x.numpy(), signature=signature,
                                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    return info.model_uri


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
    epochs: list[Mapping[str, Any]] | None = None,
    rename: bool = False,
    train_epochs: list[Mapping[str, Any]] | None = None,
    model_checkpoint: str | Path | None = None,
    span_ms: tuple[int, int] | None = None,
    run_id: str | None = None,
) -> str:
    """Log an ``eval.report.Report`` to MLflow and return the run id.

    Logs into the active run when one is open (and neither ``parent_run_id`` nor ``nested`` is
    given), otherwise starts a run (a child of ``parent_run_id`` if given). params = the
    flattened ``report.config`` (+ ``extra_params``); metrics = ``report.values`` plus
    ``time/<step>`` timings; tags = kind, method, dataset, model, forget, seed, git_sha
    (+ ``extra_tags``); ``epochs``: the unlearning loop's per-epoch rows (``unlearn/*`` curves);
    dataset inputs from ``report.meta["inputs"]``; artifacts (unless ``artifacts=False``) = ``report.json``,
    ``per_class.csv``, ``roc/<pair>.png`` and, unless ``log_checkpoint=False``, the checkpoint
    under ``checkpoint/``. ``train_epochs``: the training curves of the evaluated model
    (``train/*``, step = epoch); ``model_checkpoint``: also log that checkpoint's model as an
    MLflow model; ``span_ms``: (start, end) of the work in ms since the epoch, for a run logged
    after its work ran elsewhere (a study job): the run gets those times, its true duration;
    ``run_id``: log into that (already created) child run instead of a new one.
    ``rename``: give the active run the report's readable name (a run
    opened before the report existed). Pass ``uri``/``experiment`` to select the store here, otherwise the
    one from ``setup`` is used. Call only from the driver process (SQLite locks under
    concurrent writers).
    """
    import mlflow

    from unlearnbench.core.config import flatten

    if uri is not None or experiment is not None:
        setup(uri, experiment or "unlearnbench")
    params = {**flatten(report.config), **report_params(report), **dict(extra_params or {})}
    tags = {**report.tags(), **{k: str(v) for k, v in (extra_tags or {}).items()}}
    m = report.meta
    name = run_name or readable_run_name(
        tags.get("kind") or "eval", method=tags.get("method", ""), dataset=tags.get("dataset", ""),
        model=tags.get("model", ""), forget=tags.get("forget", ""), seed=tags.get("seed", m.get("seed")),
        label=report.name)
    active = mlflow.active_run()
    if active is not None and parent_run_id is None and not nested:
        _log_new_params(active.info.run_id, params)
        mlflow.set_tags(standard_tags({**tags, **({"mlflow.runName": name} if rename else {})}))
        _log_report_body(report, checkpoint, artifacts, log_checkpoint)
        log_epochs(epochs or [], prefix="unlearn/")
        return active.info.run_id
    with run(name, params=params, tags=tags, nested=nested, parent_run_id=parent_run_id, run_id=run_id,
             start_ms=span_ms[0] if span_ms and run_id is None else None) as started:
        _log_report_body(report, checkpoint, artifacts, log_checkpoint)
        log_epochs(epochs or [], prefix="unlearn/")
        log_epochs(train_epochs or [], prefix="train/")
        if model_checkpoint is not None:
            log_checkpoint_model(model_checkpoint)
        run_id = started.info.run_id
    if span_ms is not None:
        import mlflow

        # The work ended at span_ms[1]; logging it afterwards is not part of its duration.
        mlflow.MlflowClient().set_terminated(run_id, "FINISHED", end_time=int(span_ms[1]))
    return run_id


def log_checkpoint_model(path: str | Path) -> str:
    """Log the model of a platform checkpoint as an MLflow PyTorch model (``log_model``), with a
    [0, 1] input example of the checkpoint's image shape."""
    import torch

    from unlearnbench.core.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    model = ckpt.build("cpu")
    m = ckpt.meta
    example = torch.rand(2, int(m.get("in_channels", 3)), int(m.get("image_size", 32)), int(m.get("image_size", 32)),
                         generator=torch.Generator().manual_seed(0))
    return log_model(model, example)


def report_params(report: Any) -> dict[str, Any]:
    """Dataset, model and recipe of a report as params (run comparison filters on params)."""
    m = report.meta
    out = {k: m[k] for k in ("dataset", "model", "forget") if m.get(k) not in (None, "")}
    recipe = m.get("recipe") or report.config.get("recipe")
    if recipe:
        out["recipe"] = recipe
    return out


def _log_new_params(run_id: str, params: Mapping[str, str]) -> None:
    """MLflow refuses to change a logged param: log only keys the run does not have yet."""
    import mlflow

    existing = mlflow.tracking.MlflowClient().get_run(run_id).data.params
    for key in params.keys() & existing.keys():
        if param_value(params[key])[:6000] != existing[key]:
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
    log_inputs(report.meta.get("inputs") or [])
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
