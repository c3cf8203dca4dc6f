"""Unlearning a saved checkpoint end to end (the library side of ``unlearnbench unlearn``).

:func:`unlearn_checkpoint` loads a checkpoint, rebuilds the exact data split it was trained on
(its dataset and ``split_seed``), applies a forget spec, runs a method and returns the model with
the metadata of the checkpoint to write. Studies and Ray workers call it directly; it neither
prints nor logs to MLflow.

One request is resolved once: :func:`check_request` checks it without reading data and returns an
:class:`UnlearnRequest` (the loaded checkpoint, the built method config, the parsed forget spec);
:func:`run_request` loads and splits the data once and passes the result down (to the method, the
per-epoch forget-accuracy recorder and the caller's evaluation through ``UnlearnOutcome.data``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from unlearnbench.core import provenance
from unlearnbench.core.checkpoint import Checkpoint, load_checkpoint
from unlearnbench.core.config import to_dict
from unlearnbench.core.data import DataSource, ForgetSpec, Splits, UnlearnData, fingerprint, parse_forget_spec, prepare
from unlearnbench.core.errors import CheckpointError, ConfigError
from unlearnbench.core.jobs import check_compatible
from unlearnbench.core.protocol import check_data, check_reference, forget_set_record, resolve_source
from unlearnbench.core.runtime import resolve_device
from unlearnbench.core.train import accuracy
from unlearnbench.unlearn import METHODS, UnlearnResult, build_config, check_adv_retain, run
from unlearnbench.unlearn.base import OOD_KEY, declared_reads


@dataclass
class UnlearnOutcome:
    result: UnlearnResult
    meta: dict[str, Any]  # metadata for the unlearned checkpoint
    metrics: dict[str, float]  # rte_seconds; the caller adds what it evaluates (saved in ``meta``)
    splits: Splits | None = None
    data: UnlearnData | None = None
    original: nn.Module | None = None
    history: list[dict] = field(default_factory=list)  # per unlearning epoch (``record_epochs=True``)

    @property
    def model(self) -> nn.Module:
        return self.result.model


@dataclass(frozen=True)
class UnlearnRequest:
    """One unlearning request, checked without reading data (:func:`check_request`). Passed down
    as it is, so its forget spec is parsed and its method config built once."""

    checkpoint: Checkpoint
    method: str
    forget: ForgetSpec
    config: Any  # the method's frozen config
    prune: float | None = None
    adv_retain: str | None = None
    seed: int = 0
    recipe: str = ""  # where the config started: a preset, the regime's recipe, or "defaults"
    recipe_fits: bool = True


def base_config(method: str, ckpt_meta: dict[str, Any]) -> dict[str, Any]:
    """Defaults that come from the checkpoint: ``retrain`` reuses the original's training recipe."""
    if method != "retrain":
        return {}
    recipe = dict(ckpt_meta.get("train_config") or {})
    fields = {f.name for f in dataclasses.fields(METHODS.info(method)["config"])}
    return {k: v for k, v in recipe.items() if k in fields and k != "seed"}


def accuracies(model: nn.Module, data: UnlearnData) -> dict[str, float]:
    """Top-1 accuracy (percent) on every split of ``data`` (class-wise specs add test_retained/forgotten)."""
    out = {
        "forget_acc": accuracy(model, data.forget),
        "retain_acc": accuracy(model, data.retain),
        "test_acc": accuracy(model, data.test),
    }
    if len(data.val):
        out["val_acc"] = accuracy(model, data.val)
    if data.test_retained is not None and len(data.test_retained):
        out["test_retained_acc"] = accuracy(model, data.test_retained)
    if data.test_forgotten is not None and len(data.test_forgotten):
        out["test_forgotten_acc"] = accuracy(model, data.test_forgotten)
    return out


def check_request(
    checkpoint: Checkpoint,
    method: str,
    forget: str | ForgetSpec,
    *,
    config: dict[str, Any] | None = None,
    prune: float | None = None,
    adv_retain: str | None = None,
    seed: int = 0,
    dataset: str | None = None,
    preset: str | None = None,
) -> UnlearnRequest:
    """Check a request against a loaded checkpoint without loading data.

    Raises a one-sentence :class:`UserError` for an unknown method or config key, a bad value, a
    ``dataset`` other than the checkpoint's, a bad ``prune``, ``adv_retain`` for a method that
    does not train on the retain set, or a malformed forget spec (given as text; a
    :class:`ForgetSpec` was checked when it was parsed).
    """
    meta = checkpoint.meta
    where = str(checkpoint.path) if checkpoint.path else "checkpoint"
    if dataset is not None and dataset != meta["dataset"]:
        raise CheckpointError(
            f"Checkpoint {where} was trained on {meta['dataset']!r}, not {dataset!r}; "
            f"use a {dataset} checkpoint (or drop the {dataset!r} preset/option)."
        )
    METHODS.entry(method)  # unknown method: "did you mean" before any work
    spec = forget if isinstance(forget, ForgetSpec) else parse_forget_spec(forget)
    if preset is not None:  # the preset's config is already in ``config``
        recipe, fits, start = preset, True, {}
    else:  # the recipe for the data's regime, known from the checkpoint without reading data
        from unlearnbench.unlearn.recipes import recipe_for

        chosen = recipe_for(method, int(meta["in_channels"]), int(meta["image_size"]), int(meta["num_classes"]),
                            spec.classwise)
        recipe, fits, start = chosen.name, chosen.fits, chosen.config
    cfg = build_config(method, {**start, **base_config(method, meta), **(config or {})}, seed)
    if prune is not None and not 0 <= prune < 1:
        raise ConfigError(f"--prune is the pruned fraction of convolution weights, in [0, 1); got {prune}.")
    if adv_retain is not None:
        check_adv_retain(method, cfg, adv_retain)
    return UnlearnRequest(checkpoint, method, spec, cfg, prune=prune, adv_retain=adv_retain, seed=seed,
                          recipe=recipe, recipe_fits=fits)


