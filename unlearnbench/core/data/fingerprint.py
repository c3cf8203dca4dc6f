"""Data fingerprints: what a model was trained on, recorded in its checkpoint and checked later.

A fingerprint names the dataset, the digest of the training set a run splits (labels, pixels
and original indices, after any ``--subset`` / ``--per-class``), the subset settings, and the
split (``split_seed``, ``val_fraction``). Two runs with equal fingerprints train, forget and
evaluate on the same images; a model trained on a 1,000-per-class subset is refused against
the full data root, whose "forget set" it never saw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from unlearnbench.core.data.types import RawDataset

VERSION = 1
KEY = "data_fingerprint"  # the checkpoint metadata key


def digest_set(x, y, idx) -> str:
    """sha256 of a labelled image set (CPU copies of device tensors are hashed, not the device)."""
    h = hashlib.sha256()
    for t in (x, y, idx):
        a = np.ascontiguousarray(t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def digest_indices(idx) -> str:
    """sha256 of a set of training-set indices (order does not matter)."""
    a = np.sort(np.asarray(idx.cpu().numpy() if hasattr(idx, "cpu") else idx, dtype=np.int64))
    return hashlib.sha256(a.tobytes()).hexdigest()


def compute(raw: RawDataset, split_seed: int, val_fraction: float, n_val: int) -> dict[str, Any]:
    """The fingerprint of ``raw`` (its training set as split) under ``split_seed``."""
    sel = raw.selection or {}
    return {
        "version": VERSION,
        "dataset": raw.info.name,
        "n_train": len(raw.train),
        "n_source": int(sel.get("n_source", len(raw.train))),
        "subset": sel.get("subset"),
        "per_class": sel.get("per_class"),
        "subset_seed": sel.get("subset_seed"),
        "image_size": raw.info.image_size,
        "train_sha256": digest_set(raw.train.x, raw.train.y, raw.train.idx),
        "split_seed": int(split_seed),
        "val_fraction": float(val_fraction),
        "n_val": int(n_val),
        "n_test": len(raw.test),
    }


def describe(fp: Mapping[str, Any]) -> str:
    """``a 50-per-class subset (500 of 1,347 images) of digits`` / ``the full digits (1,347 images)``."""
    n, src = int(fp.get("n_train", 0)), int(fp.get("n_source", fp.get("n_train", 0)))
    if fp.get("per_class"):
        return f"a {fp['per_class']}-per-class subset ({n:,} of {src:,} images) of {fp.get('dataset')}"
    if fp.get("subset"):
        return f"a {fp['subset']:,}-image subset (of {src:,}) of {fp.get('dataset')}"
    return f"the full {fp.get('dataset')} training set ({n:,} images)"


def difference(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """What differs between a recorded and the current fingerprint, as a clause; None if nothing."""
    if recorded.get("dataset") != current.get("dataset"):
        return f"dataset {recorded.get('dataset')!r}, not {current.get('dataset')!r}"
    if int(recorded.get("split_seed", -1)) != int(current.get("split_seed", -1)):
        return f"split seed {recorded.get('split_seed')}, not {current.get('split_seed')}"
    if abs(float(recorded.get("val_fraction", 0)) - float(current.get("val_fraction", 0))) > 1e-12:
        return f"val_fraction {recorded.get('val_fraction')}, not {current.get('val_fraction')}"
    if recorded.get("train_sha256") != current.get("train_sha256"):
        before, now = describe(recorded), describe(current)
        subset = lambda fp: fp.get("subset") or fp.get("per_class")  # noqa: E731
        if not subset(recorded) and not subset(current) and recorded.get("n_train") != current.get("n_train"):
            return (f"{int(recorded.get('n_train', 0)):,} {recorded.get('dataset')} training images, but this data "
                    f"root holds {int(current.get('n_train', 0)):,}")
        if before != now:
            return f"{before}, but this run has {now}"
        return (f"other training images or labels ({recorded.get('train_sha256', '')[:12]} vs "
                f"{current.get('train_sha256', '')[:12]}, same count)")
    return None
