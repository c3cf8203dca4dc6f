"""Dataset files as users have them: both CIFAR pickle flavours, missing or cut-down batch files, and
datasets too large for the device-resident loader (tiny fake files written here)."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from unlearnbench.core.data import DataSource, data_limit, load_dataset, prepare
from unlearnbench.core.errors import DataError

CIFAR10 = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _batch(rng, n, byte_keys):
    d = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": (np.arange(n) % 10).tolist()}
    return {k.encode(): v for k, v in d.items()} if byte_keys else d


def _write_cifar10(root, n=20, byte_keys=False, skip=()):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in CIFAR10:
        batches[name] = _batch(rng, n, byte_keys)
        if name not in skip:
            with open(folder / name, "wb") as fh:
                pickle.dump(batches[name], fh)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names} if byte_keys else {"label_names": [n.decode() for n in names]}, fh)
    return batches


@pytest.mark.parametrize("byte_keys", [False, True], ids=["python3-str-keys", "bytes-keys"])
def test_cifar10_reads_both_pickle_flavours(tmp_path, byte_keys):
    batches = _write_cifar10(tmp_path, n=20, byte_keys=byte_keys)
    raw = load_dataset("cifar10", DataSource(tmp_path, subset=100))  # 5 x 20 images: all of them
    key = b"data" if byte_keys else "data"
    first = batches["data_batch_1"][key][0]
    # CIFAR stores planes R, G, B: pixel (0, 0) of the green plane is byte 1024 of the row
    assert raw.train.x.shape == (100, 3, 32, 32) and raw.test.x.shape == (20, 3, 32, 32)
    assert int(raw.train.x[0, 0, 0, 0]) == int(first[0]) and int(raw.train.x[0, 1, 0, 0]) == int(first[1024])
    assert raw.info.class_names[3] == "cat" and raw.train.y.tolist()[:12] == [*range(10), 0, 1]


def test_cifar10_names_a_missing_batch_file(tmp_path):
    _write_cifar10(tmp_path, skip=("data_batch_3",))
    with pytest.raises(DataError, match=r"CIFAR-10 file .*data_batch_3 is missing"):
        load_dataset("cifar10", DataSource(tmp_path, subset=80))


def test_cifar10_rejects_cut_down_batches_unless_a_subset_says_so(tmp_path):
    _write_cifar10(tmp_path, n=20)
    with pytest.raises(DataError, match=r"data_batch_1 holds 20 images, not 10,000.*--subset N"):
        load_dataset("cifar10", DataSource(tmp_path))
    splits, _ = prepare("cifar10", source=DataSource(tmp_path, per_class=5))
    assert len(splits.train) + len(splits.val) == 50 and splits.fingerprint["n_source"] == 100


def test_a_full_size_cifar_batch_passes_the_size_check(tmp_path):
    from unlearnbench.core.data.datasets import _cifar_images

    part = {"data": np.zeros((10_000, 3072), np.uint8), "labels": [0] * 10_000}
    x, y = _cifar_images(part, tmp_path / "data_batch_1", "CIFAR-10", "labels", 10_000, DataSource())
    assert x.shape == (10_000, 3, 32, 32) and len(y) == 10_000
    with pytest.raises(DataError, match="no 'labels' entry"):
        _cifar_images({"data": part["data"]}, tmp_path / "b", "CIFAR-10", "labels", 10_000, DataSource())


def test_cifar100_bytes_keys_and_unreadable_file(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 40), ("test", 10)):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": (np.arange(n) % 100).tolist(),
             b"coarse_labels": (np.arange(n) % 20).tolist()}
        with open(folder / name, "wb") as fh:
            pickle.dump(d, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, fh)
    raw = load_dataset("cifar20", DataSource(tmp_path, subset=40))
    assert raw.info.class_names[1] == "c1" and raw.train.sub.tolist()[:3] == [0, 1, 2]
    with pytest.raises(DataError, match="holds 40 images, not 50,000"):
        load_dataset("cifar100", DataSource(tmp_path))
    (folder / "test").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"CIFAR-100 file .*test is unreadable"):
        load_dataset("cifar100", DataSource(tmp_path, subset=40))


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.tobytes())


def test_too_large_for_the_device_is_refused_before_loading(tmp_path, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((100, 28, 28)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(100) % 10)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((20, 28, 28)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    # 120 images of 784 bytes = 94,080 bytes; a limit of 50,000 refuses it, in one sentence
    monkeypatch.setenv("UNLEARNBENCH_MAX_DATA_BYTES", "50000")
    assert data_limit("cpu") == (50000, "UNLEARNBENCH_MAX_DATA_BYTES=50000")
    import unlearnbench.core.data.datasets as ds

    monkeypatch.setattr(ds, "_read_idx", lambda p: pytest.fail("the files were read before the size check"))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", DataSource(tmp_path))
    text = str(exc.value)
    assert "about 94.1 kB" in text and "50.0 kB limit" in text and "--subset N" in text and "\n" not in text
    monkeypatch.undo()
    # a subset that fits is loaded: 40 train + 20 test images = 47,040 bytes
    monkeypatch.setenv("UNLEARNBENCH_MAX_DATA_BYTES", "50000")
    raw = load_dataset("mnist", DataSource(tmp_path, subset=40))
    assert len(raw.train) == 40 and np.bincount(raw.train.y.numpy()).tolist() == [4] * 10


def test_too_large_through_the_cli_is_exit_2(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from unlearnbench.cli import app

    _write_cifar10(tmp_path, n=20)
    monkeypatch.setenv("UNLEARNBENCH_MAX_DATA_BYTES", "100000")
    result = CliRunner().invoke(app, ["train", "-d", "cifar10", "--data-root", str(tmp_path), "--subset", "100",
                                      "-o", str(tmp_path / "m.pt"), "--no-track", "-q", "--device", "cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "limit of the device-resident loader" in result.output and not (tmp_path / "m.pt").exists()
