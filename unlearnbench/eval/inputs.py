"""Which data a report was computed on, as plain data: one entry per split (forget, retain, val,
test, ...) with its size and a digest of exactly which examples it holds.

The engine stores these entries in ``Report.meta["inputs"]`` (so they travel with the report
from Ray workers and through ``report.json``) and ``eval.tracking`` logs them as MLflow dataset
inputs: the UI's Dataset column, and run comparison can tell "same forget set" at a glance.
No mlflow import here.
"""

from __future__ import annotations

import hashlib
from typing import Any

# Where each built-in dataset comes from (the MLflow dataset "source").
SOURCES = {
    "digits": "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar20": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "svhn": "http://ufldl.stanford.edu/housenumbers/",
    "mnist": "http://yann.lecun.com/exdb/mnist/",
    "fashion-mnist": "https://github.com/zalandoresearch/fashion-mnist",
}
SPLITS = ("forget", "retain", "val", "test", "test_retained", "test_forgotten")


def split_digest(dataset: str, split_seed: int, name: str, tset: Any) -> str:
    """Digest of which examples a split holds: their indices in the source split and labels
    (the same examples in the same order give the same digest, whatever device holds them)."""
    h = hashlib.sha256(f"{dataset}|{split_seed}|{name}|".encode())
    h.update(tset.idx.detach().cpu().numpy().astype("int64").tobytes())
    h.update(tset.y.detach().cpu().numpy().astype("int64").tobytes())
    return h.hexdigest()[:16]


def split_input(dataset: str, split_seed: int, split: str, tset: Any, forget: str = "") -> dict[str, Any]:
    """The entry of one split (``tset``) of ``dataset``."""
    return {
        "name": f"{dataset}/{split}",
        "context": split,
        "n": int(len(tset)),
        "digest": split_digest(dataset, int(split_seed), split, tset),
        "source": SOURCES.get(dataset, f"unlearnbench dataset {dataset!r}"),
        "forget": forget,
        "split_seed": int(split_seed),
    }


def training_inputs(splits: Any, data: Any = None) -> list[dict[str, Any]]:
    """What a training run read: the training set (the retain set for a retrain reference, which
    never trains on the forget set: it is left out of the inputs), val (model selection) and the
    test splits (its reported accuracies)."""
    if data is not None:
        return [e for e in dataset_inputs(data) if e["context"] != "forget"]
    return [split_input(splits.info.name, splits.split_seed, split, getattr(splits, split))
            for split in ("train", "val", "test") if len(getattr(splits, split))]


def dataset_inputs(data: Any) -> list[dict[str, Any]]:
    """One entry per non-empty split of an ``UnlearnData``: name, context (the split), n, digest,
    source, forget spec."""
    dataset = data.info.name
    out = []
    for split in SPLITS:
        tset = getattr(data, split, None)
        if tset is None or len(tset) == 0:
            continue
        out.append(split_input(dataset, int(data.split_seed), split, tset, str(data.spec)))
    return out
