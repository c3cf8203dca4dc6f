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

import copy
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
from typing import Any, Literal

from unlearnbench.core.config import configclass, flatten, from_dict, load_yaml, to_dict
from unlearnbench.core.data import DataSource, parse_forget_spec
from unlearnbench.core.errors import ConfigError, UserError
from unlearnbench.core.executor import ExecutorConfig, JobOutcome, run_jobs
from unlearnbench.eval.engine import EvalConfig
from unlearnbench.eval.expected import ExpectedBlock, expected_blocks

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
    subset: int | None = None  # use N training images (stratified, seeded), as `--subset`
    per_class: int | None = None  # or N per class, as `--per-class`
    recipe: str | None = None  # named training recipe (`unlearnbench ls recipes`); None = the dataset's default
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys over the recipe (and over retrain_recipe)
    # The Retrain references' recipe; None = the same as the original's (``recipe``). The paper
    # studies set paper-retrain: the papers' Retrain is 160 epochs from a fresh init, last epoch.
    retrain_recipe: str | None = None
    prune: tuple[float | None, ...] = (None,)  # OMP sparsity before unlearning; null = none
    # rewind: Unlearn-Sparse's sparse original (OMP of the trained dense model, rewind to the
    # weights after epoch ``rewind_epoch``, retrain with the mask fixed); one-shot: prune the dense
    # original just before unlearning. Either way pruned rows are compared with a sparse Retrain.
    prune_mode: Literal["rewind", "one-shot"] = "rewind"
    rewind_epoch: int = 8
    adv_retain: tuple[str | None, ...] = (None,)  # attack hardening retain batches; null = none
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    experiment: str = ""  # MLflow experiment (default: the study name)
    device: str = "auto"
    save_checkpoints: bool = False  # log every unlearned model's checkpoint as an artifact
    original: str | None = None  # an existing checkpoint (e.g. `unlearnbench import`) as every seed's original
    # Known differences from the paper protocol this study reproduces, one sentence each; shown in
    # the report header (a study calling itself a paper protocol lists them or has none).
    differences: tuple[str, ...] = ()
    # The paper's numbers for this study's rows (eval/expected.py); shown beside the measured ones.
    expected: tuple[ExpectedBlock, ...] = ()
    description: str = ""  # shown as the parent run's MLflow description (mlflow.note.content)

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
        if self.rewind_epoch < 1:
            raise ConfigError("rewind_epoch counts training epochs from 1 (Unlearn-Sparse rewinds to epoch 8).")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction must lie strictly between 0 and 1.")
        for spec in self.forget:
            parse_forget_spec(spec)
        DataSource(subset=self.subset, per_class=self.per_class)  # one sentence for a bad subset
        variants = {variant_of(p, a) for p in self.prune for a in self.adv_retain}
        for block in self.expected:
            if block.forget not in self.forget:
                raise ConfigError(f"The expected block for {block.forget!r} names a forget spec the study does not run; "
                                  f"its specs: {', '.join(self.forget)}.")
            if block.variant not in variants:
                raise ConfigError(f"The expected block for {block.forget!r} has variant {block.variant!r}; "
                                  f"the study's variants: {', '.join(repr(v) for v in sorted(variants))}.")

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
        elif _paper_retrain_missing(cfg):
            warnings.warn(f"Preset {m.preset!r} is compared with a paper whose Retrain is 160 epochs from a fresh "
                          f"init, last epoch kept (recipe paper-retrain), but this study retrains with recipe "
                          f"{cfg.retrain_recipe or recipe_name(cfg)!r}; set retrain_recipe: paper-retrain or list the "
                          "difference under differences:.", stacklevel=3)
        if preset.dataset == cfg.dataset and _paper_recipe_missing(cfg):
            warnings.warn(f"Preset {m.preset!r} is a paper protocol whose original the papers train "
                          f"with main_train.py (recipe paper-cifar), but this study trains with recipe "
                          f"{recipe_name(cfg)!r}; set recipe: paper-cifar or list the difference under differences:.",
                          stacklevel=3)


def _paper_retrain_missing(cfg: StudyConfig) -> bool:
    """A CIFAR study using a paper preset retrains its references with another recipe and does not say so."""
    return (cfg.dataset.startswith("cifar") and cfg.retrain_recipe != "paper-retrain"
            and not any("retrain" in d.lower() and "recipe" in d.lower() for d in cfg.differences))


