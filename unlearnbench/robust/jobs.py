"""Attacking a saved checkpoint end to end (the library side of ``unlearnbench attack``).

:func:`check_attack_request` checks everything a user can get wrong without reading data or
weights (attack name and config keys, split, ``n``, batch size, threat model); it is the one set
of checks the CLI and ``unlearnbench.api`` share. :func:`attack_checkpoint` then builds the
model (its weights checked before any data is read), rebuilds the split the checkpoint was
trained on, checks the data against the checkpoint and measures clean and robust accuracy.
Nothing is printed or logged to MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnbench.core.checkpoint import Checkpoint, load_checkpoint
from unlearnbench.core.data import DataSource, parse_forget_spec, prepare
from unlearnbench.core.errors import ConfigError, DataError
from unlearnbench.core.jobs import check_compatible
from unlearnbench.core.protocol import check_data, resolve_source
from unlearnbench.core.runtime import resolve_device
from unlearnbench.robust.threat import ThreatModel

SPLITS = ("test", "forget", "retain", "val")


@dataclass(frozen=True)
class AttackRequest:
    """One checked attack request (:func:`check_attack_request`)."""

    attack: str
    config: Any  # the attack's frozen config
    threat: ThreatModel
    split: str = "test"
    n: int | None = 1000  # None: every point
    seed: int = 0
    batch_size: int = 250


@dataclass
class AttackOutcome:
    result: Any  # robust.evaluate.RobustResult
    meta: dict[str, Any]  # the checkpoint's metadata
    forget: str  # the forget spec the forget/retain split came from ("" for test/val)
    data_mismatch: str | None = None  # the note of an allowed data mismatch
    tset: Any = None  # the split attacked (its first n points): the run's dataset input


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r}; choose one of: {', '.join(SPLITS)}.")
    return split


def check_counts(n: int | None, batch_size: int) -> None:
    """``n`` (points to attack; 0 or None = all) and the batch size, as the CLI and the API take them."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ConfigError(f"n must be 0 (all points) or a positive whole number; got {n!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number of at least 1; got {batch_size!r}.")


def check_attack_request(
    attack: str,
    *,
    config: dict[str, Any] | None = None,
    norm: str = "Linf",
    eps: str | float | None = None,
    split: str = "test",
    n: int | None = 1000,
    seed: int = 0,
    batch_size: int = 250,
) -> AttackRequest:
    """Every check that needs no data: unknown attack names, bad config keys, a bad split, ``n``,
    batch size, norm or eps fail here in one sentence (a ``UserError``)."""
    from unlearnbench.robust.attacks import ATTACKS, build_config

    ATTACKS.entry(attack)  # unknown attack names: "did you mean" before any work
    check_split(split)
    check_counts(n, batch_size)
    threat = ThreatModel.parse(norm, eps)
    cfg = build_config(attack, dict(config or {}), seed=seed)
    return AttackRequest(attack, cfg, threat, split=split, n=n or None, seed=seed, batch_size=batch_size)


@dataclass
class AttackTarget:
    """A checkpoint ready to attack (:func:`load_target`): its weights built and checked, the forget
    spec of a forget/retain split resolved, before any data is read."""

    checkpoint: Checkpoint
    model: Any
    forget: str  # the spec text ("" when there is none)
    device: Any


def load_target(checkpoint: str | Path | Checkpoint, request: AttackRequest, *, forget: str | None = None,
                device: str = "auto") -> AttackTarget:
    """The checkpoint's model (weights checked before any data is read) and the forget spec a
    forget/retain split needs (``forget`` or the checkpoint's ``--exclude``)."""
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    ckpt.require_task("classification", "attack")
    text = forget or ckpt.meta.get("exclude")
    if request.split in ("forget", "retain") and not text:
        raise ConfigError(f"--split {request.split} needs --forget SPEC (e.g. --forget class:3) naming the forgotten data.")
    dev = resolve_device(device)
    return AttackTarget(ckpt, ckpt.build(dev), text or "", dev)


def attack_checkpoint(
    target: AttackTarget | str | Path | Checkpoint,
    request: AttackRequest,
    *,
    forget: str | None = None,
    device: str = "auto",
    source: DataSource | None = None,
    allow_data_mismatch: bool = False,
    return_adv: bool = False,
) -> AttackOutcome:
    """Clean and robust accuracy of a checkpoint (or a loaded :class:`AttackTarget`) on
    ``request.split`` of the data it was trained on."""
    from unlearnbench.robust.evaluate import robust_accuracy

    if not isinstance(target, AttackTarget):
        target = load_target(target, request, forget=forget, device=device)
    ckpt, meta, split = target.checkpoint, target.checkpoint.meta, request.split
    spec = parse_forget_spec(target.forget) if split in ("forget", "retain") else None
    splits, data = prepare(meta["dataset"], spec, split_seed=int(meta["split_seed"]),
                           val_fraction=float(meta.get("val_fraction", 0.1)), device=target.device,
                           source=resolve_source(source, meta))
    check_compatible(ckpt, splits)
    where = str(ckpt.path) if ckpt.path else "(in memory)"
    mismatch = check_data(meta, splits, where=where, allow=allow_data_mismatch)
    tset = {"test": splits.test, "val": splits.val}.get(split) if data is None else getattr(data, split)
    if tset is None or len(tset) == 0:
        raise DataError(f"The {split} split of {meta['dataset']!r} is empty; choose another split.")
    result = robust_accuracy(target.model, tset, request.attack, request.threat, n=request.n, seed=request.seed,
                             batch_size=request.batch_size, config=request.config, return_adv=return_adv)
    return AttackOutcome(result, meta, target.forget, mismatch, tset)
