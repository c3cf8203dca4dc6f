"""Running a study: ``run_study`` plans the jobs, trains what is not cached, evaluates each
retrained reference once, then the original and every method against it, on the local or the Ray
executor, recording each run as it finishes and resuming an earlier parent run (see the package
docstring)."""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnbench.core.config import flatten, to_dict
from unlearnbench.core.data import DataSource
from unlearnbench.core.errors import UserError
from unlearnbench.core.executor import ExecutorConfig, JobOutcome, run_jobs
from unlearnbench.study.config import StudyConfig, study_from_dict, study_id
from unlearnbench.study.jobs import eval_job, train_job
from unlearnbench.study.plan import EvalJob, plan_jobs, variant_of
from unlearnbench.study.record import child_runs, describe_study, find_parent, log_failure, log_outcome, open_child
from unlearnbench.study.tasks import register_task

log = logging.getLogger(__name__)


@dataclass
class StudyResult:
    study: str
    study_id: str
    experiment: str
    tracking_uri: str
    parent_run_id: str
    total: int  # child runs the study has
    skipped: int  # already finished before this invocation
    finished: int  # finished by this invocation
    failures: list[tuple[str, str]] = field(default_factory=list)  # (run key, error)
    resumed: bool = False
    report: Any = None  # what the reports layer made of it (``api.run_study``: ``reports.study``)

    @property
    def ok(self) -> bool:
        return not self.failures


@register_task("classification", config_type=StudyConfig, from_dict=study_from_dict,
               summary="unlearning methods on classifiers against the retrained reference")
def run_study(
    cfg: StudyConfig,
    *,
    tracking_uri: str | None = None,
    executor: ExecutorConfig | None = None,
    work_dir: str | Path = "runs/cache",
    source: DataSource | None = None,
    new: bool = False,
    study_file: str | Path | None = None,
    on_event: Callable[[str], None] | None = None,
) -> StudyResult:
    """Run (or resume) ``cfg``; see the module docstring. ``new`` starts a fresh parent run even
    when an earlier run of the same study exists. ``on_event`` receives one-line progress notes."""
    import mlflow
    from mlflow import MlflowClient

    from unlearnbench.core import provenance
    from unlearnbench.eval import tracking

    note = on_event or (lambda text: log.info(text))
    executor = executor or ExecutorConfig()
    check_executor(executor)
    source = study_source(cfg, source)
    data_key = preflight(cfg, source)
    work_dir = Path(work_dir).resolve()
    uri = tracking.setup(tracking_uri, cfg.experiment_name)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.experiment_name)
    sid = study_id(cfg)
    trains, evals = plan_jobs(cfg, work_dir, source, data_key)

    parent = None if new else find_parent(client, exp.experiment_id, sid)
    if parent is not None and parent.data.tags.get("data_sha256", data_key[:12]) != data_key[:12]:
        from unlearnbench.core.protocol import DataMismatchError

        raise DataMismatchError(
            f"Study {cfg.name!r} ran on other data (training-set digest {parent.data.tags['data_sha256']}, now "
            f"{data_key[:12]}); point --data-root at that data to resume it, or pass --new to start afresh."
        )
    done: dict[str, Any] = {}
    result_notes: list[str] = []
    if parent is not None:
        for child in child_runs(client, exp.experiment_id, parent.info.run_id):
            key = child.data.tags.get("run_key")
            if key and child.info.status == "FINISHED":
                done[key] = child
            elif child.info.status in ("RUNNING", "KILLED"):
                # An interrupted attempt: KILLED by the Ctrl-C that stopped it, or left RUNNING for
                # ever by a driver killed outright (closed as KILLED now). The job runs again
                # below and its new run replaces this one (moved to MLflow's trash): nothing twice.
                if child.info.status == "RUNNING":
                    client.set_terminated(child.info.run_id, "KILLED")
                    result_notes.append(key or child.info.run_id)
                if key:
                    client.delete_run(child.info.run_id)
    pending = [j for j in evals if j.key not in done]
    result = StudyResult(cfg.name, sid, cfg.experiment_name, uri, "", len(evals), len(evals) - len(pending), 0,
                         resumed=parent is not None)
    if parent is not None:
        note(f"Resuming study run {parent.info.run_id}: {result.skipped} of {len(evals)} runs already finished.")
        before = parent.data.tags.get("threads")
        if before is not None and before != str(executor.threads_per_job):
            # The thread count changes CPU results: the resumed runs would not match the finished ones.
            warnings.warn(f"This study's finished runs used {before} thread(s) per job, this run uses "
                          f"{executor.threads_per_job}; CPU results may differ between them (pass --threads {before}).",
                          stacklevel=2)
    if result_notes:
        note(f"Closed {len(result_notes)} run(s) left RUNNING by an interrupted study as KILLED: {', '.join(result_notes)}.")

    if parent is None:
        tags = {"kind": "study", "study": cfg.name, "study_id": sid, "dataset": cfg.dataset, "model": cfg.model,
                "git_sha": provenance.git_sha(), "data_sha256": data_key[:12],
                "threads": str(executor.threads_per_job), "mlflow.note.content": describe_study(cfg)}
        active = mlflow.start_run(run_name=f"study {cfg.name} ({cfg.model} on {cfg.dataset})",
                                  tags=tracking.standard_tags(tags), log_system_metrics=False)
    else:
        active = mlflow.start_run(run_id=parent.info.run_id, log_system_metrics=False)
    parent_id = active.info.run_id
    # Sampled over the whole study, with a last sample at its end (steps continue on a resume).
    monitor = tracking.system_metrics_monitor(parent_id, resume=parent is not None)
    result.parent_run_id = parent_id
    status = "FAILED"
    live: dict[str, str] = {}  # job key -> its child run, opened when the job started, until logged
    try:
        if parent is None:
            tracking.log_params({**flatten(to_dict(cfg)), "study_id": sid})
            mlflow.log_dict(to_dict(cfg), "study.json")
            if study_file is not None and Path(study_file).is_file():
                mlflow.log_artifact(str(study_file))
        _run_pending(cfg, pending, trains, done, parent_id, executor, result, client, note, live)
        status = "FINISHED" if not result.failures else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        for run_id in live.values():  # the child whose job Ctrl-C stopped
            client.set_terminated(run_id, "KILLED")
        raise
    finally:
        if monitor is not None:
            monitor.finish()
        mlflow.set_tag("failed_runs", str(len(result.failures)))
        mlflow.end_run(status)
    return result