def _paper_recipe_missing(cfg: StudyConfig) -> bool:
    """A CIFAR study using a paper preset trains with another recipe and does not say so."""
    return (cfg.dataset.startswith("cifar") and recipe_name(cfg) != "paper-cifar"
            and not any("recipe" in d for d in cfg.differences))


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
    if "expected" in raw:
        raw["expected"] = expected_blocks(raw["expected"])
    if "train" in raw and not isinstance(raw["train"], Mapping):
        raise ConfigError("train must be a mapping of training keys (epochs, lr, ...).")
    cfg = from_dict(StudyConfig, raw)
    _check_names(cfg)
    _check_presets(cfg)
    return cfg


def _check_names(cfg: StudyConfig) -> None:
    from unlearnbench import unlearn
    from unlearnbench.core.data import DATASETS
    from unlearnbench.core.models import check_model_spec
    from unlearnbench.core.recipes import RECIPES

    DATASETS.get(cfg.dataset)
    check_model_spec(cfg.model)  # a registered name, torchvision:NAME or module.path:factory
    if cfg.recipe is not None:
        RECIPES.get(cfg.recipe)
    if cfg.retrain_recipe is not None:
        RECIPES.get(cfg.retrain_recipe)
        retrain_train_config(cfg, cfg.seeds[0])  # train: keys must suit it too
    tc = train_config(cfg, cfg.seeds[0])
    if cfg.prune_mode == "rewind" and _sparsities(cfg) and cfg.rewind_epoch >= tc.epochs:
        raise ConfigError(f"rewind_epoch {cfg.rewind_epoch} must be below the {tc.epochs} training epochs "
                          "(the sparse original rewinds to an early epoch); lower it or use prune_mode: one-shot.")
    if cfg.original is not None:
        if cfg.prune_mode == "rewind" and _sparsities(cfg):
            raise ConfigError("A given original has no training run to rewind; use prune_mode: one-shot with it.")
        _check_original(cfg)
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


def _check_original(cfg: StudyConfig) -> None:
    """A given original must exist (it is never trained over) and fit the study's data and model."""
    from unlearnbench.core.checkpoint import load_checkpoint

    meta = load_checkpoint(cfg.original).meta
    for key, want in (("dataset", cfg.dataset), ("model", cfg.model), ("split_seed", cfg.split_seed)):
        if meta[key] != want:
            raise ConfigError(f"original {cfg.original} has {key} {meta[key]!r} but the study uses {want!r}; make them match.")


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
    from unlearnbench.core.recipes import recipe_train
    from unlearnbench.core.train import TrainConfig

    return from_dict(TrainConfig, {**recipe_train(cfg.recipe, cfg.dataset), **cfg.train, "seed": seed,
                                   "device": cfg.device})


def retrain_train_config(cfg: StudyConfig, seed: int):
    """The Retrain references' TrainConfig: ``retrain_recipe`` (else ``recipe``), then ``train:``."""
    from unlearnbench.core.recipes import recipe_train
    from unlearnbench.core.train import TrainConfig

    if cfg.retrain_recipe is None:
        return train_config(cfg, seed)
    return from_dict(TrainConfig, {**recipe_train(cfg.retrain_recipe, cfg.dataset), **cfg.train, "seed": seed,
                                   "device": cfg.device})


def recipe_name(cfg: StudyConfig) -> str:
    from unlearnbench.core.recipes import default_recipe

    return cfg.recipe or default_recipe(cfg.dataset)


def study_id(cfg: StudyConfig) -> str:
    """What the results depend on (not where they are logged or which device ran them)."""
    data = to_dict(cfg)
    for k in ("experiment", "device", "save_checkpoints", "differences", "expected", "description"):
        data.pop(k, None)
    if data.get("original") is None:  # studies written before `original:` existed keep their id
        data.pop("original", None)
    for k in ("subset", "per_class"):  # unset or 0 (all): the ids of studies written before these keys
        if not data.get(k):
            data.pop(k, None)
    if data.get("recipe") is None:  # keeps the id of studies written before recipes existed
        data.pop("recipe")
    if data.get("retrain_recipe") is None:  # likewise for studies written before retrain_recipe
        data.pop("retrain_recipe", None)
    if not _sparsities(cfg):  # the prune settings do not change a study without prune levels
        data.pop("prune_mode")
        data.pop("rewind_epoch")
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _sparsities(cfg: StudyConfig) -> list[float]:
    return [p for p in cfg.prune if p is not None]


