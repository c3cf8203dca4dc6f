"""imagefolder: decoding into one array, --image-size, the decode cache, subsets and the fingerprint."""

from __future__ import annotations

import logging
import os

import pytest
from PIL import Image
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.data import DataSource, load_dataset
from unlearnbench.core.data import imagefolder as imf
from unlearnbench.core.errors import DataError

COLOURS = {"cats": (255, 0, 0), "dogs": (0, 0, 255), "owls": (0, 200, 0)}


def _tree(root, n_train=4, n_test=2, mode="RGB", size=(12, 10)):
    """Every image of a class has its class colour, with image i's pixel (0, 0) set to i."""
    for split, n in (("train", n_train), ("test", n_test)):
        for cname, colour in COLOURS.items():
            d = root / split / cname
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = Image.new("RGB", size, colour)
                img.putpixel((0, 0), (i, i, i))
                (img.convert("L") if mode == "L" else img).save(d / f"{i:03d}.png")
    return root


def test_decodes_every_image_into_its_row_at_the_asked_size(tmp_path):
    raw = load_dataset("imagefolder", DataSource(_tree(tmp_path), image_size=10))
    assert raw.train.x.shape == (12, 3, 10, 10) and raw.test.x.shape == (6, 3, 10, 10)
    assert raw.info.image_size == 10 and raw.info.class_names == ("cats", "dogs", "owls")
    assert raw.train.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # the middle of image 1 of dogs is pure blue; its corner carries its index (bilinear-resized)
    assert raw.train.x[5, :, 5, 5].tolist() == [0, 0, 255]
    assert raw.train.x[0, 0, 5, 5] == 255 and raw.train.x[3, 0, 0, 0] < raw.train.x[0, 0, 5, 5]


def test_grey_trees_have_one_channel(tmp_path):
    raw = load_dataset("imagefolder", DataSource(_tree(tmp_path, mode="L"), image_size=8))
    assert raw.train.x.shape[1] == 1 and raw.info.in_channels == 1
    # PIL's luma of pure red: 299 * 255 // 1000
    assert int(raw.train.x[0, 0, 4, 4]) == 76


def test_second_load_comes_from_the_cache_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    root = _tree(tmp_path / "data")
    cache = tmp_path / "cache"
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(cache))
    first = load_dataset("imagefolder", DataSource(root))
    assert len(list((cache / "imagefolder").glob("*.hist.npy"))) == 2  # train and test (images + histograms)
    decoded = []
    real = imf._decode_into
    monkeypatch.setattr(imf, "_decode_into", lambda out, i, path, size: decoded.append(path) or real(out, i, path, size))
    second = load_dataset("imagefolder", DataSource(root))
    assert decoded == [] and (second.train.x == first.train.x).all() and (second.test.x == first.test.x).all()
    # a rewritten image (new content, size and mtime) gives a new key: that split is decoded again
    f = root / "train" / "owls" / "000.png"
    Image.new("RGB", (12, 10), (9, 9, 9)).save(f)
    os.utime(f, ns=(1, 1))
    third = load_dataset("imagefolder", DataSource(root))
    assert len(decoded) == 12 and third.train.x[8, :, 5, 5].tolist() == [9, 9, 9]
    # another image size is another cache entry
    assert load_dataset("imagefolder", DataSource(root, image_size=8)).train.x.shape[-1] == 8


def test_unwritable_cache_costs_speed_not_the_run(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(blocker))
    with caplog.at_level(logging.WARNING):
        raw = load_dataset("imagefolder", DataSource(_tree(tmp_path / "data")))
    assert len(raw.train) == 12 and any("cannot write the imagefolder cache" in r.getMessage() for r in caplog.records)


def test_a_subset_decodes_only_the_chosen_images(tmp_path, monkeypatch):
    root = _tree(tmp_path, n_train=6)
    decoded = []
    real = imf._decode_into
    monkeypatch.setattr(imf, "_decode_into", lambda out, i, path, size: decoded.append(path) or real(out, i, path, size))
    raw = load_dataset("imagefolder", DataSource(root, per_class=2))
    assert len(raw.train) == 6 and len(decoded) == 6 + 6  # 2 per class, and the 6 test images
    assert raw.selection["n_source"] == 18 and raw.train.idx.max() < 18
    chosen = {p.name for p in decoded if p.parent.parent.name == "train"}
    assert all(f"{int(i) % 6:03d}.png" in chosen for i in raw.train.idx)


def test_too_large_is_refused_before_decoding(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    monkeypatch.setenv("UNLEARNBENCH_MAX_DATA_BYTES", "20000")  # 18 images x 3 x 32 x 32 = 55,296 bytes
    monkeypatch.setattr(imf, "_decode", lambda *a: pytest.fail("decoded before the size check"))
    with pytest.raises(DataError, match=r"about 55.3 kB .* 20.0 kB limit"):
        load_dataset("imagefolder", DataSource(root))


def test_model_trained_on_part_of_a_tree_is_refused_against_the_whole_tree(tmp_path):
    small = _tree(tmp_path / "small", n_train=6, size=(8, 8))
    full = _tree(tmp_path / "full", n_train=12, size=(8, 8))
    quick = ["--no-track", "-q", "--device", "cpu"]
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "-d", "imagefolder", "--data-root", str(small), "--image-size", "8",
                                  "-m", "mlp", "--epochs", "1", "--val-fraction", "0.2", "-o", str(tmp_path / "m.pt"),
                                  *quick])
    assert trained.exit_code == 0, trained.output
    args = ["evaluate", "-c", str(tmp_path / "m.pt"), "--forget", "class:owls", "--metrics", "ua"]
    same = runner.invoke(app, [*args, "--data-root", str(small), *quick])
    assert same.exit_code == 0, same.output  # the image size came from the checkpoint
    result = runner.invoke(app, [*args, "--data-root", str(full), *quick])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "was trained on 18 imagefolder training images, but this data root holds 36" in text
    assert "--allow-data-mismatch" in text
