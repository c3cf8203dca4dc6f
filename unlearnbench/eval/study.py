"""Studies: unlearning methods × forget specs × seeds (× prune levels × adversarial-retain settings),
evaluated against the retrained reference and logged to MLflow as one parent run with a nested
child run per (method, spec, seed).

How a study runs (``run_study``):

1. **Train** (cached on disk): per seed the original model, and per (forget spec, seed) the model
   retrained without the forget set, through ``core.jobs.train_model`` with the same split. A
   checkpoint under ``work_dir/models/<dataset>-<model>/split<S>/<train-config hash>/seed<N>/``
   is reused by every later study with the same key.
2. **References**: the retrained model of each (spec, seed) is evaluated once (child run
   ``retrain``); its values are the reference every other run of that (spec, seed) is compared
   with, so attacks are never re-run on it.
3. **Methods**: the original model (child run ``original``: "before unlearning") and every
   method variant are evaluated against that reference.

Every step is a job on ``core.executor`` (in-process or Ray tasks, same functions). Jobs return
results; only this driver writes to MLflow (SQLite locks under concurrent writers), logging each
child run as soon as its job finishes. Resuming: runs are keyed (tag ``run_key``) within a study
(tag ``study_id``, a hash of the study config); running the same study again resumes its latest
parent run and skips every child run that FINISHED. A failing job is logged as a FAILED run with
its error and traceback, and the study goes on (the parent then ends FAILED, so a re-run retries
just the failures).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnbench.core.config import configclass, flatten, from_dict, load_yaml, to_dict
from unlearnbench.core.data import DataSource, parse_forget_spec
from unlearnbench.core.errors import ConfigError, UserError
from unlearnbench.core.executor import ExecutorConfig, JobOutcome, run_jobs
from unlearnbench.eval.engine import EvalConfig

log = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).with_name("studies")
KINDS = ("retrain", "original", "unlearn")


# ----------------------------------------------------------------------------- configuration


@configclass
class MethodSpec:
    """One method of a study: a registered method (or a published preset of one), its config keys
    (over the preset's), and the name tables show."""

    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""  # default: the method name (set it to run one method twice with two configs)
    preset: str | None = None  # e.g. salun-cifar10-random10 (see `unlearnbench ls presets`)

    def __post_init__(self) -> None:
        if not self.name and not self.preset:
            raise ConfigError("Each methods entry needs a name (a registered method) or a preset.")
        if not isinstance(self.config, Mapping):
            raise ConfigError(f"The config of method {self.name!r} must be a mapping of keys.")
        if self.label in ("retrain", "original"):
            raise ConfigError(f"Label {self.label!r} is reserved for the reference rows; pick another.")

    @property
    def display(self) -> str:
        return self.label or self.name


@configclass
class StudyConfig:
    """A study file (YAML). Unknown keys are rejected by name, here and in every nested section.

    ``seeds`` are the training seeds; each seed also seeds its unlearning runs and evaluation,
    so the spread over seeds covers the whole pipeline (as the papers' ± values do).
    """

    name: str
    dataset: str = "digits"
    model: str = "cnn"
    forget: tuple[str, ...] = ("class:0",)
    methods: tuple[MethodSpec, ...] = ()
    seeds: tuple[int, ...] = (0,)
    split_seed: int = 0
    val_fraction: float = 0.1
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys over the dataset recipe
    prune: tuple[float | None, ...] = (None,)  # OMP sparsity before unlearning; null = none
    adv_retain: tuple[str | None, ...] = (None,)  # attack hardening retain batches; null = none
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    experiment: str = ""  # MLflow experiment (default: the study name)
    device: str = "auto"
    save_checkpoints: bool = False  # log every unlearned model's checkpoint as an artifact

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.name):
            raise ConfigError(f"Study name {self.name!r} may hold only letters, digits, '.', '-' and '_'.")
        if not self.methods:
            raise ConfigError("A study needs at least one entry under methods.")
        if not self.forget:
            raise ConfigError("A study needs at least one forget spec, e.g. forget: [class:0].")
        if not self.seeds:
            raise ConfigError("A study needs at least one seed, e.g. seeds: [0, 1, 2].")
        for what, items in (("seeds", self.seeds), ("forget", self.forget), ("prune", self.prune),
                            ("adv_retain", self.adv_retain)):
            if len(set(items)) != len(items):
                raise ConfigError(f"{what} lists a value twice.")
        labels = [m.display for m in self.methods]
        dup = next((lab for lab in labels if labels.count(lab) > 1), None)
        if dup:
            raise ConfigError(f"Method {dup!r} appears twice; give one entry a distinct label.")
        if not self.prune or not self.adv_retain:
            raise ConfigError("prune and adv_retain need at least one value (use [null] for none).")
        for p in self.prune:
            if p is not None and not 0 <= p < 1:
                raise ConfigError(f"prune levels are sparsities in [0, 1); got {p}.")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction must lie strictly between 0 and 1.")
        for spec in self.forget:
            parse_forget_spec(spec)

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name