def _slug(text: str) -> str:
    short = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40]
    return f"{short}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _spec_key(spec: str) -> str:
    """Cache key of a forget spec; a deletion-request file is keyed by its content, not its name."""
    parsed = parse_forget_spec(spec)
    if parsed.kind == "indices" and parsed.path and Path(parsed.path).is_file():
        return _slug("indices:" + hashlib.sha256(Path(parsed.path).read_bytes()).hexdigest())
    return _slug(spec)


def model_dir(cfg: StudyConfig, work_dir: Path, seed: int, data_key: str = "") -> Path:
    """Cache folder of a seed's models; ``data_key`` (the data fingerprint's digest) keeps models
    trained on other data (another data root, subset) apart."""
    tc = to_dict(train_config(cfg, seed))
    tc.pop("device")
    digest = hashlib.sha256(json.dumps(tc, sort_keys=True, default=str).encode()).hexdigest()[:12]
    split = f"split{cfg.split_seed}-val{cfg.val_fraction}" + (f"-data{data_key[:12]}" if data_key else "")
    return Path(work_dir) / "models" / f"{cfg.dataset}-{cfg.model}" / split / digest / f"seed{seed}"


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
    recipe: str = ""
    rewind_epoch: int | None = None  # dense original: also keep the weights after this epoch (and the last)
    sparsity: float | None = None  # a sparse model (original or Retrain) with the OMP mask of dense_path
    dense_path: str = ""  # the dense original the mask comes from
    mask_epoch: int | None = None  # the mask from the dense run's weights after this epoch (None: the saved ones)

    @property
    def mask_source(self) -> str:
        return str(rewind_path(self.dense_path, self.mask_epoch)) if self.mask_epoch else self.dense_path

    @property
    def sparse(self) -> bool:
        return self.sparsity is not None


def rewind_path(original_path: str | Path, epoch: int) -> Path:
    """Where the dense original's weights after epoch ``epoch`` (the rewind point, the last epoch)
    are cached."""
    p = Path(original_path)
    return p.with_name(f"{p.stem}-epoch{epoch}{p.suffix}")


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
    prune_mode: str = "rewind"
    mask_from: str = ""  # rewind-mode pruned rows: the dense weights whose OMP mask must stay intact

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
    cfg = from_dict(TrainConfig, job.train)
    snap_epochs = (job.rewind_epoch, cfg.epochs) if job.rewind_epoch and not job.sparse else ()
    if path.is_file() and all(rewind_path(path, e).is_file() for e in snap_epochs):
        try:
            meta = load_checkpoint(path).meta
            return {"meta": meta, "cached": True}
        except CheckpointError as exc:  # a damaged cache entry is rebuilt, not fatal
            log.warning("Retraining %s: %s", path, exc)
    if job.sparse:
        model, meta = _train_sparse(job, cfg)
        save_checkpoint(path, model, meta)
        return {"meta": meta, "cached": False}
    from unlearnbench.unlearn.prune import EpochSnapshot

    snap = EpochSnapshot(*snap_epochs) if snap_epochs else None
    outcome = train_model(job.dataset, job.model, cfg, exclude=job.exclude, split_seed=job.split_seed,
                          val_fraction=job.val_fraction, source=job.source, epoch_end=snap)
    outcome.meta["recipe"] = job.recipe
    for epoch in snap_epochs:
        if epoch not in snap.states:
            raise RuntimeError(f"training stopped before epoch {epoch}, which pruning needs")
        early = copy.deepcopy(outcome.model)
        early.load_state_dict(snap.states[epoch])
        save_checkpoint(rewind_path(path, epoch), early, {**outcome.meta, "kind": "snapshot", "epoch": epoch})
    save_checkpoint(path, outcome.model, outcome.meta)
    return {"meta": outcome.meta, "cached": False}


