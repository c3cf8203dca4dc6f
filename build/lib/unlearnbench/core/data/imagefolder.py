"""``imagefolder``: a user's class-per-folder image tree, decoded once into one uint8 array and cached.

``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``. Every image is decoded straight into its
row of one preallocated ``(N, C, S, S)`` uint8 array (never a list of open PIL images: a 60k
tree of 32x32 PNGs held that way peaked at 3.8 GB for 184 MB of pixels). The decoded split is
cached under ``UNLEARNBENCH_CACHE`` (default ``~/.cache/unlearnbench``), keyed by the image
size and every decoded file's path, size and modification time, and written atomically; a
changed, added or removed file gives a new key. A ``--subset`` / ``--per-class`` is chosen from
the file list, so only the chosen images are decoded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from unlearnbench.core.data.selection import SizeEstimate, selection_of, size_estimate, subset_positions
from unlearnbench.core.data.types import (
    DATASETS,
    DatasetInfo,
    DataSource,
    RawDataset,
    _channel_stats,
    _make_set,
    channel_histogram,
)
from unlearnbench.core.errors import DataError, OutputError
from unlearnbench.core.io import atomic_write

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}
_EXTS = tuple(IMAGE_EXTS)  # str.endswith on the lower-cased name: 60k names in a few ms
DEFAULT_SIZE = 32
CACHE_ENV = "UNLEARNBENCH_CACHE"
CACHE_VERSION = 2


def cache_dir() -> Path:
    """``UNLEARNBENCH_CACHE``, else ``$XDG_CACHE_HOME/unlearnbench``, else ``~/.cache/unlearnbench``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unlearnbench"


def _classes(root: Path) -> list[str]:
    train = root / "train"
    classes = sorted(d.name for d in os.scandir(train) if d.is_dir()) if train.is_dir() else []
    if len(classes) < 2:
        raise DataError(f"Dataset 'imagefolder' needs at least two class folders in {train}.")
    return classes


def _listing(folder: Path, classes: list[str]) -> tuple[list[tuple[str, int, int]], np.ndarray]:
    """(relative path, size, mtime_ns) of every image, sorted by class then name, and the labels."""
    files, labels = [], []
    for c, cname in enumerate(classes):
        d = folder / cname
        if not d.is_dir():
            continue
        entries = sorted((e for e in os.scandir(d) if e.name.lower().endswith(_EXTS) and e.is_file()),
                         key=lambda e: e.name)
        for e in entries:
            st = e.stat()
            files.append((f"{cname}/{e.name}", st.st_size, st.st_mtime_ns))
            labels.append(c)
    if not files:
        raise DataError(f"No images found under {folder}.")
    return files, np.asarray(labels, dtype=np.int64)