def _resolve_preset(spec: MethodSpec) -> MethodSpec:
    """Fill method name and base config from the preset; the entry's own config keys win."""
    if spec.preset is None:
        return spec
    from unlearnbench.unlearn.presets import PRESETS

    preset = PRESETS.get(spec.preset)
    if spec.name and spec.name != preset.method:
        raise ConfigError(f"Preset {spec.preset!r} is for method {preset.method!r}, not {spec.name!r}; drop name.")
    return dataclasses.replace(spec, name=preset.method, config={**preset.config, **spec.config})


def _check_presets(cfg: StudyConfig) -> None:
    from unlearnbench.unlearn.presets import PRESETS

    for m in cfg.methods:
        if m.preset is None:
            continue
        preset = PRESETS.get(m.preset)
        if preset.prune is not None and preset.prune not in cfg.prune:
            raise ConfigError(
                f"Preset {m.preset!r} prunes to {preset.prune}; add {preset.prune} to the study's prune list "
                "(a study prunes every method at its prune levels)."
            )
        if preset.dataset != cfg.dataset:
            warnings.warn(f"Preset {m.preset!r} is the protocol for {preset.dataset}, but this study runs on "
                          f"{cfg.dataset}; its hyperparameters may not suit it.", stacklevel=3)


def _methods(items: Any) -> tuple[MethodSpec, ...]:
    if not isinstance(items, (list, tuple)):
        raise ConfigError("methods must be a list of method names or {name, config, label} mappings.")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(MethodSpec(name=item))
        elif isinstance(item, Mapping):
            out.append(_resolve_preset(from_dict(MethodSpec, dict(item))))
        elif isinstance(item, MethodSpec):
            out.append(_resolve_preset(item))
        else:
            raise ConfigError(f"Bad methods entry {item!r}: give a name or a mapping with name and config.")
    return tuple(out)


def study_from_dict(data: Mapping[str, Any], **overrides: Any) -> StudyConfig:
    """Build and fully check a study: unknown keys anywhere, unknown methods/models/datasets,
    bad method or training configs all fail here, before any training starts."""
    raw = {**dict(data), **{k: v for k, v in overrides.items() if v is not None}}
    if "methods" in raw:
        raw["methods"] = _methods(raw["methods"])
    ev = raw.get("evaluation")
    if isinstance(ev, Mapping):
        if "seed" in ev:
            raise ConfigError("evaluation.seed is set per run from seeds; remove it.")
        raw["evaluation"] = from_dict(EvalConfig, dict(ev))
    elif ev is not None and not isinstance(ev, EvalConfig):
        raise ConfigError("evaluation must be a mapping of evaluation keys (metrics, robustness, eps, ...).")
    if "train" in raw and not isinstance(raw["train"], Mapping):
        raise ConfigError("train must be a mapping of training keys (epochs, lr, ...).")
    cfg = from_dict(StudyConfig, raw)
    _check_names(cfg)
    _check_presets(cfg)
    return cfg


def _check_names(cfg: StudyConfig) -> None:
    from unlearnbench import unlearn
    from unlearnbench.core.data import DATASETS
    from unlearnbench.core.models import MODELS

    DATASETS.get(cfg.dataset)
    MODELS.get(cfg.model)
    train_config(cfg, cfg.seeds[0])
    for m in cfg.methods:
        unlearn.build_config(m.name, dict(m.config), seed=cfg.seeds[0])
    attacks = [a for a in (*cfg.adv_retain, *cfg.evaluation.robustness) if a is not None]
    if attacks:
        try:
            from unlearnbench.robust.attacks import ATTACKS
        except ImportError:
            raise UserError("This study uses attacks, but the unlearnbench.robust package is not installed.") from None
        for a in attacks:
            ATTACKS.get(a)
        from unlearnbench.robust.adversarial import check_retain_attack

        for a in cfg.adv_retain:
            if a is not None:
                check_retain_attack(a)  # before anything trains


