"""The built-in datasets, registered in ``DATASETS``: digits (embedded), synthetic, CIFAR, SVHN, MNIST, Fashion-MNIST
(``imagefolder`` has its own module)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unlearnbench.core.data.selection import SizeEstimate, size_estimate
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




@DATASETS.register("digits", shape=(10, 1, 8), summary="scikit-learn's bundled 8x8 handwritten digits (embedded default)")
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


@DATASETS.register("synthetic", shape=(10, 3, 16), summary="seeded random 3x16x16 data with 10 classes (tests only)")
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


CIFAR_BATCH = 10_000  # images in every CIFAR-10 batch file and in the CIFAR-100 test file
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR100_FILES = ["train", "test", "meta"]


def _plain_keys(value):
    """Both pickle flavours read alike: keys (and names) written as bytes become str.

    The files from the CIFAR site are Python 2 pickles; read with ``encoding='bytes'`` (as the
    site's own recipe does) and saved again, they hold ``b'data'`` keys; Python 3 copies hold
    ``'data'``.
    """
    if isinstance(value, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): _plain_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v.decode("latin1") if isinstance(v, bytes) else v for v in value]
    return value


def _unpickle(path: Path, what: str) -> dict:
    # CIFAR ships as Python pickles of plain dicts/arrays (the format torchvision also reads);
    # latin1 is the encoding that unpickles Python 2 numpy arrays.
    if not path.is_file():
        raise DataError(f"{what} file {path} is missing; restore it (or delete the folder and pass --download).")
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as exc:
        raise DataError(f"{what} file {path} is unreadable ({type(exc).__name__}); delete it and re-download.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{what} file {path} does not hold a CIFAR dictionary; delete it and re-download.")
    return _plain_keys(obj)


def _cifar_images(part: dict, path: Path, what: str, labels: str, expected: int, source: DataSource) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) and labels of one CIFAR file, with its size checked."""
    missing = [k for k in ("data", labels) if k not in part]
    if missing:
        raise DataError(f"{what} file {path} has no {missing[0]!r} entry; it is not a CIFAR file, re-download it.")
    data, y = np.asarray(part["data"]), np.asarray(part[labels], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(y):
        raise DataError(f"{what} file {path} holds data of shape {data.shape} for {len(y)} labels, not rows of "
                        "3,072 pixels per label; re-download it.")
    if len(data) != expected and not source.wants_subset:
        raise DataError(f"{what} file {path} holds {len(data):,} images, not {expected:,}: the files are truncated or "
                        "cut down; re-download them, or pass --subset N / --per-class N to use a cut-down copy.")
    return data.reshape(-1, 3, 32, 32).astype(np.uint8), y


def _cifar_download(source: DataSource, cls_name: str) -> None:
    import torchvision

    getattr(torchvision.datasets, cls_name)(str(source.root), train=True, download=True)
    getattr(torchvision.datasets, cls_name)(str(source.root), train=False, download=True)


def _cifar10_folder(source: DataSource) -> Path | None:
    # A folder with any batch file is the one meant: a missing sibling is then named as missing.
    return next((r / "cifar-10-batches-py" for r in _roots(source)
                 if any((r / "cifar-10-batches-py" / f).is_file() for f in CIFAR10_FILES)), None)


def _cifar_estimate(folder: Path | None, train: list[str], test: list[str], classes: int) -> SizeEstimate | None:
    if folder is None:
        return None
    # A pickled batch is its uint8 pixels plus about 1 % of labels and names.
    rows = lambda names: sum((folder / f).stat().st_size // 3100 for f in names if (folder / f).is_file())  # noqa: E731
    return SizeEstimate(rows(train), rows(test), 3072, classes)


@size_estimate("cifar10")
def _cifar10_size(source: DataSource) -> SizeEstimate | None:
    return _cifar_estimate(_cifar10_folder(source), CIFAR10_FILES[:5], CIFAR10_FILES[5:], 10)


@DATASETS.register("cifar10", shape=(10, 3, 32), summary="CIFAR-10 (32x32 RGB, 10 classes) from --data-root")
def _cifar10(source: DataSource) -> RawDataset:
    folder = _cifar10_folder(source)
    if folder is None and source.download and source.root is not None:
        _cifar_download(source, "CIFAR10")
        folder = source.root / "cifar-10-batches-py"
    if folder is None:
        raise _missing("cifar10", [r / "cifar-10-batches-py" for r in _roots(source)], CIFAR10_FILES)
    parts = [_cifar_images(_unpickle(folder / f, "CIFAR-10"), folder / f, "CIFAR-10", "labels", CIFAR_BATCH, source)
             for f in CIFAR10_FILES]
    xtr, ytr = np.concatenate([p[0] for p in parts[:5]]), np.concatenate([p[1] for p in parts[:5]])
    xte, yte = parts[5]
    meta = folder / "batches.meta"
    names = tuple(_unpickle(meta, "CIFAR-10").get("label_names", [])) if meta.is_file() else ()
    info = DatasetInfo("cifar10", 10, 3, 32, *CIFAR10_STATS, crop_padding=4, hflip=True,
                       class_names=names if len(names) == 10 else tuple(map(str, range(10))))
    return RawDataset(_make_set(xtr, ytr, "train"), _make_set(xte, yte, "test"), info)


def _cifar100_folder(source: DataSource) -> Path | None:
    return next((r / "cifar-100-python" for r in _roots(source)
                 if any((r / "cifar-100-python" / f).is_file() for f in CIFAR100_FILES)), None)


def _cifar100_parts(source: DataSource) -> tuple[dict, dict, dict, Path]:
    folder = _cifar100_folder(source)
    if folder is None and source.download and source.root is not None:
        _cifar_download(source, "CIFAR100")
        folder = source.root / "cifar-100-python"
    if folder is None:
        raise _missing("cifar100", [r / "cifar-100-python" for r in _roots(source)], CIFAR100_FILES)
    tr, te, meta = (_unpickle(folder / f, "CIFAR-100") for f in CIFAR100_FILES)
    return tr, te, meta, folder


def _cifar100_sets(source: DataSource, labels: str) -> tuple[tuple, tuple, dict]:
    tr, te, meta, folder = _cifar100_parts(source)
    train = _cifar_images(tr, folder / "train", "CIFAR-100", labels, 5 * CIFAR_BATCH, source)
    test = _cifar_images(te, folder / "test", "CIFAR-100", labels, CIFAR_BATCH, source)
    sub = (np.asarray(tr.get("fine_labels", [])), np.asarray(te.get("fine_labels", [])))
    return (*train, sub[0]), (*test, sub[1]), meta


@size_estimate("cifar100", "cifar20")
def _cifar100_size(source: DataSource) -> SizeEstimate | None:
    # 20 classes is the cautious count for both: --per-class then keeps the most images.
    return _cifar_estimate(_cifar100_folder(source), ["train"], ["test"], 20)


@DATASETS.register("cifar100", shape=(100, 3, 32), summary="CIFAR-100 (32x32 RGB, 100 fine classes) from --data-root")
def _cifar100(source: DataSource) -> RawDataset:
    (xtr, ytr, _), (xte, yte, _), meta = _cifar100_sets(source, "fine_labels")
    info = DatasetInfo(
        "cifar100", 100, 3, 32, *CIFAR100_STATS, crop_padding=4, hflip=True,
        class_names=tuple(meta.get("fine_label_names", map(str, range(100)))),
    )
    return RawDataset(_make_set(xtr, ytr, "train"), _make_set(xte, yte, "test"), info)


@DATASETS.register("cifar20", shape=(20, 3, 32), summary="CIFAR-100 images with its 20 superclass labels (for subclass:SUPER/FINE)")
def _cifar20(source: DataSource) -> RawDataset:
    (xtr, ytr, ftr), (xte, yte, fte), meta = _cifar100_sets(source, "coarse_labels")
    if len(ftr) != len(ytr) or len(fte) != len(yte):
        raise DataError("The CIFAR-100 files lack their 'fine_labels' entry, which cifar20 needs; re-download them.")
    info = DatasetInfo(
        "cifar20", 20, 3, 32, *CIFAR100_STATS, crop_padding=4, hflip=True,
        class_names=tuple(meta.get("coarse_label_names", map(str, range(20)))),
        subclass_names=tuple(meta.get("fine_label_names", map(str, range(100)))),
    )
    return RawDataset(_make_set(xtr, ytr, "train", ftr), _make_set(xte, yte, "test", fte), info)


SVHN_FILES = ["train_32x32.mat", "test_32x32.mat"]


def _svhn_folder(source: DataSource) -> Path | None:
    return next((r for r in _roots(source, "svhn", "SVHN") if all((r / f).is_file() for f in SVHN_FILES)), None)


@size_estimate("svhn")
def _svhn_size(source: DataSource) -> SizeEstimate | None:
    folder = _svhn_folder(source)
    if folder is None:
        return None
    # uint8 pixels plus one float64 label each
    n_train, n_test = ((folder / f).stat().st_size // 3080 for f in SVHN_FILES)
    return SizeEstimate(n_train, n_test, 3072, 10)


@DATASETS.register("svhn", shape=(10, 3, 32), summary="SVHN (32x32 RGB digits) from --data-root (train_32x32.mat, test_32x32.mat)")
def _svhn(source: DataSource) -> RawDataset:
    files = SVHN_FILES
    folder = _svhn_folder(source)
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


def _idx_header(path: Path) -> list[int]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        head = fh.read(4)
        ndim = head[3] if len(head) == 4 else 0
        raw = fh.read(4 * ndim)
    return [int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim)]


def _register_idx_size(name: str, tv_name: str, extra: list[Path]) -> None:
    @size_estimate(name)
    def estimate(source: DataSource) -> SizeEstimate | None:
        files = _find_idx(_roots(source, name, f"{tv_name}/raw", tv_name) + extra)
        if files is None:
            return None
        try:
            train, test = _idx_header(files[0]), _idx_header(files[2])
        except (OSError, EOFError):
            return None  # the loader names the unreadable file
        if len(train) < 2 or len(test) < 2:
            return None
        return SizeEstimate(train[0], test[0], int(np.prod(train[1:])), 10)


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


_register_idx_size("mnist", "MNIST", [])


@DATASETS.register("mnist", shape=(10, 1, 28), summary="MNIST (28x28 grey) from --data-root (IDX files)")
def _mnist(source: DataSource) -> RawDataset:
    info = DatasetInfo("mnist", 10, 1, 28, (0.1307,), (0.3081,), class_names=tuple(map(str, range(10))))
    return _idx_dataset("mnist", "MNIST", source, [], info)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


_register_idx_size("fashion-mnist", "FashionMNIST", [FASHION_MNIST_SYSTEM_DIR, FASHION_MNIST_SYSTEM_DIR / "data" / "fashion"])


@DATASETS.register(
    "fashion-mnist", shape=(10, 1, 28),
    summary="Fashion-MNIST (28x28 grey) from --data-root or Debian's dataset-fashion-mnist package",
)
def _fashion(source: DataSource) -> RawDataset:
    info = DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), class_names=FASHION_CLASSES)
    extra = [FASHION_MNIST_SYSTEM_DIR, FASHION_MNIST_SYSTEM_DIR / "data" / "fashion"]
    return _idx_dataset("fashion-mnist", "FashionMNIST", source, extra, info)
