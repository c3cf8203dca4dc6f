"""A study's job plan: every training job (originals, retrained references, sparse ones) and
every evaluation job (reference, original, method variant), as picklable values that the
executor ships to a worker (``study.jobs``) and the driver keys runs by (``run_key``)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnbench.core.config import to_dict
from unlearnbench.core.data import DataSource, parse_forget_spec
from unlearnbench.study.config import (
    StudyConfig,
    recipe_name,
    retrain_train_config,
    sparsities,
    study_id,
    train_config,
    variant_of,
)


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
    # The reference's per-example outcomes (report.json form, eval.paired): gaps are then paired.
    reference_outcomes: dict[str, Any] | None = None

    @property
    def variant(self) -> str:
        return variant_of(self.prune, self.adv_retain)

    @property
    def key(self) -> str:
        return run_key(self.kind, self.label, self.spec, self.seed)


def run_key(kind: str, label: str, spec: str, seed: int) -> str:
    return f"{kind}|{label}|{spec}|{seed}"


def plan_jobs(cfg: StudyConfig, work_dir: Path, source: DataSource | None,
              data_key: str = "") -> tuple[list[TrainJob], list[EvalJob]]:
    """Every training job and every evaluation job of the study (before skipping finished ones)."""
    trains: list[TrainJob] = []
    evals: list[EvalJob] = []
    ev = to_dict(cfg.evaluation)
    ev.pop("seed")
    rewind = cfg.prune_mode == "rewind"
    levels = sparsities(cfg)
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
                                if cfg.save_checkpoints or cfg.log_model else None)
                        evals.append(EvalJob(kind="unlearn", label=label, method=m.name, method_config=dict(m.config),
                                             prune=prune, adv_retain=adv, save_checkpoint=ckpt,
                                             original_path=originals[prune], retrain_path=retrains[prune],
                                             mask_from=mask_from if (rewind and prune is not None) else "", **common))
    return trains, evals