def load_study(path_or_name: str | Path, **overrides: Any) -> StudyConfig:
    """A study from a YAML file, or a shipped example by name (see ``examples()``)."""
    path = Path(path_or_name)
    if not path.is_file():
        shipped = EXAMPLES_DIR / f"{path_or_name}.yaml"
        if shipped.is_file():
            path = shipped
        else:
            raise ConfigError(
                f"Study {str(path_or_name)!r} is neither a file nor a shipped example; "
                f"examples: {', '.join(examples())}."
            )
    return study_from_dict(load_yaml(path), **overrides)


def examples() -> list[str]:
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.yaml"))


def train_config(cfg: StudyConfig, seed: int):
    from unlearnbench.core.train import TrainConfig, recipe_for

    return from_dict(TrainConfig, {**recipe_for(cfg.dataset), **cfg.train, "seed": seed, "device": cfg.device})


def study_id(cfg: StudyConfig) -> str:
    """What the results depend on (not where they are logged or which device ran them)."""
    data = to_dict(cfg)
    for k in ("experiment", "device", "save_checkpoints"):
        data.pop(k)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    short = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40]
    return f"{short}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _spec_key(spec: str) -> str:
    """Cache key of a forget spec; a deletion-request file is keyed by its content, not its name."""
    parsed = parse_forget_spec(spec)
    if parsed.kind == "indices" and parsed.path and Path(parsed.path).is_file():
        return _slug("indices:" + hashlib.sha256(Path(parsed.path).read_bytes()).hexdigest())
    return _slug(spec)