def _run_pending(cfg, pending, trains, done, parent_id, executor, result, client, note, live) -> None:
    if not pending:
        note("Nothing to run: every run of this study has finished.")
        return
    # 1. Train what the pending runs need (cached checkpoints return at once).
    needed = {j.original_path for j in pending} | {j.retrain_path for j in pending}
    todo = [t for t in trains if t.path in needed]
    needed |= {t.dense_path for t in todo if t.sparse}  # sparse models need their dense original first
    todo = [t for t in trains if t.path in needed]
    trained: dict[str, dict] = {}
    broken: dict[str, str] = {}
    cached = 0
    # Dense models first, then the sparse ones built from them (a phase each, parallel within).
    for phase, description in ((False, "train originals and references"), (True, "train sparse originals and references")):
        group = [t for t in todo if t.sparse == phase]
        runnable = [t for t in group if not (t.sparse and t.dense_path in broken)]
        for t in group:
            if t not in runnable:
                broken[t.path] = f"training the dense original it is pruned from failed: {broken[t.dense_path]}"
        if not runnable:
            continue
        outcomes = run_jobs(train_job, [(t,) for t in runnable], executor, description=description)
        for t, out in zip(runnable, outcomes, strict=True):
            what = ("the sparse " if t.sparse else "the ") + ("retrained reference" if t.exclude else "original model")
            if out.ok:
                trained[t.path] = out.value["meta"]
            else:
                broken[t.path] = f"training {what} failed: {out.error}"
        cached += sum(1 for o in outcomes if o.ok and o.value.get("cached"))
    note(f"Models ready: {len(trained)} ({cached} from the cache), {len(broken)} failed.")

    def failed_dependency(job: EvalJob) -> bool:
        err = broken.get(job.original_path) or broken.get(job.retrain_path)
        if err:
            log_failure(job, err, "", parent_id, cfg, client, result)
        return bool(err)

    # 2. Evaluate each retrained reference once (or read it back from its finished run).
    # Keyed by (spec, seed, prune variant): pruned rows have their own (sparse) reference.
    references: dict[tuple[str, int, str], dict[str, float]] = {}
    ref_outcomes: dict[tuple[str, int, str], dict[str, Any]] = {}  # per-example outcomes: paired gaps
    for key, run in done.items():
        if key.startswith("retrain|"):
            _, _, spec, seed = key.split("|")
            references[(spec, int(seed), run.data.tags.get("variant", ""))] = dict(run.data.metrics)
            ref_outcomes[(spec, int(seed), run.data.tags.get("variant", ""))] = _logged_outcomes(
                run.info.run_id, result.tracking_uri)
    ref_jobs = [
        dataclasses.replace(j, retrain_seconds=trained[j.retrain_path].get("metrics", {}).get("train_seconds"))
        for j in pending if j.kind == "retrain" and not failed_dependency(j)
    ]

    def opener(jobs: list[EvalJob]):
        def on_start(i: int) -> None:
            live[jobs[i].key] = open_child(jobs[i], parent_id, cfg, client)
        return on_start

    def on_ref(i: int, outcome: JobOutcome) -> None:
        job = ref_jobs[i]
        values = log_outcome(job, outcome, parent_id, cfg, client, result, train_history=_history(trained, job),
                             run_id=live.pop(job.key, None))
        if values is not None:
            references[(job.spec, job.seed, job.variant)] = values
            ref_outcomes[(job.spec, job.seed, job.variant)] = json.loads(outcome.value["report"]).get("outcomes") or {}

    run_jobs(eval_job, [(j,) for j in ref_jobs], executor, description="evaluate references", on_result=on_ref,
             on_start=opener(ref_jobs))

    # 3. The original model and every method, against the reference values.
    rest: list[EvalJob] = []
    for job in pending:
        if job.kind == "retrain" or failed_dependency(job):
            continue
        ref = references.get((job.spec, job.seed, variant_of(job.prune, None)))
        if ref is None:
            log_failure(job, "the retrained reference of this forget spec and seed could not be evaluated", "",
                         parent_id, cfg, client, result)
            continue
        rest.append(dataclasses.replace(job, reference_values=ref, reference_outcomes=ref_outcomes.get(
            (job.spec, job.seed, variant_of(job.prune, None))) or None))

    def on_rest(i: int, outcome: JobOutcome) -> None:
        log_outcome(rest[i], outcome, parent_id, cfg, client, result, train_history=_history(trained, rest[i]),
                    run_id=live.pop(rest[i].key, None))

    run_jobs(eval_job, [(j,) for j in rest], executor, description="unlearn and evaluate", on_result=on_rest,
             on_start=opener(rest), weights=[_cost(j) for j in rest])


