from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from unlearnbench.core.data import (
    DATASETS,
    DataSource,
    Loader,
    augment_batch,
    load_dataset,
    make_unlearn_data,
    parse_forget_spec,
    prepare,
    split_train_val,
)
from unlearnbench.core.errors import DataError


def _idx(s):
    return set(s.idx.tolist())


def test_digits_is_embedded_and_uint8():
    raw = load_dataset("digits")
    assert raw.train.x.dtype == torch.uint8 and raw.train.x.shape[1:] == (1, 8, 8)
    assert len(raw.train) + len(raw.test) == 1797
    assert raw.train.x.max() == 255 and raw.info.num_classes == 10


def test_split_is_disjoint_deterministic_and_stratified(digits_splits):
    raw = load_dataset("digits")
    a = split_train_val(raw, 5)
    b = split_train_val(raw, 5)
    c = split_train_val(raw, 6)
    assert _idx(a.train) == _idx(b.train) and _idx(a.val) == _idx(b.val)
    assert _idx(a.val) != _idx(c.val)
    assert not (_idx(a.train) & _idx(a.val))
    assert len(a.train) + len(a.val) == len(raw.train)
    counts = np.bincount(raw.train.y.numpy())
    assert np.array_equal(np.bincount(a.val.y.numpy()), (0.1 * counts).astype(int))


@pytest.mark.parametrize(
    "spec,expected",
    [("random:0.1", lambda n: round(0.1 * n)), ("random:37", lambda n: 37)],
)
def test_random_specs_sizes(digits_splits, spec, expected):
    data = make_unlearn_data(digits_splits, spec)
    n = len(digits_splits.train)
    assert len(data.forget) == expected(n) and len(data.forget) + len(data.retain) == n
    assert not (_idx(data.forget) & _idx(data.retain))
    assert _idx(make_unlearn_data(digits_splits, spec).forget) == _idx(data.forget)  # deterministic
    assert data.test_retained is None


def test_random_spec_depends_on_split_seed():
    s0, d0 = prepare("digits", "random:50", split_seed=0)
    s1, d1 = prepare("digits", "random:50", split_seed=1)
    assert _idx(d0.forget) != _idx(d1.forget)
    assert _idx(d0.forget) <= _idx(s0.train)


def test_class_specs(digits_splits):
    data = make_unlearn_data(digits_splits, "class:3,5")
    assert set(data.forget.y.tolist()) == {3, 5} and not ({3, 5} & set(data.retain.y.tolist()))
    assert len(data.forget) == int(((digits_splits.train.y == 3) | (digits_splits.train.y == 5)).sum())
    assert data.forget_classes == (3, 5)
    assert set(data.test_retained.y.tolist()) == set(range(10)) - {3, 5}
    assert set(data.test_forgotten.y.tolist()) == {3, 5}
    assert len(data.test_retained) + len(data.test_forgotten) == len(data.test)


def test_subclass_spec_on_synthetic():
    splits, data = prepare("synthetic", "subclass:class2/class2/sub1")
    assert (data.forget.y == 2).all() and (data.forget.sub == 5).all()
    assert ((data.retain.y == 2) & (data.retain.sub == 4)).any()  # the sibling subclass stays
    assert (data.test_forgotten.sub == 5).all() and not (data.test_retained.sub == 5).any()
    for parent in (0, 1, 3, 4):  # sub 5 belongs to class 2: every other class, below and above, is wrong
        with pytest.raises(DataError, match=f"Subclass '5' does not belong to class '{parent}'"):
            make_unlearn_data(splits, f"subclass:{parent}/5")
    with pytest.raises(DataError, match="no subclass labels"):
        prepare("digits", "subclass:1/2")


def test_indices_spec(tmp_path, digits_splits):
    wanted = digits_splits.train.idx[:25].tolist()
    f = tmp_path / "del.txt"
    f.write_text("# deletion request\n" + "\n".join(map(str, wanted)) + "\n")
    data = make_unlearn_data(digits_splits, f"indices:{f}")
    assert _idx(data.forget) == set(wanted) and len(data.retain) == len(digits_splits.train) - 25


@pytest.mark.parametrize(
    "content,match",
    [
        ("1\n1\n", "more than once"),
        ("5\n7\n9\n7\n", "lists index 7 more than once"),  # names the duplicate, not the first index
        ("99999\n", "out of range"),
        ("abc\n", "not a training-set index"),
        ("\n# nothing\n", "lists no index"),
    ],
)
def test_indices_spec_errors(tmp_path, digits_splits, content, match):
    f = tmp_path / "del.txt"
    f.write_text(content)
    with pytest.raises(DataError, match=match):
        make_unlearn_data(digits_splits, f"indices:{f}")


def test_indices_in_validation_split_rejected(tmp_path, digits_splits):
    f = tmp_path / "del.txt"
    f.write_text(f"{int(digits_splits.val.idx[0])}\n")
    with pytest.raises(DataError, match="validation split"):
        make_unlearn_data(digits_splits, f"indices:{f}")


@pytest.mark.parametrize(
    "spec,match",
    [
        ("class:10", "out of range"),
        ("class:3,3", "listed twice"),
        ("class:0,1,2,3,4,5,6,7,8,9", "every class"),
        ("random:1.0", "strictly between"),
        ("random:0", "at least 1"),
        ("random:100000", "all"),
        ("random:abc", "fraction"),
        ("bogus:1", "Bad forget spec"),
        ("class:", "Bad forget spec"),
        ("indices:/no/such/file", "does not exist"),
        ("class:cat", r"Unknown class 'cat'; use an index 0\.\.9 or one of: 0, 1, 2"),
    ],
)
def test_bad_specs(digits_splits, spec, match):
    with pytest.raises(DataError, match=match):
        make_unlearn_data(digits_splits, spec)