def model_dir(cfg: StudyConfig, work_dir: Path, seed: int) -> Path:
    tc = to_dict(train_config(cfg, seed))
    tc.pop("device")
    digest = hashlib.sha256(json.dumps(tc, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return (Path(work_dir) / "models" / f"{cfg.dataset}-{cfg.model}" / f"split{cfg.split_seed}-val{cfg.val_fraction}"
            / digest / f"seed{seed}")


# ----------------------------------------------------------------------------- jobs (picklable)


@dataclass(frozen=True)
class TrainJob:
    dataset: str
    model: str
    train: dict[str, Any]  # TrainConfig as a dict
    exclude: str | None
    split_seed: int
    val_fraction: float
    source: DataSource | None
    path: str


@dataclass(frozen=True)
class EvalJob:
    kind: str  # retrain | original | unlearn
    label: str
    method: str
    method_config: dict[str, Any]
    spec: str
    seed: int
    prune: float | None
    adv_retain: str | None
    dataset: str
    model: str
    split_seed: int
    val_fraction: float
    source: DataSource | None
    device: str
    original_path: str
    retrain_path: str
    retrain_seconds: float | None
    reference_values: dict[str, float] | None
    evaluation: dict[str, Any]
    save_checkpoint: str | None

    @property
    def variant(self) -> str:
        return variant_of(self.prune, self.adv_retain)

    @property
    def key(self) -> str:
        return run_key(self.kind, self.label, self.spec, self.seed)


def variant_of(prune: float | None, adv_retain: str | None) -> str:
    parts = ([f"prune={prune:g}"] if prune is not None else []) + ([f"adv={adv_retain}"] if adv_retain else [])
    return ",".join(parts)


def run_key(kind: str, label: str, spec: str, seed: int) -> str:
    return f"{kind}|{label}|{spec}|{seed}"


def train_job(job: TrainJob) -> dict[str, Any]:
    """Train (or reuse the cached checkpoint of) an original or retrained model; returns its meta."""
    from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint
    from unlearnbench.core.errors import CheckpointError
    from unlearnbench.core.jobs import train_model
    from unlearnbench.core.train import TrainConfig

    path = Path(job.path)
    if path.is_file():
        try:
            meta = load_checkpoint(path).meta
            return {"meta": meta, "cached": True}
        except CheckpointError as exc:  # a damaged cache entry is rebuilt, not fatal
            log.warning("Retraining %s: %s", path, exc)
    cfg = from_dict(TrainConfig, job.train)
    outcome = train_model(job.dataset, job.model, cfg, exclude=job.exclude, split_seed=job.split_seed,
                          val_fraction=job.val_fraction, source=job.source)
    save_checkpoint(path, outcome.model, outcome.meta)
    return {"meta": outcome.meta, "cached": False}


def eval_job(job: EvalJob) -> dict[str, Any]:
    """Unlearn (for ``unlearn`` jobs) and evaluate; returns the Report as JSON, or the error.

    Errors are caught here (not only by the executor) to keep the traceback for the FAILED run.
    """
    try:
        return _eval_job(job)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}


def _eval_job(job: EvalJob) -> dict[str, Any]:
    from unlearnbench import unlearn
    from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint
    from unlearnbench.core.data import prepare
    from unlearnbench.core.jobs import check_compatible
    from unlearnbench.core.runtime import resolve_device
    from unlearnbench.eval.engine import Evaluator

    device = resolve_device(job.device)
    splits, data = prepare(job.dataset, job.spec, split_seed=job.split_seed, val_fraction=job.val_fraction,
                           source=job.source, device=device)
    original_ckpt = load_checkpoint(job.original_path)
    retrain_ckpt = load_checkpoint(job.retrain_path)
    check_compatible(original_ckpt, splits)
    check_compatible(retrain_ckpt, splits)
    original = original_ckpt.build(device)
    retrain = retrain_ckpt.build(device)
    ev_cfg = from_dict(EvalConfig, {**job.evaluation, "seed": job.seed})
    evaluator = Evaluator.from_config(ev_cfg)
    info: dict[str, Any] = {}
    params: dict[str, Any] = {}
    if job.kind == "unlearn":
        res = unlearn.run(job.method, original, data, dict(job.method_config), prune=job.prune,
                          adv_retain=job.adv_retain, seed=job.seed, device=job.device)
        model, rte = res.model, res.seconds
        params = {f"method.{k}": v for k, v in flatten(res.config).items()}
        info = {k: v for k, v in res.info.items() if isinstance(v, (int, float, str, bool)) or v is None}
    elif job.kind == "retrain":
        model, rte = retrain, job.retrain_seconds
    else:
        model, rte = original, None
    reference = None if job.kind == "retrain" else job.reference_values
    meta = {"kind": job.kind, "method": job.method, "model": job.model, "seed": job.seed}
    report = evaluator.evaluate(
        model, data, reference=reference, original=original, rte_seconds=rte,
        config={"method": job.method, "label": job.label, "variant": job.variant, "prune": job.prune,
                "adv_retain": job.adv_retain, **params},
        name=job.label, meta=meta,
    )
    ckpt = None
    if job.save_checkpoint and job.kind == "unlearn":
        ckpt = str(save_checkpoint(job.save_checkpoint, model, {
            **original_ckpt.meta, "kind": "unlearn", "method": job.method, "forget": job.spec, "seed": job.seed,
            "variant": job.variant,
        }))
    return {"report": report.to_json(indent=None), "params": params, "info": info, "checkpoint": ckpt}


# ----------------------------------------------------------------------------- the driver


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

    @property
    def ok(self) -> bool:
        return not self.failures


def plan_jobs(cfg: StudyConfig, work_dir: Path, source: DataSource | None) -> tuple[list[TrainJob], list[EvalJob]]:
    """Every training job and every evaluation job of the study (before skipping finished ones)."""
    trains: list[TrainJob] = []
    evals: list[EvalJob] = []
    ev = to_dict(cfg.evaluation)
    ev.pop("seed")
    for seed in cfg.seeds:
        mdir = model_dir(cfg, work_dir, seed)
        tc = to_dict(train_config(cfg, seed))
        orig_path = str(mdir / "original.pt")
        trains.append(TrainJob(cfg.dataset, cfg.model, tc, None, cfg.split_seed, cfg.val_fraction, source, orig_path))
        for spec in cfg.forget:
            ret_path = str(mdir / f"retrain-{_spec_key(spec)}.pt")
            trains.append(TrainJob(cfg.dataset, cfg.model, tc, spec, cfg.split_seed, cfg.val_fraction, source, ret_path))
            common = dict(spec=spec, seed=seed, dataset=cfg.dataset, model=cfg.model, split_seed=cfg.split_seed,
                          val_fraction=cfg.val_fraction, source=source, device=cfg.device, original_path=orig_path,
                          retrain_path=ret_path, retrain_seconds=None, reference_values=None, evaluation=ev)
            evals.append(EvalJob(kind="retrain", label="retrain", method="retrain", method_config={}, prune=None,
                                 adv_retain=None, save_checkpoint=None, **common))
            evals.append(EvalJob(kind="original", label="original", method="original", method_config={}, prune=None,
                                 adv_retain=None, save_checkpoint=None, **common))
            for m in cfg.methods:
                for prune in cfg.prune:
                    for adv in cfg.adv_retain:
                        variant = variant_of(prune, adv)
                        label = f"{m.display} [{variant}]" if variant else m.display
                        ckpt = (str(Path(work_dir) / "checkpoints" / study_id(cfg) / f"{_slug(label)}-{_spec_key(spec)}-s{seed}.pt")
                                if cfg.save_checkpoints else None)
                        evals.append(EvalJob(kind="unlearn", label=label, method=m.name, method_config=dict(m.config),
                                             prune=prune, adv_retain=adv, save_checkpoint=ckpt, **common))
    return trains, evals


def _find_parent(client, experiment_id: str, sid: str):
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.study_id = '{sid}' and tags.kind = 'study'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0] if runs else None