def unlearn_checkpoint(
    checkpoint: str | Path | Checkpoint,
    method: str,
    forget: str | ForgetSpec,
    *,
    config: dict[str, Any] | None = None,
    prune: float | None = None,
    adv_retain: str | None = None,
    seed: int = 0,
    device: str = "auto",
    source: DataSource | None = None,
    dataset: str | None = None,
    reference: Checkpoint | None = None,
    allow_data_mismatch: bool = False,
    allow_reference_mismatch: bool = False,
    record_epochs: bool = False,
) -> UnlearnOutcome:
    """Unlearn ``forget`` from ``checkpoint`` with ``method``; nothing is written
    (:func:`check_request` then :func:`run_request`).

    Bad input fails before any training with a one-sentence :class:`UserError`: an unknown method
    or config key, a ``dataset`` other than the checkpoint's, a checkpoint whose class count or
    split does not match its dataset, a forget spec that does not fit the data, data other than the
    checkpoint was trained on, a ``reference`` that is not this run's retrain (``core.protocol``;
    the ``allow_*`` flags let a mismatch through and record it in the metadata).
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    request = check_request(ckpt, method, forget, config=config, prune=prune, adv_retain=adv_retain, seed=seed,
                            dataset=dataset)
    return run_request(request, device=device, source=source, reference=reference,
                       allow_data_mismatch=allow_data_mismatch, allow_reference_mismatch=allow_reference_mismatch,
                       record_epochs=record_epochs)


def run_request(
    request: UnlearnRequest,
    *,
    device: str = "auto",
    source: DataSource | None = None,
    reference: Checkpoint | None = None,
    allow_data_mismatch: bool = False,
    allow_reference_mismatch: bool = False,
    record_epochs: bool = False,
) -> UnlearnOutcome:
    """Run a checked request: its data loaded and split once, checked against the checkpoint (and
    ``reference``), the method run; ``record_epochs`` keeps the loss and forget accuracy per epoch
    in ``UnlearnOutcome.history``. Nothing is written."""
    ckpt, method, spec, cfg = request.checkpoint, request.method, request.forget, request.config
    prune, adv_retain, seed = request.prune, request.adv_retain, request.seed
    meta = ckpt.meta
    dev = resolve_device(device)
    source = resolve_source(source, meta)
    splits, data = prepare(
        meta["dataset"], spec, split_seed=int(meta["split_seed"]), val_fraction=float(meta.get("val_fraction", 0.1)),
        source=source, device=dev,
    )
    check_compatible(ckpt, splits)
    where = str(ckpt.path) if ckpt.path else "(in memory)"
    notes = {"data_mismatch": check_data(meta, splits, where=where, allow=allow_data_mismatch)}
    if reference is not None:
        notes["reference_mismatch"] = check_reference(
            reference.meta, run=meta, splits=splits, data=data, where=str(reference.path or "(in memory)"),
            allow=allow_reference_mismatch)
    original = ckpt.build(dev)
    if "ood" in declared_reads(method, cfg):
        from unlearnbench.unlearn.ood import ood_set

        # Built here, not in run(), so a named OOD dataset is read from the user's --data-root.
        ood = ood_set(cfg.ood, data.info, cfg.ood_size, seed=cfg.seed, data_source=source)
        data = dataclasses.replace(data, extras={**data.extras, OOD_KEY: ood})
    recorder = contextlib.nullcontext([])
    if record_epochs:
        from unlearnbench.unlearn.loops import record_epochs as epoch_recorder

        recorder = epoch_recorder(data.forget)  # the run's own forget set, not a second load of it
    with recorder as history:
        result = run(method, original, data, dataclasses.asdict(cfg), recipe=None, prune=prune,
                     adv_retain=adv_retain, seed=seed, device=str(dev), check_utility=False)
    # ``metrics`` is the same dict as ``meta["metrics"]``: values a caller adds (the CLI: the
    # evaluation's accuracies) are saved with the checkpoint.
    metrics: dict[str, float] = {"rte_seconds": result.seconds}
    out_meta = {
        **{k: v for k, v in meta.items() if k not in ("metrics", "provenance")},
        "kind": "unlearn",
        "method": method,
        "method_config": to_dict(result.config),
        "forget": spec.text,
        "forget_set": forget_set_record(data),
        fingerprint.KEY: splits.fingerprint,
        **{k: v for k, v in notes.items() if v},
        "seed": seed,
        "prune": prune,
        "adv_retain": adv_retain,
        "rte_seconds": result.seconds,
        "unlearn_recipe": request.recipe,
        "metrics": metrics,
        "original": {
            "path": str(ckpt.path) if ckpt.path else None,
            "kind": meta.get("kind"),
            "metrics": meta.get("metrics"),
            "provenance": meta.get("provenance"),
        },
        "unlearn_info": {k: v for k, v in result.info.items() if isinstance(v, (str, int, float, bool, tuple, list))},
        "provenance": provenance.collect(dev, seed),
    }
    return UnlearnOutcome(result, out_meta, metrics, splits, data, original, history)