def _train_sparse(job: TrainJob, cfg) -> tuple[Any, dict[str, Any]]:
    """A sparse model with the OMP mask of the dense original ``job.dense_path``:

    * ``exclude`` None — the sparse original: survivors rewound to the dense run's epoch-k weights,
      trained on the training split with the mask fixed (Unlearn-Sparse ``main_imp.py``);
    * ``exclude`` a spec — the sparse Retrain: the same seeded initialisation as the dense Retrain,
      the same mask, trained on the retain set with the mask fixed.
    """
    from unlearnbench.core import provenance
    from unlearnbench.core.checkpoint import load_checkpoint
    from unlearnbench.core.data import prepare
    from unlearnbench.core.jobs import checkpoint_meta, train_metrics
    from unlearnbench.core.models import create_model
    from unlearnbench.core.runtime import resolve_device, seed_everything
    from unlearnbench.unlearn.prune import conv_sparsity, magnitude_masks, mask_digest, rewind_retrain, train_masked

    device = resolve_device(cfg.device)
    splits, data = prepare(job.dataset, job.exclude, split_seed=job.split_seed, val_fraction=job.val_fraction,
                           source=job.source, device=device)
    info = splits.info
    dense = load_checkpoint(job.mask_source).build(device)
    if job.exclude is None:
        rewind = load_checkpoint(rewind_path(job.dense_path, job.rewind_epoch)).state_dict
        train_set = splits.train
        model, masks, result = rewind_retrain(dense, rewind, job.sparsity, train_set, splits.val, info, cfg,
                                              job.rewind_epoch, description=f"sparse original {job.sparsity:g}")
    else:
        masks = magnitude_masks(dense, job.sparsity)
        seed_everything(cfg.seed)  # the dense Retrain's initialisation (train_model seeds the same way)
        model = create_model(job.model, info.num_classes, info.in_channels, info.image_size, info.mean, info.std)
        model.to(device)
        train_set = data.retain
        result = train_masked(model, masks, train_set, splits.val, info, cfg,
                              description=f"sparse retrain {job.sparsity:g}")
    metrics = train_metrics(model, splits, train_set, result, data)
    meta = checkpoint_meta(job.model, splits, exclude=job.exclude, val_fraction=job.val_fraction, extra={
        "kind": "retrain" if job.exclude else "original",
        "train_config": to_dict(cfg),
        "metrics": metrics,
        "recipe": job.recipe,
        "sparse": {"sparsity": job.sparsity, "rewind_epoch": job.rewind_epoch, "mask": mask_digest(masks),
                   "conv_sparsity": conv_sparsity(model), "mask_from": job.mask_source},
        "provenance": provenance.collect(device, cfg.seed),
    })
    return model, meta


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
    from unlearnbench.core.protocol import check_data, check_reference
    from unlearnbench.core.runtime import resolve_device
    from unlearnbench.eval.engine import Evaluator

    device = resolve_device(job.device)
    splits, data = prepare(job.dataset, job.spec, split_seed=job.split_seed, val_fraction=job.val_fraction,
                           source=job.source, device=device)
    original_ckpt = load_checkpoint(job.original_path)
    retrain_ckpt = load_checkpoint(job.retrain_path)
    check_compatible(original_ckpt, splits)
    check_compatible(retrain_ckpt, splits)
    # The study trained both on this data; the checks guard the cache against mix-ups.
    check_data(original_ckpt.meta, splits, where=job.original_path)
    check_data(retrain_ckpt.meta, splits, where=job.retrain_path)
    check_reference(retrain_ckpt.meta, run=original_ckpt.meta, splits=splits, data=data, where=job.retrain_path)
    original = original_ckpt.build(device)
    retrain = retrain_ckpt.build(device)
    ev_cfg = from_dict(EvalConfig, {**job.evaluation, "seed": job.seed})
    evaluator = Evaluator.from_config(ev_cfg)
    info: dict[str, Any] = {}
    params: dict[str, Any] = {}
    history: list[dict] = []
    if job.kind == "unlearn":
        from unlearnbench.unlearn.loops import record_epochs

        with record_epochs(data.forget) as history:  # loss and forget accuracy per epoch
            res = unlearn.run(job.method, original, data, dict(job.method_config), prune=job.prune,
                              adv_retain=job.adv_retain, seed=job.seed, device=job.device)
        model, rte = res.model, res.seconds
        if job.mask_from:
            _check_mask_kept(model, job.mask_from, job.prune, device)
        params = {f"method.{k}": v for k, v in flatten(res.config).items()}
        info = {k: v for k, v in res.info.items() if isinstance(v, (int, float, str, bool)) or v is None}
    elif job.kind == "retrain":
        model, rte = retrain, job.retrain_seconds
    elif job.prune is not None and job.prune_mode == "one-shot":
        from unlearnbench.unlearn.prune import omp

        model, rte = copy.deepcopy(original), None
        omp(model, job.prune)  # the row the one-shot methods start from
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
    return {"report": report.to_json(indent=None), "params": params, "info": info, "checkpoint": ckpt,
            "history": history}


