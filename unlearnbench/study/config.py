"""A study's configuration: the YAML file, checked in full before anything trains.

``study_from_dict`` builds a frozen ``StudyConfig`` (``study.tasks.load_study`` reads a file or a
shipped study by name, see ``examples()``, of any task); unknown keys, unknown methods/models/datasets/recipes/attacks and bad
method or training configs fail here in one sentence. ``study_id`` is the hash that keys resuming.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from unlearnbench.core.config import configclass, from_dict, to_dict
from unlearnbench.core.data import DataSource, parse_forget_spec
from unlearnbench.core.errors import ConfigError, UserError
from unlearnbench.eval.engine import EvalConfig
from unlearnbench.study.expected import ExpectedBlock, expected_blocks

EXAMPLES_DIR = Path(__file__).with_name("studies")
KINDS = ("retrain", "original", "unlearn")


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
    log_model: bool = False  # also log every model (original, retrain, unlearned) as an MLflow model
    original: str | None = None  # an existing checkpoint (e.g. `unlearnbench import`) as every seed's original
    # Known differences from the paper protocol this study reproduces, one sentence each; shown in
    # the report header (a study calling itself a paper protocol lists them or has none).
    differences: tuple[str, ...] = ()
    # The paper's numbers for this study's rows (study/expected.py); shown beside the measured ones.
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
    if cfg.prune_mode == "rewind" and sparsities(cfg) and cfg.rewind_epoch >= tc.epochs:
        raise ConfigError(f"rewind_epoch {cfg.rewind_epoch} must be below the {tc.epochs} training epochs "
                          "(the sparse original rewinds to an early epoch); lower it or use prune_mode: one-shot.")
    if cfg.original is not None:
        if cfg.prune_mode == "rewind" and sparsities(cfg):
            raise ConfigError("A given original has no training run to rewind; use prune_mode: one-shot with it.")
        _check_original(cfg)
    for m in cfg.methods:
        unlearn.build_config(m.name, dict(m.config), seed=cfg.seeds[0])
    attacks = [a for a in (*cfg.adv_retain, *cfg.evaluation.robustness) if a is not None]
    if attacks:
        try:
            from unlearnbench.robust.attacks import check_available
        except ImportError:
            raise UserError("This study uses attacks, but the unlearnbench.robust package is not installed.") from None
        for a in attacks:
            check_available(a)  # a missing torchattacks too: before anything trains
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
    for k in ("experiment", "device", "save_checkpoints", "log_model", "differences", "expected", "description"):
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
    if not sparsities(cfg):  # the prune settings do not change a study without prune levels
        data.pop("prune_mode")
        data.pop("rewind_epoch")
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


def sparsities(cfg: StudyConfig) -> list[float]:
    return [p for p in cfg.prune if p is not None]


def variant_of(prune: float | None, adv_retain: str | None) -> str:
    parts = ([f"prune={prune:g}"] if prune is not None else []) + ([f"adv={adv_retain}"] if adv_retain else [])
    return ",".join(parts)