@pytest.mark.parametrize("c", [-1, 0, 9, 10, 11])
def test_class_index_range_is_exactly_the_datasets_classes(digits_splits, c):
    """class:C is valid exactly for 0 <= C < num_classes (digits: 0..9); the edges included."""
    if 0 <= c < 10:
        data = make_unlearn_data(digits_splits, f"class:{c}")
        assert data.forget_classes == (c,) and set(data.forget.y.tolist()) == {c}
    else:
        with pytest.raises(DataError, match="out of range" if c >= 0 else "out of range|Unknown class"):
            make_unlearn_data(digits_splits, f"class:{c}")


@pytest.mark.parametrize("frac", ["-0.5", "-0.0001", "0.0", "1.0", "1.5"])
def test_random_fraction_must_lie_strictly_between_0_and_1(frac):
    with pytest.raises(DataError, match="strictly between 0 and 1"):
        parse_forget_spec(f"random:{frac}")


def test_val_fraction_zero_means_no_validation_split():
    raw = load_dataset("digits")
    splits = split_train_val(raw, split_seed=0, val_fraction=0.0)
    assert len(splits.val) == 0 and len(splits.train) == len(raw.train)
    for bad in (-0.1, 1.0):
        with pytest.raises(DataError, match=r"val_fraction must be in \[0, 1\)"):
            split_train_val(raw, split_seed=0, val_fraction=bad)


def test_parse_spec_kinds():
    assert parse_forget_spec("random:0.1").fraction == 0.1
    assert parse_forget_spec("random:450").count == 450
    assert parse_forget_spec("class:3,5").classes == ("3", "5")
    assert parse_forget_spec("subclass:vehicles_1/bus").classwise


def test_missing_files_error_names_files_and_folder(tmp_path):
    for name, needle in [("cifar10", "data_batch_1"), ("mnist", "train-images-idx3-ubyte"), ("svhn", "train_32x32.mat")]:
        with pytest.raises(DataError) as exc:
            load_dataset(name, DataSource(tmp_path))
        assert needle in str(exc.value) and str(tmp_path) in str(exc.value) and "--download" in str(exc.value)


def _write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (30, 28, 28)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(30) % 10)
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    raw = load_dataset("fashion-mnist", DataSource(tmp_path))
    assert raw.train.x.shape == (30, 1, 28, 28) and raw.test.y.tolist() == list(range(10))
    assert raw.info.class_names[9] == "Ankle boot"


def test_imagefolder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for c, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 12), colour).save(d / f"{i}.png")
    raw = load_dataset("imagefolder", DataSource(tmp_path))
    assert raw.info.class_names == ("cats", "dogs") and raw.train.x.shape == (6, 3, 32, 32)
    assert int(raw.train.x[0, 0].float().mean()) == 255 and int(raw.train.x[-1, 2].float().mean()) == 255
    with pytest.raises(DataError, match="train"):
        load_dataset("imagefolder", DataSource(tmp_path / "nowhere"))


def test_all_datasets_registered():
    assert {"digits", "cifar10", "cifar100", "svhn", "mnist", "fashion-mnist", "imagefolder", "synthetic"} <= set(DATASETS.names())


def test_augment_crop_and_flip_are_real_shifts_and_flips():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, 2, False, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):  # each output is some 6x6 window of the padded image
        assert any(
            torch.equal(out[b], padded[b, :, i : i + 6, j : j + 6]) for i in range(5) for j in range(5)
        )
    flipped = augment_batch(x.repeat(64, 1, 1, 1), 0, True, torch.Generator().manual_seed(1))
    n_flipped = sum(torch.equal(f, x[0].flip(2)) or torch.equal(f, x[1].flip(2)) for f in flipped)
    assert 40 < n_flipped < 88  # about half of 128


def test_loader_batches_floats_and_is_seeded(digits_splits):
    tr = digits_splits.train
    a = list(Loader(tr, 100, shuffle=True, generator=torch.Generator().manual_seed(3)))
    b = list(Loader(tr, 100, shuffle=True, generator=torch.Generator().manual_seed(3)))
    assert len(a) == -(-len(tr) // 100)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a, b, strict=True))
    x, y = a[0]
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert sorted(torch.cat([yy for _, yy in a]).tolist()) == sorted(tr.y.tolist())
    assert len(Loader(tr, 100, drop_last=True)) == len(tr) // 100


@pytest.mark.parametrize("with_fingerprint", [True, False])
def test_indices_range_is_the_source_training_set_exactly(tmp_path, digits_splits, with_fingerprint):
    """The last valid index is n - 1, n = the training set the split was cut from (train + validation
    when no fingerprint says otherwise): n itself is out of range with that bound named, while the
    highest index the run trains on is accepted."""
    import dataclasses

    splits = digits_splits if with_fingerprint else dataclasses.replace(digits_splits, fingerprint=None)
    n = len(splits.train) + len(splits.val)
    assert not with_fingerprint or splits.fingerprint["n_source"] == n  # the full digits set: no subset
    f = tmp_path / "del.txt"
    f.write_text(f"{n}\n")
    with pytest.raises(DataError, match=rf"out of range: the training set has indices 0\.\.{n - 1}\.$"):
        make_unlearn_data(splits, f"indices:{f}")
    last = int(splits.train.idx.max())
    f.write_text(f"{last}\n")
    assert _idx(make_unlearn_data(splits, f"indices:{f}").forget) == {last}