def _check_mask_kept(model, mask_from: str, sparsity: float, device) -> None:
    """A rewind-mode row starts from the sparse original and ``run(prune=S)`` re-derives its mask
    from the zeros; this checks that the mask the sparse original was trained with stayed zero."""
    from unlearnbench.core.checkpoint import load_checkpoint
    from unlearnbench.unlearn.prune import magnitude_masks, pruned_nonzero

    masks = magnitude_masks(load_checkpoint(mask_from).build(device), sparsity)
    moved = pruned_nonzero(model, masks)
    if moved:
        raise RuntimeError(f"{moved} weights pruned in the sparse original are no longer zero")


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


def plan_jobs(cfg: StudyConfig, work_dir: Path, source: DataSource | None,
              data_key: str = "") -> tuple[list[TrainJob], list[EvalJob]]:
    """Every training job and every evaluation job of the study (before skipping finished ones)."""
    trains: list[TrainJob] = []
    evals: list[EvalJob] = []
    ev = to_dict(cfg.evaluation)
    ev.pop("seed")
    rewind = cfg.prune_mode == "rewind"
    levels = _sparsities(cfg)
    for seed in cfg.seeds:
        mdir = model_dir(cfg, work_dir, seed, data_key)
        tc = to_dict(train_config(cfg, seed))
        # A given original (`original:`) is used as is: its cached path makes the train job a no-op.
        orig_path = str(Path(cfg.original).resolve()) if cfg.original else str(mdir / "original.pt")
        # rewind: the mask comes from the dense run's last-epoch weights, as main_imp.py prunes them
        # (not the best-validation weights original.pt holds); one-shot prunes original.pt itself.
        last = train_config(cfg, seed).epochs if rewind else None
        mask_from = str(rewind_path(orig_path, last)) if rewind else orig_path
        recipe = recipe_name(cfg)
        base = dict(dataset=cfg.dataset, model=cfg.model, train=tc, split_seed=cfg.split_seed,
                    val_fraction=cfg.val_fraction, source=source, recipe=recipe)
        trains.append(TrainJob(exclude=None, path=orig_path, rewind_epoch=cfg.rewind_epoch if rewind and levels else None,
                               **base))
        # The original each prune level starts from: the sparse original (rewind) or the dense one.
        originals = {None: orig_path}
        for s in levels:
            if rewind:
                originals[s] = str(mdir / f"original-omp{s:g}-rewind{cfg.rewind_epoch}.pt")
                trains.append(TrainJob(exclude=None, path=originals[s], rewind_epoch=cfg.rewind_epoch, sparsity=s,
                                       dense_path=orig_path, mask_epoch=last, **base))
            else:
                originals[s] = orig_path
        # Retrain references: their own recipe when the study names one (a separate cache name, so
        # a reference trained with another recipe is never reused).
        rbase, rtag = base, ""
        if cfg.retrain_recipe is not None:
            rbase = {**base, "train": to_dict(retrain_train_config(cfg, seed)), "recipe": cfg.retrain_recipe}
            rtag = "-" + hashlib.sha256(json.dumps({k: v for k, v in rbase["train"].items() if k != "device"},
                                                   sort_keys=True, default=str).encode()).hexdigest()[:8]
        for spec in cfg.forget:
            retrains = {None: str(mdir / f"retrain-{_spec_key(spec)}{rtag}.pt")}
            trains.append(TrainJob(exclude=spec, path=retrains[None], **rbase))
            for s in levels:  # the Retrain reference of pruned rows: retrained with the same mask
                retrains[s] = str(mdir / f"retrain-{_spec_key(spec)}-omp{s:g}{rtag}.pt")
                trains.append(TrainJob(exclude=spec, path=retrains[s], sparsity=s, dense_path=orig_path,
                                       mask_epoch=last, **rbase))
            common = dict(spec=spec, seed=seed, dataset=cfg.dataset, model=cfg.model, split_seed=cfg.split_seed,
                          val_fraction=cfg.val_fraction, source=source, device=cfg.device, retrain_seconds=None,
                          reference_values=None, evaluation=ev, prune_mode=cfg.prune_mode)
            for s in (None, *levels):
                suffix = f" [{variant_of(s, None)}]" if s is not None else ""
                paths = dict(original_path=originals[s], retrain_path=retrains[s])
                evals.append(EvalJob(kind="retrain", label="retrain" + suffix, method="retrain", method_config={},
                                     prune=s, adv_retain=None, save_checkpoint=None, **paths, **common))
                evals.append(EvalJob(kind="original", label="original" + suffix, method="original", method_config={},
                                     prune=s, adv_retain=None, save_checkpoint=None, **paths, **common))
            for m in cfg.methods:
                for prune in cfg.prune:
                    for adv in cfg.adv_retain:
                        variant = variant_of(prune, adv)
                        label = f"{m.display} [{variant}]" if variant else m.display
                        ckpt = (str(Path(work_dir) / "checkpoints" / study_id(cfg) / f"{_slug(label)}-{_spec_key(spec)}-s{seed}.pt")
                                if cfg.save_checkpoints else None)
                        evals.append(EvalJob(kind="unlearn", label=label, method=m.name, method_config=dict(m.config),
                                             prune=prune, adv_retain=adv, save_checkpoint=ckpt,
                                             original_path=originals[prune], retrain_path=retrains[prune],
                                             mask_from=mask_from if (rewind and prune is not None) else "", **common))
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
    source = study_source(cfg, source)
    data_key = preflight(cfg, source)
    work_dir = Path(work_dir).resolve()
    uri = tracking.setup(tracking_uri, cfg.experiment_name)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.experiment_name)
    sid = study_id(cfg)
    trains, evals = plan_jobs(cfg, work_dir, source, data_key)

    parent = None if new else _find_parent(client, exp.experiment_id, sid)
    if parent is not None and parent.data.tags.get("data_sha256", data_key[:12]) != data_key[:12]:
        from unlearnbench.core.protocol import DataMismatchError

        raise DataMismatchError(
            f"Study {cfg.name!r} ran on other data (training-set digest {parent.data.tags['data_sha256']}, now "
            f"{data_key[:12]}); point --data-root at that data to resume it, or pass --new to start afresh."
        )
    done: dict[str, Any] = {}
    result_notes: list[str] = []
    if parent is not None:
        for child in _children(client, exp.experiment_id, parent.info.run_id):
            key = child.data.tags.get("run_key")
            if key and child.info.status == "FINISHED":
                done[key] = child
            elif child.info.status == "RUNNING":
                # A driver killed while this child was being logged left it RUNNING for ever; the
                # job runs again below, so the old run is closed as what it is.
                client.set_terminated(child.info.run_id, "KILLED")
                result_notes.append(key or child.info.run_id)
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
                                  tags=tracking.standard_tags(tags), log_system_metrics=tracking.system_metrics_enabled())
    else:
        active = mlflow.start_run(run_id=parent.info.run_id, log_system_metrics=tracking.system_metrics_enabled())
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
            _log_failure(job, err, "", parent_id, cfg, client, result)
        return bool(err)

    # 2. Evaluate each retrained reference once (or read it back from its finished run).
    # Keyed by (spec, seed, prune variant): pruned rows have their own (sparse) reference.
    references: dict[tuple[str, int, str], dict[str, float]] = {}
    for key, run in done.items():
        if key.startswith("retrain|"):
            _, _, spec, seed = key.split("|")
            references[(spec, int(seed), run.data.tags.get("variant", ""))] = dict(run.data.metrics)
    ref_jobs = [
        dataclasses.replace(j, retrain_seconds=trained[j.retrain_path].get("metrics", {}).get("train_seconds"))
        for j in pending if j.kind == "retrain" and not failed_dependency(j)
    ]

    def on_ref(i: int, outcome: JobOutcome) -> None:
        job = ref_jobs[i]
        values = _log_outcome(job, outcome, parent_id, cfg, client, result)
        if values is not None:
            references[(job.spec, job.seed, job.variant)] = values

    run_jobs(eval_job, [(j,) for j in ref_jobs], executor, description="evaluate references", on_result=on_ref)

    # 3. The original model and every method, against the reference values.
    rest: list[EvalJob] = []
    for job in pending:
        if job.kind == "retrain" or failed_dependency(job):
            continue
        ref = references.get((job.spec, job.seed, variant_of(job.prune, None)))
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
                        extra_params={"forget": job.spec, "seed": job.seed, "dataset": cfg.dataset, "model": cfg.model,
                                      "recipe": recipe_name(cfg)},
                        epochs=value.get("history"))
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
