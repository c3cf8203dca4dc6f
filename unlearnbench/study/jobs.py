"""The two job functions of a study, run in-process or on a Ray worker (same function):
``train_job`` trains (or reuses the cached checkpoint of) an original or retrained model;
``eval_job`` unlearns (for method rows) and evaluates, returning the Report as JSON. Workers never
write to MLflow: they return results, and the driver (``study.run``) records them."""

from __future__ import annotations

import copy
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unlearnbench.core.config import flatten, from_dict, to_dict
from unlearnbench.eval.engine import EvalConfig
from unlearnbench.study.plan import EvalJob, TrainJob, rewind_path

log = logging.getLogger(__name__)


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
    outcome.meta["history"] = outcome.history  # per-epoch curves, logged with the model's study runs
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
        "history": list(result.history),
    })
    return model, meta


def timed_result(work: Callable[[Any], dict[str, Any]], job: Any) -> dict[str, Any]:
    """``work(job)``'s result, or its error with the traceback, plus the work's wall-clock bounds.

    Errors are caught here (not only by the executor) to keep the traceback for the FAILED run;
    the bounds let the job's MLflow run show its true duration wherever it ran."""
    import time

    started = time.time()
    try:
        out = work(job)
    except Exception as exc:
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return {**out, "started_ms": int(started * 1000), "ended_ms": int(time.time() * 1000)}


def eval_job(job: EvalJob) -> dict[str, Any]:
    """Unlearn (for ``unlearn`` jobs) and evaluate; returns the Report as JSON, or the error."""
    return timed_result(_eval_job, job)


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
            res = unlearn.run(job.method, original, data, dict(job.method_config), check_utility=False, prune=job.prune,
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
    reference: Any = None if job.kind == "retrain" else job.reference_values
    if reference is not None and job.reference_outcomes:
        from unlearnbench.eval.paired import Outcomes
        from unlearnbench.eval.report import Report

        reference = Report(values=dict(reference),
                           outcomes={k: Outcomes.from_json(v) for k, v in job.reference_outcomes.items()})
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
