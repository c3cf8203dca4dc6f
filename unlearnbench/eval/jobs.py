"""Library entry points for evaluation jobs (used by the CLI, ``unlearn`` and studies alike).

- ``evaluate_model(model, data, ...)``: a model already in memory (e.g. fresh from
  ``unlearn.run``); a thin wrapper over ``Evaluator.evaluate``.
- ``evaluate_checkpoint(path, reference=..., original=..., ...)``: checkpoints on disk; the data
  (dataset, split seed, forget spec) comes from the checkpoint's metadata unless overridden.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn as nn

from unlearnbench.core.checkpoint import Checkpoint, load_checkpoint, sha256_file
from unlearnbench.core.data import DataSource, Splits, UnlearnData, prepare
from unlearnbench.core.errors import UserError
from unlearnbench.core.jobs import check_compatible
from unlearnbench.core.protocol import check_data, check_reference, resolve_source
from unlearnbench.core.runtime import resolve_device
from unlearnbench.eval.engine import Evaluator
from unlearnbench.eval.report import Report

log = logging.getLogger(__name__)


def evaluate_model(
    model: nn.Module,
    data: UnlearnData,
    *,
    evaluator: Evaluator | None = None,
    reference: nn.Module | Report | Mapping[str, float] | None = None,
    original: nn.Module | Report | Mapping[str, float] | None = None,
    rte_seconds: float | None = None,
    config: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    name: str = "",
) -> Report:
    """Evaluate an in-memory model; ``meta`` fills the report's tags (kind, method, model, seed)."""
    return (evaluator or Evaluator()).evaluate(
        model, data, reference=reference, original=original, rte_seconds=rte_seconds, config=config,
        meta=meta, name=name,
    )


def forget_spec_of(ckpt: Checkpoint, forget: str | None = None) -> str:
    """The forget spec to evaluate: explicit, else the checkpoint's ``forget`` / ``exclude``."""
    spec = forget or ckpt.meta.get("forget") or ckpt.meta.get("exclude")
    if not spec:
        raise UserError(
            f"Checkpoint {ckpt.path} does not record a forget set; pass --forget SPEC (e.g. class:3 or random:0.1)."
        )
    return str(spec)


def load_eval_data(
    ckpt: Checkpoint, forget: str | None = None, source: DataSource | None = None, device: Any = "cpu"
) -> tuple[Splits, UnlearnData]:
    """Rebuild the exact split the checkpoint was trained with (its subset unless ``source`` names
    one) and apply the forget spec; :func:`check_data` then compares the data fingerprints."""
    meta = ckpt.meta
    splits, data = prepare(
        meta["dataset"], forget_spec_of(ckpt, forget), split_seed=int(meta["split_seed"]),
        val_fraction=float(meta.get("val_fraction", 0.1)), source=resolve_source(source, meta), device=device,
    )
    check_compatible(ckpt, splits)
    return splits, data


def _as_checkpoint(item: str | Path | Checkpoint) -> Checkpoint:
    ckpt = item if isinstance(item, Checkpoint) else load_checkpoint(item)
    ckpt.require_task("classification", "evaluate (generation models are scored by a generation study)")
    return ckpt


def _companion(item: Any, role: str, main: Checkpoint, splits: Splits, device: Any, data: UnlearnData | None = None,
               allow_mismatch: bool = False, notes: dict[str, str] | None = None,
               models: dict[str, Any] | None = None) -> nn.Module | Report | None:
    """Load a reference / original given as checkpoint path, Checkpoint, report JSON or Report.

    A reference checkpoint or report is checked against the run (:func:`check_reference`) before
    any model is built; a mismatch the user allowed is added to ``notes``. ``models``: checkpoint
    files already built, by content hash (the same file, the same module, so the evaluator
    predicts and evaluates it once for several evaluated checkpoints)."""
    if item is None or isinstance(item, nn.Module):
        return item
    if isinstance(item, Report) or (isinstance(item, (str, Path)) and str(item).endswith(".json")):
        report = item if isinstance(item, Report) else Report.load(item)
        dataset = report.meta.get("dataset")
        if dataset and dataset != splits.info.name:
            raise UserError(f"The {role} report {item} is for dataset {dataset!r}, not {splits.info.name!r}.")
        if role == "reference" and data is not None:
            _note(notes, "reference_mismatch", check_reference(
                report.meta, run=main.meta, splits=splits, data=data, where=_describe(item), allow=allow_mismatch))
        return report
    key = f"{sha256_file(item)}@{device}" if models is not None and isinstance(item, (str, Path)) else None
    ckpt, model = models[key] if key is not None and key in models else (_as_checkpoint(item), None)
    # The checks read metadata only; they run for every evaluated checkpoint, cached model or not.
    if role == "reference" and data is not None:
        # Replaces check_compatible: a split-seed mismatch is one the user may allow here.
        _note(notes, "reference_mismatch", check_reference(
            ckpt.meta, run=main.meta, splits=splits, data=data, where=str(ckpt.path or "(in memory)"),
            allow=allow_mismatch))
    else:
        check_compatible(ckpt, splits)
        if ckpt.meta["model"] != main.meta["model"]:
            log.warning("the %s is a %s, the evaluated model a %s", role, ckpt.meta["model"], main.meta["model"])
    if model is None:
        model = ckpt.build(device)
        if key is not None:
            models[key] = (ckpt, model)
    return model


