"""Generation studies: class-wise unlearning of a conditional DDPM, every method against Retrain.

A study file with ``task: generation`` (``unlearnbench benchmark digits-generation``):

1. **Classifier** (cached): a platform classifier of the same data (``classifier``, trained on the
   full training split) that scores the samples; its checkpoint path is named in every result.
2. **Original** per seed and **Retrain** per (forget spec, seed) (cached): ``core.jobs.train_generator``
   on the same split, the retrain without the forgotten class.
3. **Methods**: ``unlearn.run`` on the original (the RTE is the method call).
4. **Evaluation** of every model (original, retrain, methods) by ``eval.generation``: UA with the
   classifier, FID against the real test images of the remembered classes (extractor named),
   precision / recall, and sample grids (forgotten vs remembered classes).

Steps 1-2 and 3-4 are jobs (``study.gen_jobs``) on ``core.executor``, in-process or Ray tasks, every
job pinned to the executor's thread count. Each model is a child MLflow run under one parent run
(metrics, params, grids as PNG artifacts, ``report.json`` with the grids at their own size), logged
by this driver only. Resuming: the parent run is keyed by the study's name and data
(``gen_study_id``), each child run by its job's content (``GenEvalJob.key``); running the study
again skips every row with a FINISHED run of the same key and reads it back from its
``report.json``, so a changed method config re-runs that row only (its earlier run goes to
MLflow's trash). The task registers itself (``study.tasks``); ``api.run_study`` then has
``reports.generation`` write the report (Markdown + HTML with the grids inlined) and log it to the
parent run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unlearnbench.core.config import configclass, from_dict, to_dict
from unlearnbench.core.data import DataSource, parse_forget_spec
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.executor import ExecutorConfig
from unlearnbench.eval.generation import GenEvalConfig, GenReport
from unlearnbench.eval.intervals import t_interval
from unlearnbench.study.gen_jobs import (
    GenEvalJob,
    GenTrainJob,
    content_key,
    gen_eval_job,
    gen_train_job,
    plan_gen_jobs,
    png_base64,  # noqa: F401  (re-exported: the reports inline grids with it)
    png_tensor,
)
from unlearnbench.study.run import StudyResult
from unlearnbench.study.tasks import register_task

log = logging.getLogger(__name__)


@configclass
class GenMethodSpec:
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


@configclass
class GenExpected:
    """The paper's numbers for one forget spec: method -> {UA, FID, ...} as printed."""

    forget: str
    citation: str
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: str = ""
    note: str = ""  # e.g. why the numbers are missing: shown in the report, never a number made up


