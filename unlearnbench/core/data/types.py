"""The data types every layer shares: dataset info, uint8 image sets, sources and the dataset registry.

Images are kept as uint8 tensors ``(N, C, H, W)`` (on the compute device for small datasets) and
turned into floats in [0, 1] one batch at a time; normalisation is the model's first layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unlearnbench.core.errors import DataError
from unlearnbench.core.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """What models and loaders need to know about a dataset."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0  # random-crop padding for training augmentation (0 = no crop)
    hflip: bool = False  # horizontal flips make sense for natural images, not for digits
    class_names: tuple[str, ...] = ()
    subclass_names: tuple[str, ...] = ()  # names of ``TensorSet.sub`` labels, if any
    # The (mean, std) a user's model expects its [0, 1] input normalised with, given with the data
    # (UnlearnData.from_tensors(..., mean=, std=)): the API then puts it in front of the model.
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None


@dataclass(frozen=True)
class TensorSet:
    """A labelled image set: uint8 images, int64 labels, and each image's index in its source split.

    ``sub`` optionally holds finer labels (CIFAR-100 fine classes inside CIFAR-20 superclasses).
    """

    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    sub: torch.Tensor | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError("TensorSet.x must be a uint8 tensor of shape (N, C, H, W)")
        if not (len(self.x) == len(self.y) == len(self.idx)):
            raise ValueError("TensorSet tensors must have the same length")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.x.device

    def select(self, keep: torch.Tensor | np.ndarray, name: str | None = None) -> TensorSet:
        """Subset by boolean mask or integer positions (positions in this set, not ``idx``)."""
        keep_t = torch.as_tensor(np.asarray(keep) if isinstance(keep, np.ndarray) else keep)
        keep_t = keep_t.to(self.y.device)
        return TensorSet(
            self.x[keep_t],
            self.y[keep_t],
            self.idx[keep_t],
            None if self.sub is None else self.sub[keep_t],
            self.name if name is None else name,
        )

    def to(self, device: torch.device | str) -> TensorSet:
        dev = torch.device(device)
        if self.x.device == dev:
            return self
        sub = None if self.sub is None else self.sub.to(dev)
        return TensorSet(self.x.to(dev), self.y.to(dev), self.idx.to(dev), sub, self.name)

    def floats(self) -> torch.Tensor:
        """All images as floats in [0, 1] (for small sets and tests)."""
        return self.x.float().div_(255)


@dataclass(frozen=True)
class RawDataset:
    train: TensorSet
    test: TensorSet
    info: DatasetInfo
    # How ``train`` was cut from the dataset's training set (``subset``, ``per_class``, ``subset_seed``,
    # ``n_source``); None when it is the whole set. Part of the data fingerprint.
    selection: dict | None = None


@dataclass(frozen=True)
class DataSource:
    """Where to read a dataset from, and which part of its training set a run uses.

    ``subset`` keeps N training images, ``per_class`` N per class (seeded by ``subset_seed``,
    stratified, before the train/val split); 0 means the whole set, None "not said" (commands
    that read a checkpoint then use the checkpoint's own choice). ``image_size`` resizes
    ``imagefolder`` images (default 32). Downloads happen only when asked for.
    """

    root: Path | None = None
    download: bool = False
    subset: int | None = None
    per_class: int | None = None
    subset_seed: int = 0
    image_size: int | None = None

    def __post_init__(self) -> None:
        for flag, value in (("--subset", self.subset), ("--per-class", self.per_class)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise DataError(f"{flag} takes a number of training images (0 = all), got {value!r}.")
        if self.subset and self.per_class:
            raise DataError("Give --subset or --per-class, not both.")
        if self.image_size is not None and (not isinstance(self.image_size, int) or not 4 <= self.image_size <= 1024):
            raise DataError(f"--image-size must be a whole number of pixels between 4 and 1024, got {self.image_size!r}.")

    @classmethod
    def from_env(cls, root: str | Path | None = None, download: bool = False, **selection) -> DataSource:
        root = root or os.environ.get("UNLEARNBENCH_DATA")
        return cls(Path(root).expanduser() if root else None, download, **selection)

    @property
    def wants_subset(self) -> bool:
        """True when a strict subset of the training set is asked for (not 0, not None)."""
        return bool(self.subset or self.per_class)

    @property
    def selection_said(self) -> bool:
        """True when the user chose a selection (including 0 = the whole set)."""
        return self.subset is not None or self.per_class is not None


DatasetLoader = Callable[[DataSource], RawDataset]
DATASETS: Registry[DatasetLoader] = Registry("datasets")


def _make_set(x: np.ndarray | torch.Tensor, y, name: str, sub=None) -> TensorSet:
    x_t = torch.as_tensor(np.array(x, copy=True, order="C") if isinstance(x, np.ndarray) else x)
    y_t = torch.as_tensor(np.array(y, dtype=np.int64))
    sub_t = None if sub is None else torch.as_tensor(np.asarray(sub), dtype=torch.int64)
    return TensorSet(x_t, y_t, torch.arange(len(y_t)), sub_t, name)


def channel_histogram(x: torch.Tensor) -> np.ndarray:
    """(C, 256) counts of each uint8 level per channel (bincount on uint8: no wider copy)."""
    return np.stack([torch.bincount(x[:, c].reshape(-1).cpu(), minlength=256).numpy() for c in range(x.shape[1])])


def _channel_stats(x: torch.Tensor, hist: np.ndarray | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (unbiased) std of uint8 images in [0, 1], from 256-bin histograms
    (``hist``, or counted here): exact, and without a float copy of the images."""
    hist = channel_histogram(x) if hist is None else hist
    levels = np.arange(256, dtype=np.float64) / 255
    means, stds = [], []
    for counts in hist.astype(np.float64):
        n = counts.sum()
        mean = float((counts * levels).sum() / n)
        var = float((counts * (levels - mean) ** 2).sum() / max(n - 1, 1))
        means.append(round(mean, 4))
        stds.append(round(max(var**0.5, 1e-3), 4))
    return tuple(means), tuple(stds)