def _note(notes: dict[str, str] | None, key: str, note: str | None) -> None:
    if notes is not None and note:
        notes[key] = note


def report_meta(ckpt: Checkpoint, data: UnlearnData) -> dict[str, Any]:
    meta = ckpt.meta
    seed = meta.get("seed", (meta.get("train_config") or {}).get("seed", ""))
    return {
        "kind": meta.get("kind", "unlearn" if meta.get("method") else ""),
        "method": meta.get("method", ""),
        "dataset": meta["dataset"],
        "model": meta["model"],
        "forget": str(data.spec),
        "seed": seed,
        **({"recipe": meta["recipe"]} if meta.get("recipe") else {}),  # logged as an MLflow param
    }


def evaluate_checkpoint(
    checkpoint: str | Path | Checkpoint,
    *,
    reference: str | Path | Checkpoint | Report | nn.Module | None = None,
    original: str | Path | Checkpoint | Report | nn.Module | None = None,
    forget: str | None = None,
    evaluator: Evaluator | None = None,
    device: str = "auto",
    source: DataSource | None = None,
    rte_seconds: float | None = None,
    name: str = "",
    allow_data_mismatch: bool = False,
    allow_reference_mismatch: bool = False,
) -> Report:
    """Evaluate a checkpoint against an optional retrained reference and original model.

    ``reference`` / ``original`` may be checkpoint paths, ``Checkpoint``s, models, ``Report``s or
    report-JSON paths (a report gives gaps and AUS but not the divergence metrics).
    ``rte_seconds`` defaults to the checkpoint's recorded ``rte_seconds``. The data must be what
    the checkpoint was trained on and the reference this run's retrain (``core.protocol``);
    mismatches the ``allow_*`` flags let through are recorded in the report's config.
    """
    ckpt = _as_checkpoint(checkpoint)
    dev = resolve_device(device)
    model = ckpt.build(dev)  # the weights are checked before any data is read
    splits, data = load_eval_data(ckpt, forget, source, dev)
    notes: dict[str, str] = {}
    _note(notes, "data_mismatch", check_data(ckpt.meta, splits, where=str(ckpt.path or "(in memory)"),
                                             allow=allow_data_mismatch))
    evaluator = evaluator or Evaluator()
    # Several checkpoints evaluated with one evaluator share the reference and the original:
    # built once (by file hash), predicted and evaluated once (the evaluator's companion memo).
    ref = _companion(reference, "reference", ckpt, splits, dev, data, allow_reference_mismatch, notes,
                     models=evaluator.companion_models)
    orig = _companion(original, "original", ckpt, splits, dev, models=evaluator.companion_models)
    if rte_seconds is None and ckpt.meta.get("rte_seconds") is not None:
        rte_seconds = float(ckpt.meta["rte_seconds"])
    for pool in evaluator.pools:
        if pool.kind == "ulira" and ckpt.meta.get("method") and pool.manifest.get("method") != ckpt.meta.get("method"):
            log.warning("U-LiRA pool %s unlearned with %r but the checkpoint used %r",
                        pool.path, pool.manifest.get("method"), ckpt.meta.get("method"))
    config = {
        "checkpoint": str(ckpt.path or ""),
        "reference": _describe(reference),
        "original": _describe(original),
        "method_config": ckpt.meta.get("method_config") or {},
        **{k: ckpt.meta[k] for k in ("prune", "adv_retain") if ckpt.meta.get(k) is not None},
        **notes,
    }
    return evaluator.evaluate(
        model, data, reference=ref, original=orig, rte_seconds=rte_seconds, config=config,
        meta=report_meta(ckpt, data), name=name or Path(str(ckpt.path or "model")).stem,
    )


def _describe(item: Any) -> str:
    if item is None:
        return ""
    if isinstance(item, Checkpoint):
        return str(item.path or "(in memory)")
    if isinstance(item, (str, Path)):
        return str(item)
    return type(item).__name__
