"""--subset / --per-class selections and the data fingerprint they feed (core.data.selection, core.data.fingerprint)."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnbench.core.data import DataSource, fingerprint, load_dataset, make_unlearn_data, prepare, subset_positions
from unlearnbench.core.errors import DataError


def test_per_class_keeps_exactly_n_of_each_class_and_is_seeded():
    y = np.repeat(np.arange(4), [10, 20, 30, 5])
    pos = subset_positions(y, subset=None, per_class=7, seed=0)
    assert np.bincount(y[pos]).tolist() == [7, 7, 7, 5]  # the 5-image class is kept whole
    assert np.array_equal(pos, np.sort(pos)) and len(set(pos.tolist())) == len(pos)
    assert np.array_equal(pos, subset_positions(y, subset=None, per_class=7, seed=0))
    assert not np.array_equal(pos, subset_positions(y, subset=None, per_class=7, seed=1))


def test_subset_is_stratified_with_largest_remainders():
    y = np.repeat(np.arange(3), [50, 30, 20])
    pos = subset_positions(y, subset=11, per_class=None, seed=3)
    # exact shares 5.5, 3.3, 2.2 -> floors 5, 3, 2 and the one leftover place to the largest remainder (class 0)
    assert np.bincount(y[pos]).tolist() == [6, 3, 2]
    with pytest.raises(DataError, match="more than the 100"):
        subset_positions(y, subset=101, per_class=None, seed=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"subset": -1}, "--subset takes"),
    ({"per_class": 2.5}, "--per-class takes"),
    ({"subset": 10, "per_class": 3}, "not both"),
    ({"image_size": 2}, "--image-size"),
])
def test_bad_selections_are_one_sentence(kwargs, match):
    with pytest.raises(DataError, match=match):
        DataSource(**kwargs)


def test_subset_is_cut_before_the_split_and_keeps_original_indices():
    full = load_dataset("digits")
    splits, data = prepare("digits", "class:3", source=DataSource(per_class=40))
    assert len(splits.train) + len(splits.val) == 400
    assert np.bincount(splits.val.y.numpy()).tolist() == [4] * 10  # 10 % of each 40-image class
    # idx are indices into the full training set, and point at the same images
    idx = splits.train.idx
    assert int(idx.max()) >= 400 and (full.train.x[idx] == splits.train.x).all()
    assert set(data.forget.y.tolist()) == {3} and len(data.forget) == 36
    fp = splits.fingerprint
    assert (fp["n_train"], fp["n_source"], fp["per_class"], fp["subset"]) == (400, 1347, 40, None)


def test_fingerprint_digest_is_the_sha256_of_the_cut_training_set():
    raw = load_dataset("digits", DataSource(subset=300))
    splits, _ = prepare("digits", source=DataSource(subset=300))
    assert splits.fingerprint["train_sha256"] == fingerprint.digest_set(raw.train.x, raw.train.y, raw.train.idx)
    # independent computation: the bytes of the uint8 images, the int64 labels and the indices
    import hashlib

    h = hashlib.sha256()
    for a in (raw.train.x.numpy(), raw.train.y.numpy(), raw.train.idx.numpy()):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    assert h.hexdigest() == splits.fingerprint["train_sha256"]


def test_fingerprint_differences_are_named():
    full, _ = prepare("digits")
    same, _ = prepare("digits")
    sub, _ = prepare("digits", source=DataSource(per_class=50))
    other_seed, _ = prepare("digits", split_seed=1)
    assert fingerprint.difference(full.fingerprint, same.fingerprint) is None
    assert fingerprint.difference(sub.fingerprint, full.fingerprint) == (
        "a 50-per-class subset (500 of 1,347 images) of digits, but this run has the full digits training set "
        "(1,347 images)")
    assert "split seed 1, not 0" == fingerprint.difference(other_seed.fingerprint, full.fingerprint)
    # same count, other pixels: a different subset seed picks other images
    seeded, _ = prepare("digits", source=DataSource(per_class=50, subset_seed=1))
    assert "other training images" in fingerprint.difference(sub.fingerprint, seeded.fingerprint)


def test_indices_outside_the_subset_are_refused(tmp_path):
    splits, _ = prepare("digits", source=DataSource(per_class=20))
    outside = sorted(set(range(1347)) - set(splits.train.idx.tolist()) - set(splits.val.idx.tolist()))[0]
    f = tmp_path / "del.txt"
    f.write_text(f"{int(splits.train.idx[0])}\n{outside}\n")
    with pytest.raises(DataError, match=f"Index {outside} .* not in the training subset"):
        make_unlearn_data(splits, f"indices:{f}")