def _children(client, experiment_id: str, parent_id: str) -> list:
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                                  max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


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
    preflight(cfg, source)
    work_dir = Path(work_dir).resolve()
    uri = tracking.setup(tracking_uri, cfg.experiment_name)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.experiment_name)
    sid = study_id(cfg)
    trains, evals = plan_jobs(cfg, work_dir, source)

    parent = None if new else _find_parent(client, exp.experiment_id, sid)
    done: dict[str, Any] = {}
    if parent is not None:
        for child in _children(client, exp.experiment_id, parent.info.run_id):
            key = child.data.tags.get("run_key")
            if key and child.info.status == "FINISHED":
                done[key] = child
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

    if parent is None:
        tags = {"kind": "study", "study": cfg.name, "study_id": sid, "dataset": cfg.dataset, "model": cfg.model,
                "git_sha": provenance.git_sha(), "threads": str(executor.threads_per_job)}
        active = mlflow.start_run(run_name=f"study-{cfg.name}", tags=tags)
    else:
        active = mlflow.start_run(run_id=parent.info.run_id)
    parent_id = active.info.run_id
    result.parent_run_id = parent_id
    status = "FAILED"
    try:
        if parent is None:
            tracking.log_params({**flatten(to_dict(cfg)), "study_id": sid})
            mlflow.log_dict(to_dict(cfg), "study.json")
            if study_file is not None and Path(study_file).is_file():
                mlflow.log_artifact(str(study_file))
        _run_pending(cfg, pending, trains, done, parent_id, executor, result, client, note)
        status = "FINISHED" if not result.failures else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        mlflow.set_tag("failed_runs", str(len(result.failures)))
        mlflow.end_run(status)
    return result


def _run_pending(cfg, pending, trains, done, parent_id, executor, result, client, note) -> None:
    if not pending:
        note("Nothing to run: every run of this study has finished.")
        return
    # 1. Train what the pending runs need (cached checkpoints return at once).
    needed = {j.original_path for j in pending} | {j.retrain_path for j in pending}
    todo = [t for t in trains if t.path in needed]
    outcomes = run_jobs(train_job, [(t,) for t in todo], executor, description="train originals and references")
    trained: dict[str, dict] = {}
    broken: dict[str, str] = {}
    for t, out in zip(todo, outcomes, strict=True):
        if out.ok:
            trained[t.path] = out.value["meta"]
        else:
            broken[t.path] = f"training {'the retrained reference' if t.exclude else 'the original model'} failed: {out.error}"
    cached = sum(1 for o in outcomes if o.ok and o.value.get("cached"))
    note(f"Models ready: {len(trained)} ({cached} from the cache), {len(broken)} failed.")

    def failed_dependency(job: EvalJob) -> bool:
        err = broken.get(job.original_path) or broken.get(job.retrain_path)
        if err:
            _log_failure(job, err, "", parent_id, cfg, client, result)
        return bool(err)

    # 2. Evaluate each retrained reference once (or read it back from its finished run).
    references: dict[tuple[str, int], dict[str, float]] = {}
    for key, run in done.items():
        if key.startswith("retrain|"):
            _, _, spec, seed = key.split("|")
            references[(spec, int(seed))] = dict(run.data.metrics)
    ref_jobs = [
        dataclasses.replace(j, retrain_seconds=trained[j.retrain_path].get("metrics", {}).get("train_seconds"))
        for j in pending if j.kind == "retrain" and not failed_dependency(j)
    ]

    def on_ref(i: int, outcome: JobOutcome) -> None:
        job = ref_jobs[i]
        values = _log_outcome(job, outcome, parent_id, cfg, client, result)
        if values is not None:
            references[(job.spec, job.seed)] = values

    run_jobs(eval_job, [(j,) for j in ref_jobs], executor, description="evaluate references", on_result=on_ref)

    # 3. The original model and every method, against the reference values.
    rest: list[EvalJob] = []
    for job in pending:
        if job.kind == "retrain" or failed_dependency(job):
            continue
        ref = references.get((job.spec, job.seed))
        if ref is None:
            _log_failure(job, "the retrained reference of this forget spec and seed could not be evaluated", "",
                         parent_id, cfg, client, result)
            continue
        rest.append(dataclasses.replace(job, reference_values=ref))

    def on_rest(i: int, outcome: JobOutcome) -> None:
        _log_outcome(rest[i], outcome, parent_id, cfg, client, result)

    run_jobs(eval_job, [(j,) for j in rest], executor, description="unlearn and evaluate", on_result=on_rest)


