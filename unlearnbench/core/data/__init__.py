"""Datasets, train/val splits, forget specs and the device-resident fast loader.

A package by concern, bottom up (no sub-module imports one above it; import-linter checks it):
``types`` (the shared data types and the dataset registry); ``selection`` (the size check before
loading, ``--subset``/``--per-class``); ``datasets`` (the built-in loaders, registered on import;
``imagefolder`` with its decode cache); ``loader`` (uint8 sets to float batches, augmented on the
device); ``fingerprint`` (what a run's training set was, recorded in checkpoints); ``splits`` (the
one train/val split, forget specs, ``UnlearnData``); ``user`` (a user's own data as an
``UnlearnData``, checked; it attaches ``UnlearnData.from_*``). Import from
``unlearnbench.core.data``; the sub-modules are an implementation detail.
"""

from unlearnbench.core.data import datasets as _datasets  # noqa: F401  (registers the built-in datasets)
from unlearnbench.core.data import fingerprint
from unlearnbench.core.data import imagefolder as _imagefolder  # noqa: F401  (registers imagefolder)
from unlearnbench.core.data import user as _user  # noqa: F401  (attaches UnlearnData.from_tensors & co.)
from unlearnbench.core.data.datasets import (
    CIFAR10_STATS,
    CIFAR100_STATS,
    FASHION_CLASSES,
    FASHION_MNIST_SYSTEM_DIR,
    make_synthetic,
)
from unlearnbench.core.data.imagefolder import IMAGE_EXTS
from unlearnbench.core.data.loader import Loader, augment_batch
from unlearnbench.core.data.selection import SizeEstimate, data_limit, load_dataset, subset_positions
from unlearnbench.core.data.splits import (
    FORGET_KINDS,
    ForgetSpec,
    Splits,
    UnlearnData,
    forget_mask,
    make_unlearn_data,
    parse_forget_spec,
    prepare,
    split_train_val,
)
from unlearnbench.core.data.types import (
    DATASETS,
    DatasetInfo,
    DatasetLoader,
    DataSource,
    RawDataset,
    TensorSet,
)

__all__ = [
    "CIFAR10_STATS",
    "CIFAR100_STATS",
    "DATASETS",
    "FASHION_CLASSES",
    "FASHION_MNIST_SYSTEM_DIR",
    "FORGET_KINDS",
    "IMAGE_EXTS",
    "DatasetInfo",
    "DatasetLoader",
    "DataSource",
    "ForgetSpec",
    "Loader",
    "RawDataset",
    "SizeEstimate",
    "Splits",
    "TensorSet",
    "UnlearnData",
    "augment_batch",
    "data_limit",
    "fingerprint",
    "forget_mask",
    "load_dataset",
    "make_synthetic",
    "make_unlearn_data",
    "parse_forget_spec",
    "prepare",
    "split_train_val",
    "subset_positions",
]
