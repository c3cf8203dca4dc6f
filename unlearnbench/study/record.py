"""Recording a study in MLflow: finding the parent run to resume and its finished children, and
logging each finished (or failed) job as a nested child run with the study's tags."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from unlearnbench.core.config import flatten
from unlearnbench.core.executor import JobOutcome
from unlearnbench.study.config import StudyConfig, recipe_name, study_id
from unlearnbench.study.plan import EvalJob

log = logging.getLogger(__name__)


def find_parent(client, experiment_id: str, sid: str):
    """The latest parent run of study ``sid`` (the one a re-run resumes), or None."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.study_id = '{sid}' and tags.kind = 'study'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0] if runs else None


def child_runs(client, experiment_id: str, parent_id: str) -> list:
    """Every child run of ``parent_id`` (all pages)."""
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                                  max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _tags(job: EvalJob, cfg: StudyConfig) -> dict[str, str]:
    return {"kind": job.kind, "method": job.method, "variant": job.variant, "label": job.label, "forget": job.spec,
            "seed": str(job.seed), "dataset": cfg.dataset, "model": cfg.model, "run_key": job.key,
            "study_id": study_id(cfg), "study": cfg.name, "recipe": recipe_name(cfg)}


def _params(job: EvalJob) -> dict[str, Any]:
    return {"method": job.method, "forget": job.spec, "seed": job.seed, "prune": job.prune,
            "adv_retain": job.adv_retain, "dataset": job.dataset, "model": job.model, **{f"method.{k}": v for k, v in flatten(job.method_config).items()}}


def _run_name(job: EvalJob) -> str:
    from unlearnbench.eval.tracking import readable_run_name

    return readable_run_name(job.kind, method=job.method, forget=job.spec, seed=job.seed, label=job.label)


def describe_study(cfg: StudyConfig) -> str:
    """The parent run's description: the study's own ``description``, then what it runs."""
    methods = ", ".join(m.display for m in cfg.methods)
    what = (f"{len(cfg.methods)} method(s) ({methods}) × forget {', '.join(cfg.forget)} × seeds "
            f"{', '.join(map(str, cfg.seeds))} on {cfg.model}/{cfg.dataset}, against the model retrained without "
            "the forget set.")
    return f"{cfg.description.strip()}\n\n{what}" if cfg.description.strip() else what


def open_child(job: EvalJob, parent_id: str, cfg: StudyConfig, client) -> str:
    """A child run for ``job``, RUNNING from now (its job starts): the UI shows the study's
    progress live; ``log_outcome`` fills and ends it."""
    from unlearnbench.eval import tracking

    exp_id = client.get_run(parent_id).info.experiment_id
    tags = tracking.standard_tags({"mlflow.parentRunId": parent_id, **_tags(job, cfg)})
    return client.create_run(exp_id, run_name=_run_name(job), tags=tags).info.run_id


def log_outcome(job: EvalJob, outcome: JobOutcome, parent_id: str, cfg: StudyConfig, client, result,
                train_history: list[dict] | None = None, run_id: str | None = None) -> dict | None:
    """Log one finished job as a child run; returns its metric values (None when it failed).
    ``train_history``: the per-epoch curves of the model an original/retrain row evaluates
    (``train/*``, step = epoch). ``run_id``: the child ``open_child`` opened when the job started;
    else one is made now. The run spans the job's own start and end (true duration)."""
    from unlearnbench.eval import tracking
    from unlearnbench.eval.report import Report

    value = outcome.value if outcome.ok else {"error": outcome.error, "traceback": ""}
    if "error" in value:
        log_failure(job, value["error"], value.get("traceback", ""), parent_id, cfg, client, result, run_id=run_id)
        return None
    report = Report.from_json(value["report"])
    ckpt = value.get("checkpoint")
    # report.config already holds the method's full config (method.*) and the evaluation (eval.*).
    model = {"unlearn": ckpt, "original": job.original_path, "retrain": job.retrain_path}.get(job.kind)
    tracking.log_report(report, checkpoint=Path(ckpt) if ckpt and cfg.save_checkpoints else None,
                        parent_run_id=parent_id, run_name=_run_name(job), extra_tags=_tags(job, cfg),
                        extra_params={"forget": job.spec, "seed": job.seed, "dataset": cfg.dataset, "model": cfg.model,
                                      "recipe": recipe_name(cfg)},
                        epochs=value.get("history"), train_epochs=train_history,
                        model_checkpoint=Path(model) if cfg.log_model and model else None,
                        span_ms=(value["started_ms"], value["ended_ms"]) if "started_ms" in value else None,
                        run_id=run_id)
    result.finished += 1
    return {k: v for k, v in report.values.items() if v == v}  # drop NaN


def log_failure(job: EvalJob, error: str, trace: str, parent_id: str, cfg: StudyConfig, client, result,
                run_id: str | None = None) -> None:
    import mlflow

    from unlearnbench.eval import tracking

    tags = {**_tags(job, cfg), "error": error[:4000]}
    with tracking.run(_run_name(job), params=_params(job), tags=tags, parent_run_id=parent_id,
                      run_id=run_id) as active:
        mlflow.log_text(f"{error}\n\n{trace}".strip() + "\n", "error.txt")
        run_id = active.info.run_id
    client.set_terminated(run_id, "FAILED")
    result.failures.append((job.key, error))
    log.warning("Run %s failed: %s", job.key, error)