def _tags(job: EvalJob, cfg: StudyConfig) -> dict[str, str]:
    return {"kind": job.kind, "method": job.method, "variant": job.variant, "label": job.label, "forget": job.spec,
            "seed": str(job.seed), "dataset": cfg.dataset, "model": cfg.model, "run_key": job.key,
            "study_id": study_id(cfg), "study": cfg.name}


def _params(job: EvalJob) -> dict[str, Any]:
    return {"method": job.method, "forget": job.spec, "seed": job.seed, "prune": job.prune,
            "adv_retain": job.adv_retain, **{f"method.{k}": v for k, v in flatten(job.method_config).items()}}


def _run_name(job: EvalJob) -> str:
    return f"{job.label}-{job.spec}-s{job.seed}"


def _log_outcome(job: EvalJob, outcome: JobOutcome, parent_id: str, cfg: StudyConfig, client, result) -> dict | None:
    """Log one finished job as a child run; returns its metric values (None when it failed)."""
    from unlearnbench.eval import tracking
    from unlearnbench.eval.report import Report

    value = outcome.value if outcome.ok else {"error": outcome.error, "traceback": ""}
    if "error" in value:
        _log_failure(job, value["error"], value.get("traceback", ""), parent_id, cfg, client, result)
        return None
    report = Report.from_json(value["report"])
    ckpt = value.get("checkpoint")
    # report.config already holds the method's full config (method.*) and the evaluation (eval.*).
    tracking.log_report(report, checkpoint=Path(ckpt) if ckpt else None, parent_run_id=parent_id,
                        run_name=_run_name(job), extra_tags=_tags(job, cfg),
                        extra_params={"forget": job.spec, "seed": job.seed})
    result.finished += 1
    return {k: v for k, v in report.values.items() if v == v}  # drop NaN


def _log_failure(job: EvalJob, error: str, trace: str, parent_id: str, cfg: StudyConfig, client, result) -> None:
    import mlflow

    from unlearnbench.eval import tracking

    tags = {**_tags(job, cfg), "error": error[:4000]}
    with tracking.run(_run_name(job), params=_params(job), tags=tags, parent_run_id=parent_id) as active:
        mlflow.log_text(f"{error}\n\n{trace}".strip() + "\n", "error.txt")
        run_id = active.info.run_id
    client.set_terminated(run_id, "FAILED")
    result.failures.append((job.key, error))
    log.warning("Run %s failed: %s", job.key, error)


def preflight(cfg: StudyConfig, source: DataSource | None) -> None:
    """Missing dataset files or a forget spec that does not fit the data fail here, in one
    sentence, before any run is logged (not as one failed run per job)."""
    from unlearnbench.core.data import load_dataset, make_unlearn_data, split_train_val

    raw = load_dataset(cfg.dataset, source)
    splits = split_train_val(raw, cfg.split_seed, cfg.val_fraction)
    for spec in cfg.forget:
        make_unlearn_data(splits, spec)


def check_executor(executor: ExecutorConfig) -> None:
    if executor.kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("The Ray executor needs the ray extra: pip install 'unlearnbench[ray]'.") from None
