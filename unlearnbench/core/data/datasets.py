"""The built-in datasets, registered in ``DATASETS``: digits (embedded), synthetic, CIFAR, SVHN, MNIST, Fashion-MNIST, imagefolder."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unlearnbench.core.data.types import (
    DATASETS,
    DatasetInfo,
    DataSource,
    RawDataset,
    _channel_stats,
    _make_set,
)
from unlearnbench.core.errors import DataError

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")




@DATASETS.register("digits", summary="scikit-learn's bundled 8x8 handwritten digits (embedded default)")
def _digits(source: DataSource) -> RawDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 0..16 grey levels → 0..255 so every dataset shares the uint8 contract.
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    # Digits has no official test split: a fixed stratified 25 % (seed 0), independent of
    # split_seed, plays the role of the official test set.
    rng = np.random.RandomState(0)
    test_mask = np.zeros(len(y), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(y == c)
        test_mask[rng.choice(members, int(round(0.25 * len(members))), replace=False)] = True
    train = _make_set(x[~test_mask], y[~test_mask], "train")
    test = _make_set(x[test_mask], y[test_mask], "test")
    mean, std = _channel_stats(train.x)
    info = DatasetInfo("digits", 10, 1, 8, mean, std, class_names=tuple(str(i) for i in range(10)))
    return RawDataset(train, test, info)


def make_synthetic(
    n_train: int = 1200,
    n_test: int = 400,
    num_classes: int = 10,
    channels: int = 3,
    size: int = 16,
    subclasses: int = 2,
    seed: int = 0,
    noise: float = 0.35,
) -> RawDataset:
    """Seeded, learnable random data: each (class, subclass) is a smooth prototype plus noise."""
    g = torch.Generator().manual_seed(seed)
    n_groups = num_classes * subclasses
    coarse = torch.rand(n_groups, channels, 4, 4, generator=g)
    protos = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        group = torch.randint(0, n_groups, (n,), generator=g)
        img = protos[group] + noise * torch.randn(n, channels, size, size, generator=g)
        x = (img.clamp(0, 1) * 255).round().to(torch.uint8)
        return x, group // subclasses, group

    xtr, ytr, gtr = draw(n_train)
    xte, yte, gte = draw(n_test)
    train = _make_set(xtr, ytr, "train", gtr)
    test = _make_set(xte, yte, "test", gte)
    mean, std = _channel_stats(train.x)
    info = DatasetInfo(
        "synthetic",
        num_classes,
        channels,
        size,
        mean,
        std,
        class_names=tuple(f"class{i}" for i in range(num_classes)),
        subclass_names=tuple(f"class{i // subclasses}/sub{i % subclasses}" for i in range(n_groups)),
    )
    return RawDataset(train, test, info)


@DATASETS.register("synthetic", summary="seeded random 3x16x16 data with 10 classes (tests only)")
def _synthetic(source: DataSource) -> RawDataset:
    return make_synthetic()


def _missing(name: str, where: list[Path], files: list[str], hint: str = "") -> DataError:
    places = " or ".join(str(p) for p in where) if where else "(no --data-root given)"
    return DataError(
        f"Dataset {name!r} not found: expected {', '.join(files)} under {places}; "
        f"pass --data-root (or set UNLEARNBENCH_DATA) to the folder holding them{hint}, "
        f"or add --download to fetch them."
    )


def _roots(source: DataSource, *subdirs: str) -> list[Path]:
    if source.root is None:
        return []
    return [source.root / s if s else source.root for s in ("", *subdirs)]


CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def _unpickle(path: Path) -> dict:
    # CIFAR ships as Python pickles of plain dicts/arrays (the format torchvision also reads).
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def _cifar_download(source: DataSource, cls_name: str) -> None:
    import torchvision

    getattr(torchvision.datasets, cls_name)(str(source.root), train=True, download=True)
    getattr(torchvision.datasets, cls_name)(str(source.root), train=False, download=True)


@DATASETS.register("cifar10", summary="CIFAR-10 (32x32 RGB, 10 classes) from --data-root")
def _cifar10(source: DataSource) -> RawDataset:
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    folder = next((r / "cifar-10-batches-py" for r in _roots(source) if (r / "cifar-10-batches-py" / "test_batch").is_file()), None)
    if folder is None and source.download and source.root is not None:
        _cifar_download(source, "CIFAR10")
        folder = source.root / "cifar-10-batches-py"
    if folder is None:
        raise _missing("cifar10", [r / "cifar-10-batches-py" for r in _roots(source)], files)
    try:
        parts = [_unpickle(folder / f) for f in files]
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"CIFAR-10 files in {folder} are unreadable ({exc}); delete them and re-download.") from None

    def stack(ps: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([p["data"] for p in ps]).reshape(-1, 3, 32, 32).astype(np.uint8)
        return x, np.concatenate([p["labels"] for p in ps])

    xtr, ytr = stack(parts[:5])
    xte, yte = stack(parts[5:])
    meta = folder / "batches.meta"
    names = tuple(_unpickle(meta)["label_names"]) if meta.is_file() else tuple(map(str, range(10)))
    info = DatasetInfo("cifar10", 10, 3, 32, *CIFAR10_STATS, crop_padding=4, hflip=True, class_names=names)
    return RawDataset(_make_set(xtr, ytr, "train"), _make_set(xte, yte, "test"), info)


def _cifar100_parts(source: DataSource) -> tuple[dict, dict, dict]:
    folder = next((r / "cifar-100-python" for r in _roots(source) if (r / "cifar-100-python" / "train").is_file()), None)
    if folder is None and source.download and source.root is not None:
        _cifar_download(source, "CIFAR100")
        folder = source.root / "cifar-100-python"
    if folder is None:
        raise _missing("cifar100", [r / "cifar-100-python" for r in _roots(source)], ["train", "test", "meta"])
    try:
        return _unpickle(folder / "train"), _unpickle(folder / "test"), _unpickle(folder / "meta")
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"CIFAR-100 files in {folder} are unreadable ({exc}); delete them and re-download.") from None


@DATASETS.register("cifar100", summary="CIFAR-100 (32x32 RGB, 100 fine classes) from --data-root")
def _cifar100(source: DataSource) -> RawDataset:
    tr, te, meta = _cifar100_parts(source)
    x = lambda p: p["data"].reshape(-1, 3, 32, 32).astype(np.uint8)  # noqa: E731
    info = DatasetInfo(
        "cifar100", 100, 3, 32, *CIFAR100_STATS, crop_padding=4, hflip=True,
        class_names=tuple(meta["fine_label_names"]),
    )
    return RawDataset(
        _make_set(x(tr), tr["fine_labels"], "train"), _make_set(x(te), te["fine_labels"], "test"), info
    )


@DATASETS.register("cifar20", summary="CIFAR-100 images with its 20 superclass labels (for subclass:SUPER/FINE)")
def _cifar20(source: DataSource) -> RawDataset:
    tr, te, meta = _cifar100_parts(source)
    x = lambda p: p["data"].reshape(-1, 3, 32, 32).astype(np.uint8)  # noqa: E731
    info = DatasetInfo(
        "cifar20", 20, 3, 32, *CIFAR100_STATS, crop_padding=4, hflip=True,
        class_names=tuple(meta["coarse_label_names"]), subclass_names=tuple(meta["fine_label_names"]),
    )
    return RawDataset(
        _make_set(x(tr), tr["coarse_labels"], "train", tr["fine_labels"]),
        _make_set(x(te), te["coarse_labels"], "test", te["fine_labels"]),
        info,
    )


@DATASETS.register("svhn", summary="SVHN (32x32 RGB digits) from --data-root (train_32x32.mat, test_32x32.mat)")
def _svhn(source: DataSource) -> RawDataset:
    files = ["train_32x32.mat", "test_32x32.mat"]
    folder = next((r for r in _roots(source, "svhn", "SVHN") if all((r / f).is_file() for f in files)), None)
    if folder is None and source.download and source.root is not None:
        import torchvision

        for split in ("train", "test"):
            torchvision.datasets.SVHN(str(source.root), split=split, download=True)
        folder = source.root
    if folder is None:
        raise _missing("svhn", _roots(source, "svhn"), files)
    from scipy.io import loadmat

    def read(f: str) -> tuple[np.ndarray, np.ndarray]:
        mat = loadmat(str(folder / f))
        y = mat["y"].astype(np.int64).squeeze() % 10  # SVHN stores digit 0 as label 10
        return np.transpose(mat["X"], (3, 2, 0, 1)).astype(np.uint8), y

    (xtr, ytr), (xte, yte) = read(files[0]), read(files[1])
    info = DatasetInfo(
        "svhn", 10, 3, 32, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
        class_names=tuple(map(str, range(10))),
    )
    return RawDataset(_make_set(xtr, ytr, "train"), _make_set(xte, yte, "test"), info)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


_IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _find_idx(folders: list[Path]) -> list[Path] | None:
    for folder in folders:
        found = []
        for stem in _IDX_FILES:
            hit = next((folder / (stem + ext) for ext in ("", ".gz") if (folder / (stem + ext)).is_file()), None)
            if hit is None:
                break
            found.append(hit)
        else:
            return found
    return None


def _idx_dataset(name: str, tv_name: str, source: DataSource, extra: list[Path], info: DatasetInfo) -> RawDataset:
    folders = _roots(source, name, f"{tv_name}/raw", tv_name) + extra
    files = _find_idx(folders)
    if files is None and source.download and source.root is not None:
        import torchvision

        getattr(torchvision.datasets, tv_name)(str(source.root), train=True, download=True)
        getattr(torchvision.datasets, tv_name)(str(source.root), train=False, download=True)
        files = _find_idx(folders)
    if files is None:
        raise _missing(name, folders, [f + "[.gz]" for f in _IDX_FILES])
    try:
        xtr, ytr, xte, yte = (_read_idx(f) for f in files)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{name} files in {files[0].parent} are unreadable ({exc}); replace them.") from None
    return RawDataset(
        _make_set(xtr[:, None], ytr, "train"), _make_set(xte[:, None], yte, "test"), info
    )


@DATASETS.register("mnist", summary="MNIST (28x28 grey) from --data-root (IDX files)")
def _mnist(source: DataSource) -> RawDataset:
    info = DatasetInfo("mnist", 10, 1, 28, (0.1307,), (0.3081,), class_names=tuple(map(str, range(10))))
    return _idx_dataset("mnist", "MNIST", source, [], info)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@DATASETS.register(
    "fashion-mnist",
    summary="Fashion-MNIST (28x28 grey) from --data-root or Debian's dataset-fashion-mnist package",
)
def _fashion(source: DataSource) -> RawDataset:
    info = DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), class_names=FASHION_CLASSES)
    extra = [FASHION_MNIST_SYSTEM_DIR, FASHION_MNIST_SYSTEM_DIR / "data" / "fashion"]
    return _idx_dataset("fashion-mnist", "FashionMNIST", source, extra, info)


IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff"}


@DATASETS.register("imagefolder", summary="a class-per-folder image tree: ROOT/train/<class>/*.png and ROOT/test/<class>/*")
def _imagefolder(source: DataSource, image_size: int = 32) -> RawDataset:
    from PIL import Image, UnidentifiedImageError

    if source.root is None:
        raise DataError("Dataset 'imagefolder' needs --data-root pointing at a folder with train/ and test/ sub-folders.")
    splits = {s: source.root / s for s in ("train", "test")}
    missing = [str(p) for p in splits.values() if not p.is_dir()]
    if missing:
        raise DataError(f"Dataset 'imagefolder' expects class folders under {' and '.join(missing)}; create them.")
    classes = sorted(d.name for d in splits["train"].iterdir() if d.is_dir())
    if len(classes) < 2:
        raise DataError(f"Dataset 'imagefolder' needs at least two class folders in {splits['train']}.")

    def read(folder: Path) -> tuple[np.ndarray, np.ndarray, str]:
        xs, ys, modes = [], [], set()
        for c, cname in enumerate(classes):
            for f in sorted((folder / cname).glob("*")) if (folder / cname).is_dir() else []:
                if f.suffix.lower() not in IMAGE_EXTS:
                    continue
                try:
                    img = Image.open(f)
                    img.load()
                except (OSError, UnidentifiedImageError):
                    raise DataError(f"Image {f} cannot be read; remove or replace it.") from None
                modes.add("L" if img.mode in ("L", "1", "I;16", "I") else "RGB")
                xs.append(img)
                ys.append(c)
        if not xs:
            raise DataError(f"No images found under {folder}.")
        mode = "RGB" if "RGB" in modes else "L"
        arr = [np.asarray(i.convert(mode).resize((image_size, image_size), Image.BILINEAR)) for i in xs]
        x = np.stack(arr)
        x = x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)
        return x.astype(np.uint8), np.asarray(ys), mode

    xtr, ytr, mode = read(splits["train"])
    xte, yte, _ = read(splits["test"])
    if xte.shape[1] != xtr.shape[1]:  # keep channels consistent across splits
        xte = np.repeat(xte, 3, axis=1) if xtr.shape[1] == 3 else xte.mean(1, keepdims=True).astype(np.uint8)
    train = _make_set(xtr, ytr, "train")
    mean, std = _channel_stats(train.x)
    info = DatasetInfo(
        "imagefolder", len(classes), xtr.shape[1], image_size, mean, std,
        crop_padding=image_size // 8, hflip=True, class_names=tuple(classes),
    )
    return RawDataset(train, _make_set(xte, yte, "test"), info)
