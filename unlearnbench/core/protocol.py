"""Protocol checks between a run's inputs: the data against the checkpoint, the reference against the run.

- :func:`check_data`: the data a command loaded must be what the checkpoint was trained on (its
  data fingerprint). Checkpoints written before fingerprints existed get a warning, not a refusal.
- :func:`check_reference`: the retrained reference must be a retrain (checkpoint ``kind``) that
  excluded exactly the forget set being evaluated, on the same data, split seed and architecture.

Both raise one sentence (a :class:`UserError`, exit 2 from the CLI) unless the user allowed the
mismatch (``--allow-data-mismatch`` / ``--allow-reference-mismatch``); then they log a warning
and return a note for the caller to record with the run. Both run before any unlearning or
evaluation work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from unlearnbench.core.data import DataSource, Splits, UnlearnData, fingerprint, forget_mask, parse_forget_spec
from unlearnbench.core.errors import CheckpointError, DataError, UserError

log = logging.getLogger(__name__)

RETRAIN_KINDS = ("retrain",)


class DataMismatchError(DataError):
    """The data differs from what a checkpoint was trained on."""


class ReferenceMismatchError(CheckpointError):
    """The reference is not the retrained model this run must be compared with."""


def resolve_source(source: DataSource | None, meta: Mapping[str, Any]) -> DataSource:
    """The data a checkpoint's run reads: the user's root, and the checkpoint's own subset and image
    size unless the user said otherwise (a different one is then refused by :func:`check_data`)."""
    source = source or DataSource.from_env()
    fp = meta.get(fingerprint.KEY) or {}
    changes: dict[str, Any] = {}
    if not source.selection_said and (fp.get("subset") or fp.get("per_class")):
        changes.update(subset=fp.get("subset"), per_class=fp.get("per_class"), subset_seed=int(fp.get("subset_seed") or 0))
    if source.image_size is None and meta.get("dataset") == "imagefolder" and meta.get("image_size"):
        changes["image_size"] = int(meta["image_size"])
    return replace(source, **changes) if changes else source


def check_data(meta: Mapping[str, Any], splits: Splits, *, where: str, allow: bool = False) -> str | None:
    """Refuse data whose fingerprint differs from the one recorded in checkpoint ``meta``.

    Returns None when they agree (or cannot be compared), else the mismatch note when ``allow``.
    """
    recorded, current = meta.get(fingerprint.KEY), splits.fingerprint
    if current is None:
        return None
    if not recorded:
        log.warning("Checkpoint %s records no data fingerprint (written before unlearnbench recorded one); "
                    "its training data cannot be checked against this data root.", where)
        return None
    diff = fingerprint.difference(recorded, current)
    if diff is None:
        return None
    if allow:
        log.warning("Checkpoint %s was trained on %s; going on as --allow-data-mismatch asks.", where, diff)
        return f"checkpoint {where} was trained on {diff}"
    raise DataMismatchError(
        f"Checkpoint {where} was trained on {diff}; point --data-root (and --subset/--per-class) at the data it "
        "was trained on, or pass --allow-data-mismatch."
    )


def is_retrain(meta: Mapping[str, Any]) -> bool:
    return meta.get("kind") in RETRAIN_KINDS or (meta.get("kind") == "unlearn" and meta.get("method") == "retrain")


def excluded_spec(meta: Mapping[str, Any]) -> str | None:
    """The forget spec a reference was retrained without (``train --exclude`` or ``unlearn retrain``)."""
    spec = meta.get("exclude") or meta.get("forget")
    return str(spec) if spec else None


def forget_set_record(data: UnlearnData) -> dict[str, Any]:
    """What checkpoints record about the samples they left out (compared by :func:`check_reference`)."""
    return {"spec": str(data.spec), "n": len(data.forget), "sha256": fingerprint.digest_indices(data.forget.idx)}


def _reference_problem(ref: Mapping[str, Any], run: Mapping[str, Any], splits: Splits, data: UnlearnData,
                       where: str) -> str | None:
    spec = str(data.spec)
    train_hint = f"`unlearnbench train --exclude {spec} --split-seed {splits.split_seed}`"
    if not is_retrain(ref):
        kind = ref.get("kind")
        what = "the original model" if kind == "original" else (f"a model of kind {kind!r}" if kind else
                                                                 "a model that records no kind")
        if ref.get("kind") == "unlearn":
            what = f"an unlearned model ({ref.get('method')})"
        return f"The reference {where} is {what}, not a model retrained without the forget set; retrain one with {train_hint}"
    if ref.get("split_seed") is not None and int(ref["split_seed"]) != splits.split_seed:
        return (f"The reference {where} used split seed {ref['split_seed']}, but this run uses {splits.split_seed}, "
                f"so their train/val and forget splits differ; retrain one with {train_hint}")
    recorded = ref.get(fingerprint.KEY)
    if recorded and splits.fingerprint is not None:
        diff = fingerprint.difference(recorded, splits.fingerprint)
        if diff:
            return f"The reference {where} was trained on {diff}; retrain it on this run's data"
    if ref.get("model") and run.get("model") and ref["model"] != run["model"]:
        return (f"The reference {where} is a {ref['model']}, but the evaluated model is a {run['model']}; "
                f"retrain the reference with --model {run['model']}")
    own = fingerprint.digest_indices(data.forget.idx)
    record = ref.get("forget_set")
    ref_spec = excluded_spec(ref)
    if record and record.get("sha256"):
        theirs, n_theirs = record["sha256"], int(record.get("n", 0))
    elif ref_spec:
        try:
            mask = forget_mask(splits, parse_forget_spec(ref_spec))
        except UserError as exc:
            return f"The reference {where} was retrained without {ref_spec!r}, which does not apply to this data ({exc})"
        theirs, n_theirs = fingerprint.digest_indices(splits.train.idx.cpu().numpy()[mask]), int(mask.sum())
    else:
        return f"The reference {where} records no forget set it was retrained without; retrain one with {train_hint}"
    if theirs != own:
        return (f"The reference {where} was retrained without {ref_spec or 'another forget set'} ({n_theirs:,} images), "
                f"but this run forgets {spec} ({len(data.forget):,} images); retrain one with {train_hint}")
    return None


def check_reference(ref: Mapping[str, Any], *, run: Mapping[str, Any], splits: Splits, data: UnlearnData,
                    where: str, allow: bool = False) -> str | None:
    """Refuse a reference that is not this run's retrain; returns the mismatch note when ``allow``.

    ``ref`` and ``run`` are checkpoint metadata (or a report's meta: kind, forget, model). The
    dataset and class count must match in any case: a reference for other classes cannot be compared.
    """
    if ref.get("dataset") and ref["dataset"] != splits.info.name:
        raise CheckpointError(f"The reference {where} is for dataset {ref['dataset']!r}, not {splits.info.name!r}.")
    if ref.get("num_classes") is not None and int(ref["num_classes"]) != splits.info.num_classes:
        raise CheckpointError(f"The reference {where} has {ref['num_classes']} classes, but {splits.info.name!r} "
                              f"has {splits.info.num_classes}.")
    problem = _reference_problem(ref, run, splits, data, where)
    if problem is None:
        return None
    if allow:
        log.warning("%s; going on as --allow-reference-mismatch asks.", problem)
        return problem
    raise ReferenceMismatchError(f"{problem}, or pass --allow-reference-mismatch.")