def _history(trained: dict[str, dict], job: EvalJob) -> list[dict] | None:
    """The training curves of the model an original or retrain row evaluates (None for methods)."""
    path = {"original": job.original_path, "retrain": job.retrain_path}.get(job.kind)
    return (trained.get(path) or {}).get("history") if path else None


def _logged_outcomes(run_id: str, uri: str) -> dict[str, Any]:
    """A finished reference run's per-example outcomes (from its report.json); {} when it has
    none (a run from before outcomes existed): its gaps are then unpaired."""
    from unlearnbench.eval import tracking

    try:
        report = tracking.load_report(run_id, uri=uri)
    except Exception as exc:  # a missing or unreadable artifact only costs the pairing
        log.warning("Reference run %s: no per-example outcomes (%s); its gaps are unpaired.", run_id, exc)
        return {}
    return {k: o.to_json() for k, o in report.outcomes.items()}


def study_source(cfg: StudyConfig, source: DataSource | None) -> DataSource:
    """The study's data: the caller's root, the study's subset."""
    return dataclasses.replace(source or DataSource.from_env(), subset=cfg.subset, per_class=cfg.per_class)


def preflight(cfg: StudyConfig, source: DataSource | None) -> str:
    """Missing dataset files, data too large for the device, or a forget spec that does not fit
    the data fail here, in one sentence, before any run is logged (not as one failed run per
    job). Returns the digest of the training set (the data fingerprint's)."""
    from unlearnbench.core.data import load_dataset, make_unlearn_data, split_train_val
    from unlearnbench.core.runtime import resolve_device

    raw = load_dataset(cfg.dataset, source, resolve_device(cfg.device))
    splits = split_train_val(raw, cfg.split_seed, cfg.val_fraction)
    for spec in cfg.forget:
        make_unlearn_data(splits, spec)
    return splits.fingerprint["train_sha256"]


def check_executor(executor: ExecutorConfig) -> None:
    if executor.kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("The Ray executor needs the ray extra: pip install 'unlearnbench[ray]'.") from None


def _cost(job: Any) -> float:
    """A job's relative cost for the progress ETA: its method's epochs (one-shot methods: one),
    plus one for the evaluation every job runs."""
    epochs = (job.method_config or {}).get("epochs") if job.method else None
    if epochs is None and job.method:
        try:
            from unlearnbench import unlearn

            epochs = getattr(unlearn.build_config(job.method, dict(job.method_config or {})), "epochs", None)
        except Exception:  # noqa: BLE001  a bad config fails in the job itself, with its message
            epochs = None
    return 1.0 + float(epochs or 0)