def _key(folder: Path, files: list[tuple[str, int, int]], size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{folder.resolve()}|{size}".encode())
    for rel, nbytes, mtime in files:
        h.update(f"\n{rel}|{nbytes}|{mtime}".encode())
    return h.hexdigest()[:32]


def _decode_into(out: np.ndarray, i: int, path: Path, size: int) -> bool:
    """Decode one image into ``out[i]`` (C=3, RGB); True when the image was grey."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.mode in ("L", "1", "I;16", "I", "LA")
            rgb = img.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(rgb).transpose(2, 0, 1)
    except (OSError, UnidentifiedImageError, ValueError):
        raise DataError(f"Image {path} cannot be read; remove or replace it.") from None
    return grey


def _decode(folder: Path, files: list[tuple[str, int, int]], size: int) -> np.ndarray:
    """All images as one (N, C, S, S) uint8 array: C = 1 when every image is grey, else 3 (RGB)."""
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)
    workers = max(1, min(8, os.cpu_count() or 1))

    def chunk(lo_hi: tuple[int, int]) -> bool:
        return all([_decode_into(out, i, folder / files[i][0], size) for i in range(*lo_hi)])

    step = 512
    spans = [(lo, min(lo + step, len(files))) for lo in range(0, len(files), step)]
    # PIL releases the GIL while decoding: threads share the one output array.
    with ThreadPoolExecutor(workers) as pool:
        grey = all(list(pool.map(chunk, spans)))
    return np.ascontiguousarray(out[:, :1]) if grey else out


def _read_split(folder: Path, files: list[tuple[str, int, int]], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decoded images of ``files`` and their per-channel level histogram (for the normalisation
    statistics), from the cache (plain .npy files: read at disk speed), or decoded now and cached."""
    path = cache_dir() / "imagefolder" / f"{_key(folder, files, size)}.npy"
    hist_path = path.with_suffix(".hist.npy")
    if path.is_file() and hist_path.is_file():
        try:
            x, hist = np.load(path, allow_pickle=False), np.load(hist_path, allow_pickle=False)
            if x.dtype == np.uint8 and x.ndim == 4 and x.shape[0] == len(files) and x.shape[1] in (1, 3) \
                    and x.shape[2:] == (size, size) and hist.shape == (x.shape[1], 256):
                return x, hist
            log.warning("imagefolder cache %s does not fit the folder; decoding again", path)
        except (OSError, ValueError, EOFError) as exc:  # a damaged entry is rebuilt
            log.warning("imagefolder cache %s is unreadable (%s); decoding again", path, exc)
    x = _decode(folder, files, size)
    hist = channel_histogram(torch.from_numpy(x))
    try:
        # The histogram first: the images file is what marks the entry complete.
        for target, value in ((hist_path, hist), (path, x)):
            with atomic_write(target) as fh:
                np.save(fh, value, allow_pickle=False)
    except (OSError, OutputError) as exc:  # a read-only or full cache costs speed, never the run
        log.warning("cannot write the imagefolder cache %s (%s); the next load decodes again", path, exc)
    return x, hist


@size_estimate("imagefolder")
def _imagefolder_size(source: DataSource) -> SizeEstimate | None:
    if source.root is None or not (source.root / "train").is_dir():
        return None
    size = source.image_size or DEFAULT_SIZE
    classes = _classes(source.root)
    count = lambda split: sum(  # noqa: E731
        1 for c in classes if (source.root / split / c).is_dir()
        for e in os.scandir(source.root / split / c) if e.name.lower().endswith(_EXTS))
    return SizeEstimate(count("train"), count("test"), 3 * size * size, len(classes))


@DATASETS.register("imagefolder", summary="a class-per-folder image tree: ROOT/train/<class>/*.png and ROOT/test/<class>/*")
def _imagefolder(source: DataSource) -> RawDataset:
    if source.root is None:
        raise DataError("Dataset 'imagefolder' needs --data-root pointing at a folder with train/ and test/ sub-folders.")
    splits = {s: source.root / s for s in ("train", "test")}
    missing = [str(p) for p in splits.values() if not p.is_dir()]
    if missing:
        raise DataError(f"Dataset 'imagefolder' expects class folders under {' and '.join(missing)}; create them.")
    size = source.image_size or DEFAULT_SIZE
    classes = _classes(source.root)
    train_files, ytr = _listing(splits["train"], classes)
    test_files, yte = _listing(splits["test"], classes)
    selection = None
    idx = np.arange(len(ytr))
    if source.wants_subset:  # choose from the file list: only the chosen images are decoded
        idx = subset_positions(ytr, subset=source.subset, per_class=source.per_class, seed=source.subset_seed)
        selection = selection_of(source, len(ytr))
        train_files, ytr = [train_files[i] for i in idx], ytr[idx]
    xtr, hist = _read_split(splits["train"], train_files, size)
    xte, _ = _read_split(splits["test"], test_files, size)
    # The test set follows the training set's channels (grey training images: one channel).
    if xte.shape[1] != xtr.shape[1]:
        xte = _grey(xte) if xtr.shape[1] == 1 else np.repeat(xte, 3, axis=1)
    # torch.from_numpy: the decoded arrays are ours, no copy of the pixels
    train = _make_set(torch.from_numpy(np.ascontiguousarray(xtr)), ytr, "train")
    train = replace(train, idx=torch.as_tensor(idx, dtype=torch.int64))  # original indices, subset or not
    mean, std = _channel_stats(train.x, hist)
    info = DatasetInfo(
        "imagefolder", len(classes), train.x.shape[1], size, mean, std,
        crop_padding=size // 8, hflip=True, class_names=tuple(classes),
    )
    return RawDataset(train, _make_set(torch.from_numpy(np.ascontiguousarray(xte)), yte, "test"), info, selection)


def _grey(x: np.ndarray) -> np.ndarray:
    """RGB to one channel with PIL's ITU-R 601-2 luma weights (as ``convert('L')``)."""
    w = np.array([299, 587, 114], dtype=np.uint32)[None, :, None, None]
    return ((x.astype(np.uint32) * w).sum(1, keepdims=True) // 1000).astype(np.uint8)
