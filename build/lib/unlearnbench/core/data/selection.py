"""Loading a registered dataset: the size check before loading, and ``--subset`` / ``--per-class``.

The fast loader keeps every image of a run on the compute device as uint8, so a dataset must fit
there. Loaders register an ``estimate`` (counts and bytes per image, read from file sizes or
headers, without decoding) and :func:`load_dataset` refuses, in one sentence, a dataset larger
than the limit instead of running out of memory half-way. A subset is stratified and seeded and
is cut from the training set *before* the train/val split; its settings travel in
``RawDataset.selection`` into the data fingerprint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from unlearnbench.core.data.types import DATASETS, DataSource, RawDataset
from unlearnbench.core.errors import DataError

log = logging.getLogger(__name__)

LIMIT_ENV = "UNLEARNBENCH_MAX_DATA_BYTES"
# Share of free memory the uint8 images may take: the model, its activations and (on the host)
# the loaders' temporary copies need the rest.
DEVICE_SHARE = 0.5
HOST_SHARE = 0.4


@dataclass(frozen=True)
class SizeEstimate:
    """What a loader can tell before decoding anything."""

    n_train: int
    n_test: int
    bytes_per_image: int
    num_classes: int | None = None


# Dataset name -> fn(source) -> SizeEstimate | None. Kept apart from the registry's info (which
# `unlearnbench ls datasets` shows as columns); loaders without one are checked after loading.
SIZE_ESTIMATES: dict[str, Callable[[DataSource], SizeEstimate | None]] = {}


def size_estimate(*names: str):
    """Decorator: register ``fn(source) -> SizeEstimate | None`` for the named datasets."""

    def deco(fn):
        for name in names:
            SIZE_ESTIMATES[name] = fn
        return fn

    return deco


def subset_positions(y: np.ndarray, *, subset: int | None, per_class: int | None, seed: int) -> np.ndarray:
    """Sorted positions of a seeded, stratified subset of labels ``y``.

    ``per_class=N`` keeps N of every class (all of a smaller class); ``subset=N`` keeps N in
    total, each class in proportion to its size (largest remainders get the leftover places).
    """
    y = np.asarray(y)
    n = len(y)
    classes, counts = np.unique(y, return_counts=True)
    if per_class:
        take = np.minimum(counts, per_class)
        short = classes[counts < per_class]
        if len(short):
            log.warning("--per-class %d: class(es) %s have fewer images; all of them are kept",
                        per_class, ", ".join(map(str, short.tolist()[:5])))
    else:
        if subset > n:
            raise DataError(f"--subset {subset} asks for more than the {n:,} training images of this dataset.")
        exact = counts * (subset / n)
        take = np.floor(exact).astype(int)
        order = np.argsort(-(exact - take), kind="stable")
        take[order[: subset - int(take.sum())]] += 1
    rng = np.random.default_rng([seed, 7])  # its own stream: independent of the split's
    keep = [rng.choice(np.flatnonzero(y == c), k, replace=False) for c, k in zip(classes, take, strict=True) if k]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def selection_of(source: DataSource, n_source: int) -> dict | None:
    if not source.wants_subset:
        return None
    return {"subset": source.subset or None, "per_class": source.per_class or None,
            "subset_seed": source.subset_seed, "n_source": n_source}


def apply_selection(raw: RawDataset, source: DataSource) -> RawDataset:
    """Cut the training set down to the asked-for subset (``idx`` keeps the original indices)."""
    if raw.selection is not None or not source.wants_subset:
        return raw
    keep = subset_positions(raw.train.y.cpu().numpy(), subset=source.subset, per_class=source.per_class,
                            seed=source.subset_seed)
    return replace(raw, train=raw.train.select(torch.as_tensor(keep), "train"),
                   selection=selection_of(source, len(raw.train)))


def data_limit(device: torch.device | str | None = None) -> tuple[int, str]:
    """Bytes the device-resident images may take, and where that number comes from."""
    env = os.environ.get(LIMIT_ENV)
    if env:
        try:
            return int(float(env)), f"{LIMIT_ENV}={env}"
        except ValueError:
            raise DataError(f"{LIMIT_ENV}={env!r} is not a number of bytes.") from None
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(dev)
        return int(DEVICE_SHARE * free), f"{int(DEVICE_SHARE * 100)} % of the free memory of {dev}"
    return int(HOST_SHARE * _host_available()), f"{int(HOST_SHARE * 100)} % of the available host memory"


def _host_available() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def estimated_bytes(name: str, source: DataSource) -> int | None:
    """Bytes of the uint8 images a run would hold (after any subset), or None if unknown."""
    estimate = SIZE_ESTIMATES.get(name)
    if estimate is None:
        return None
    est: SizeEstimate | None = estimate(source)
    if est is None:
        return None
    n_train = est.n_train
    if source.subset:
        n_train = min(n_train, source.subset)
    elif source.per_class and est.num_classes:
        n_train = min(n_train, source.per_class * est.num_classes)
    return (n_train + est.n_test) * est.bytes_per_image


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} kB"


def check_fits(name: str, source: DataSource, device: torch.device | str | None = None) -> None:
    """Refuse, before loading, a dataset whose images exceed the device-resident loader's limit."""
    need = estimated_bytes(name, source)
    if need is None:
        return
    limit, why = data_limit(device)
    if need > limit:
        raise DataError(
            f"Dataset {name!r} needs about {_mb(need)} of uint8 images, more than the {_mb(limit)} limit of the "
            f"device-resident loader ({why}); pass --subset N or --per-class N to use part of the training set, "
            f"or raise {LIMIT_ENV}."
        )


def load_dataset(name: str, source: DataSource | None = None, device: torch.device | str | None = None) -> RawDataset:
    """Load a registered dataset (CPU tensors), checked against the memory limit of ``device``
    (the host when None), with ``source``'s subset applied to the training set."""
    loader = DATASETS.get(name)
    source = source or DataSource.from_env()
    check_fits(name, source, device)
    return apply_selection(loader(source), source)