@configclass
class GenStudyConfig:
    name: str
    task: Literal["generation"] = "generation"
    dataset: str = "digits"
    model: str = "ddpm_tiny"
    classifier: str = "cnn"  # a registered classifier trained on the same split, or a checkpoint path (.pt)
    classifier_train: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys
    forget: tuple[str, ...] = ("class:3",)
    seeds: tuple[int, ...] = (0,)
    split_seed: int = 0
    val_fraction: float = 0.1
    train: dict[str, Any] = field(default_factory=dict)  # DiffusionTrainConfig keys (original and Retrain)
    methods: tuple[GenMethodSpec, ...] = ()
    evaluation: GenEvalConfig = field(default_factory=GenEvalConfig)
    experiment: str = ""
    device: str = "auto"
    differences: tuple[str, ...] = ()
    expected: tuple[GenExpected, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        from unlearnbench.core.diffusion import DiffusionTrainConfig
        from unlearnbench.core.models import model_task
        from unlearnbench.unlearn import METHODS, build_config
        from unlearnbench.unlearn.base import method_task

        if not re.match(r"^[A-Za-z0-9_.-]+$", self.name) or self.name in (".", ".."):  # it names the report folder
            raise ConfigError(f"Study name {self.name!r} may hold only letters, digits, '.', '-' and '_'.")
        if model_task(self.model) != "generation":
            raise ConfigError(f"A generation study needs a generation model; {self.model!r} is a classifier.")
        if not self.methods or not self.forget or not self.seeds:
            raise ConfigError("A generation study needs methods, forget specs and seeds.")
        for spec in self.forget:
            if not parse_forget_spec(spec).classwise:
                raise ConfigError(f"Generation unlearning forgets whole classes: use class:C, not {spec!r}.")
        labels = [m.display for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ConfigError("A method appears twice; give one entry a distinct label.")
        for m in self.methods:
            METHODS.get(m.name)
            if method_task(m.name) != "generation":
                raise ConfigError(f"Method {m.name!r} unlearns classifiers; a generation study takes the "
                                  f"generation methods (unlearnbench ls methods).")
            build_config(m.name, dict(m.config))  # unknown keys: one sentence, before any work
        from_dict(DiffusionTrainConfig, dict(self.train))
        for block in self.expected:
            if block.forget not in self.forget:
                raise ConfigError(f"expected names forget spec {block.forget!r}, which the study does not run.")

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name


def gen_study_from_dict(data: dict[str, Any], **cli: Any) -> GenStudyConfig:
    data = dict(data)
    over = {k: v for k, v in cli.items() if v is not None}
    data.update(over)
    data["methods"] = [from_dict(GenMethodSpec, m) if isinstance(m, dict) else m for m in data.get("methods", [])]
    data["expected"] = [from_dict(GenExpected, e) if isinstance(e, dict) else e for e in data.get("expected", [])]
    if isinstance(data.get("evaluation"), dict):
        data["evaluation"] = from_dict(GenEvalConfig, data["evaluation"])
    return from_dict(GenStudyConfig, data)


# ----------------------------------------------------------------------------- running


@dataclass
class GenRow:
    kind: str  # original | retrain | unlearn
    label: str
    forget: str
    seed: int
    report: GenReport
    rte: float | None = None
    run_id: str = ""


@dataclass
class GenStudyResult(StudyResult):
    rows: list[GenRow] = field(default_factory=list)  # every row of the study, finished now or before
    classifier: str = ""
    seconds: float = 0.0


def gen_study_id(cfg: GenStudyConfig) -> str:
    """The parent run a generation study resumes: its name and data. Its child runs are keyed by
    their content (``GenEvalJob.key``), so a changed method or evaluation config re-runs only the
    rows it changes, within the same parent run."""
    return content_key({"task": "generation", "name": cfg.name, "dataset": cfg.dataset, "split_seed": cfg.split_seed,
                        "val_fraction": cfg.val_fraction})


@register_task("generation", config_type=GenStudyConfig, from_dict=gen_study_from_dict,
               summary="class-wise unlearning of a conditional DDPM against its Retrain")
def run_gen_study(cfg: GenStudyConfig, *, tracking_uri: str | None = None, executor: ExecutorConfig | None = None,
                  work_dir: str | Path = "runs/cache", source: DataSource | None = None, new: bool = False,
                  study_file: str | Path | None = None,
                  on_event: Callable[[str], None] | None = None) -> GenStudyResult:
    """Run or resume a generation study (see the module docstring); the same keyword arguments as
    the classification driver (``study.run.run_study``). A resumed study re-runs only the rows
    without a FINISHED run of the same content key; its result holds every row."""
    import mlflow
    from mlflow import MlflowClient

    from unlearnbench.core import provenance
    from unlearnbench.eval import tracking
    from unlearnbench.study.record import child_runs, find_parent
    from unlearnbench.study.run import check_executor, preflight

    say = on_event or (lambda text: log.info("%s", text))
    t_start = time.perf_counter()
    executor = executor or ExecutorConfig()
    check_executor(executor)
    source = source or DataSource.from_env()
    data_key = preflight(cfg, source)  # missing files, a class out of range: one sentence, nothing logged
    trains, evals = plan_gen_jobs(cfg, Path(work_dir).resolve(), source, data_key)
    uri = tracking.setup(tracking_uri, cfg.experiment_name)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.experiment_name)
    sid = gen_study_id(cfg)
    parent = None if new else find_parent(client, exp.experiment_id, sid)
    done: dict[str, Any] = {}
    stale: dict[str, list[str]] = {}  # slot -> runs a new run of that slot replaces
    if parent is not None:
        for child in child_runs(client, exp.experiment_id, parent.info.run_id):
            key, slot = child.data.tags.get("run_key"), child.data.tags.get("slot")
            if key and child.info.status == "FINISHED" and key not in done:
                done[key] = child
            if slot:
                stale.setdefault(slot, []).append(child.info.run_id)
            if child.info.status == "RUNNING":  # a driver killed outright left it open
                client.set_terminated(child.info.run_id, "KILLED")
    keys = {j.key for j in evals}
    done = {k: r for k, r in done.items() if k in keys}
    kept = {r.info.run_id for r in done.values()}
    stale = {s: [r for r in ids if r not in kept] for s, ids in stale.items()}
    pending = [j for j in evals if j.key not in done]
    result = GenStudyResult(cfg.name, sid, cfg.experiment_name, uri, "", len(evals), len(evals) - len(pending), 0,
                            resumed=parent is not None)
    if parent is not None:
        say(f"Resuming generation study run {parent.info.run_id}: {result.skipped} of {len(evals)} runs already finished.")
    if parent is None:
        tags = {"kind": "study", "task": "generation", "study": cfg.name, "study_id": sid, "dataset": cfg.dataset,
                "model": cfg.model, "git_sha": provenance.git_sha(), "data_sha256": data_key[:12],
                "threads": str(executor.threads_per_job)}
        if cfg.description:
            tags["mlflow.note.content"] = cfg.description
        mlflow.start_run(run_name=f"{cfg.name} (generation study)", tags=tracking.standard_tags(tags),
                         log_system_metrics=False)
    else:
        mlflow.start_run(run_id=parent.info.run_id, log_system_metrics=False)
    result.parent_run_id = mlflow.active_run().info.run_id
    status = "FAILED"
    try:
        if parent is None:
            mlflow.log_param("study", json.dumps(to_dict(cfg), default=str)[:6000])
            if study_file is not None and Path(study_file).is_file():
                mlflow.log_artifact(str(study_file))
        fresh = _run_pending(cfg, pending, trains, executor, result, client, stale, say)
        result.rows = [fresh[j.key] if j.key in fresh else _logged_row(client, done[j.key])
                       for j in evals if j.key in fresh or j.key in done]
        result.classifier = result.rows[0].report.meta.get("classifier", "") if result.rows else ""
        result.seconds = time.perf_counter() - t_start
        if pending:
            tracking.log_metrics({"study_seconds": result.seconds})
        status = "FINISHED" if not result.failures else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.set_tag("failed_runs", str(len(result.failures)))
        mlflow.end_run(status)
    return result


def _run_pending(cfg: GenStudyConfig, pending: list[GenEvalJob], trains: list[GenTrainJob], executor: ExecutorConfig,
                 result: GenStudyResult, client, stale: dict[str, list[str]], say) -> dict[str, GenRow]:
    from unlearnbench.core.checkpoint import load_checkpoint
    from unlearnbench.core.executor import run_jobs

    if not pending:
        say("Nothing to run: every run of this study has finished.")
        return {}
    needed = {p for j in pending for p in (j.classifier_path, j.original_path, j.retrain_path)}
    todo = [t for t in trains if t.path in needed]
    outcomes = run_jobs(gen_train_job, [(t,) for t in todo], executor, description="train classifier, originals, Retrains")
    broken = {t.path: f"training the {t.kind} failed: {o.error}" for t, o in zip(todo, outcomes, strict=True) if not o.ok}
    say(f"Models ready: {len(todo) - len(broken)} ({sum(1 for o in outcomes if o.ok and o.value['cached'])} "
        f"from the cache), {len(broken)} failed.")
    clf_path = pending[0].classifier_path
    clf_name = ""
    if clf_path not in broken:
        meta = load_checkpoint(clf_path).meta
        acc = meta.get("metrics", {}).get("test_acc", float("nan"))
        clf_name = f"{meta['model']} ({clf_path}, test acc {acc:.1f}%)"
    jobs: list[GenEvalJob] = []
    for job in pending:
        err = broken.get(job.classifier_path) or broken.get(job.original_path) or broken.get(job.retrain_path)
        if err:
            _log_failure(job, err, "", cfg, result, client, stale)
        else:
            jobs.append(dataclasses.replace(job, classifier_name=clf_name))
    fresh: dict[str, GenRow] = {}

    def on_result(i: int, outcome) -> None:
        job = jobs[i]
        value = outcome.value if outcome.ok else {"error": outcome.error}
        if "error" in value:
            _log_failure(job, value["error"], value.get("traceback", ""), cfg, result, client, stale)
            return
        rep = value["report"]
        grids = {k: png_tensor(v) for k, v in value["grids"].items()}
        row = GenRow(job.kind, job.label, job.spec, job.seed,
                     GenReport(rep["values"], rep["counts"], rep["meta"], grids, rep["seconds"]), value["rte"])
        row.run_id = _log_row(row, job, value, cfg, client, stale)
        fresh[job.key] = row
        result.finished += 1

    run_jobs(gen_eval_job, [(j,) for j in jobs], executor, description="unlearn and evaluate", on_result=on_result)
    return fresh


def _tags(job: GenEvalJob, cfg: GenStudyConfig) -> dict[str, Any]:
    return {"kind": job.kind, "task": "generation", "method": job.method or job.kind, "label": job.label,
            "dataset": cfg.dataset, "model": cfg.model, "forget": job.spec, "seed": job.seed, "run_key": job.key,
            "slot": job.slot, "study_id": gen_study_id(cfg), "study": cfg.name}


def _replace_stale(job: GenEvalJob, client, stale: dict[str, list[str]], keep: str) -> None:
    """Earlier runs of this row (another config, a failed try) go to MLflow's trash: the parent
    run shows each row once, as the study now defines it."""
    for run_id in stale.pop(job.slot, []):
        if run_id != keep:
            client.delete_run(run_id)


def _log_row(row: GenRow, job: GenEvalJob, value: dict[str, Any], cfg: GenStudyConfig, client,
             stale: dict[str, list[str]]) -> str:
    import tempfile

    from unlearnbench.core.diffusion import save_png
    from unlearnbench.eval import tracking

    name = tracking.readable_run_name(row.kind, method=row.label if row.kind == "unlearn" else "", dataset=cfg.dataset,
                                      model=cfg.model, forget=row.forget, seed=row.seed)
    params = {**value["params"], "classifier": job.classifier_name[:250],
              "extractor": row.report.meta["extractor"][:250]}
    with tracking.run(name, params=params, tags=_tags(job, cfg), parent_run_id=mlflow_parent(),
                      start_ms=value.get("started_ms")) as active:
        tracking.log_metrics({**row.report.values, **{k: float(v) for k, v in row.report.counts.items()},
                              **({"rte_seconds": row.rte} if row.rte is not None else {}),
                              "eval_seconds": row.report.seconds})
        with tempfile.TemporaryDirectory() as tmp:
            for gname, img in row.report.grids.items():
                p = Path(tmp) / f"{gname}.png"
                save_png(img, p, scale=4)
                tracking.log_artifact(p, "samples")
            p = Path(tmp) / "report.json"
            p.write_text(json.dumps({**row.report.to_dict(), "kind": row.kind, "label": row.label, "forget": row.forget,
                                     "seed": row.seed, "rte_seconds": row.rte, "run_key": job.key,
                                     "grids_png": value["grids"]}, indent=2, default=str))
            tracking.log_artifact(p)
        run_id = active.info.run_id
    _replace_stale(job, client, stale, run_id)
    return run_id


def _log_failure(job: GenEvalJob, error: str, trace: str, cfg: GenStudyConfig, result: GenStudyResult, client,
                 stale: dict[str, list[str]]) -> None:
    import mlflow

    from unlearnbench.eval import tracking

    with tracking.run(tracking.readable_run_name(job.kind, method=job.label, forget=job.spec, seed=job.seed),
                      tags={**_tags(job, cfg), "error": error[:4000]}, parent_run_id=mlflow_parent()) as active:
        mlflow.log_text(f"{error}\n\n{trace}".strip() + "\n", "error.txt")
        run_id = active.info.run_id
    client.set_terminated(run_id, "FAILED")
    _replace_stale(job, client, stale, run_id)
    result.failures.append((f"{job.label} {job.spec} seed{job.seed}", error))
    log.warning("Run %s failed: %s", job.slot, error)


def mlflow_parent() -> str:
    import mlflow

    return mlflow.active_run().info.run_id


def _logged_row(client, run) -> GenRow:
    """A row finished by an earlier invocation, read back from its run's report.json."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = json.loads(Path(client.download_artifacts(run.info.run_id, "report.json", tmp)).read_text())
    report = GenReport(data["values"], data["counts"], data["meta"],
                       {k: png_tensor(v) for k, v in data.get("grids_png", {}).items()}, data["seconds"])
    return GenRow(data["kind"], data["label"], data["forget"], int(data["seed"]), report, data.get("rte_seconds"),
                  run.info.run_id)

# ----------------------------------------------------------------------------- summaries


def summarize(rows: list[GenRow], forget: str) -> list[dict[str, Any]]:
    """One line per model label for ``forget``: means over seeds (a t interval with ≥ 2 seeds; with
    one seed the per-run interval: Wilson for UA, basic bootstrap for FID)."""
    order: list[str] = []
    for r in rows:
        if r.forget == forget and r.label not in order:
            order.append(r.label)
    out = []
    for label in order:
        rs = [r for r in rows if r.forget == forget and r.label == label]
        line: dict[str, Any] = {"label": label, "kind": rs[0].kind, "seeds": len(rs)}
        for key in ("gen/ua", "gen/fid", "gen/fid_bc", "gen/precision", "gen/recall", "gen/acc_retained", "gen/entropy",
                    "gen/forgotten_prob"):
            vals = [r.report.values[key] for r in rs if key in r.report.values]
            if not vals:
                continue
            mean = sum(vals) / len(vals)
            if len(vals) >= 2:
                ci = t_interval(vals)
            else:
                v = rs[0].report.values
                ci = (v[f"{key}_lo"], v[f"{key}_hi"]) if f"{key}_lo" in v else None
            line[key] = (mean, ci)
        counts = rs[0].report.counts
        line["n_ua"] = counts.get("n/gen/ua")
        line["n_fid"] = (counts.get("n/gen/fid_generated"), counts.get("n/gen/fid_real"))
        rtes = [r.rte for r in rs if r.rte is not None]
        line["rte"] = (sum(rtes) / len(rtes)) if rtes else None
        line["grids"] = rs[0].report.grids
        out.append(line)
    return out


def fmt(value: tuple[float, tuple[float, float] | None] | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    mean, ci = value
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else f"{mean:.{digits}f}"
