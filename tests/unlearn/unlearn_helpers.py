"""Helpers for the unlearning tests: fast configs and data sets that raise or record reads."""

from __future__ import annotations

import dataclasses

from unlearnbench.core.data import TensorSet, UnlearnData

# Small per-method configs for the contract suites: invariants (copy, determinism, reads, masks)
# do not need converged runs. Every registered method must appear here (checked by a test).
FAST: dict[str, dict] = {
    "bad_teacher": {"epochs": 1},
    "boundary_shrink": {"epochs": 1},
    "finetune": {"epochs": 1},
    "grad_ascent": {"epochs": 1, "stop_forget_acc": None},
    "influence": {"hessian_samples": 40},
    "l1_sparse": {"epochs": 2},
    "prune": {"epochs": 1, "sparsity": 0.5},
    "random_label": {"epochs": 1},
    "retrain": {"epochs": 2},
    "salun": {"epochs": 1},
    "scar": {"epochs": 1, "steps_per_forget_batch": 2, "ood_size": 256, "min_epochs": 0},
    "scar_self": {"epochs": 1, "ood_size": 256},
    "scrub": {"epochs": 2, "msteps": 1},
    "ssd": {},
}


class RaisingSet(TensorSet):
    """A TensorSet whose images, labels and indices raise once constructed: "never touch me"."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_armed", True)

    def __getattribute__(self, name: str):
        if name in ("x", "y", "idx", "sub") and object.__getattribute__(self, "__dict__").get("_armed"):
            raise AssertionError(f"the {object.__getattribute__(self, 'name')} set was read")
        return object.__getattribute__(self, name)


class RecordingSet(TensorSet):
    """A TensorSet that notes in ``log`` when its data is read (moving it to a device is not a read)."""

    def __getattribute__(self, name: str):
        if name in ("x", "y", "idx", "sub"):
            d = object.__getattribute__(self, "__dict__")
            if "log" in d:
                d["log"].add(d["role"])
        return object.__getattribute__(self, name)

    def to(self, device):
        return self  # CPU tests only; keeps the wrapper without counting a read


def wrap(tset: TensorSet, cls, **attrs) -> TensorSet:
    out = cls(tset.x, tset.y, tset.idx, tset.sub, tset.name)
    for k, v in attrs.items():
        object.__setattr__(out, k, v)
    return out


def with_raising_retain(data: UnlearnData) -> UnlearnData:
    return dataclasses.replace(data, retain=wrap(data.retain, RaisingSet))


def recording(data: UnlearnData, ood: TensorSet, log: set) -> UnlearnData:
    """``data`` whose forget/retain/val and OOD sets record reads into ``log``."""
    rec = {role: wrap(getattr(data, role), RecordingSet, log=log, role=role) for role in ("forget", "retain", "val")}
    return dataclasses.replace(
        data, **rec, extras={**data.extras, "ood": wrap(ood, RecordingSet, log=log, role="ood")},
    )
