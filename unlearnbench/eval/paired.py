"""Per-example outcomes of a proportion, so that a gap to the reference is judged *paired*.

A model and its retrained reference are scored on the same images. Their difference in accuracy
is carried entirely by the images on which they disagree: treating the two accuracies as
independent samples (Newcombe's unpaired interval) ignores that most images are right (or
wrong) for both, and is much too wide. So every proportion that is a mean over examples (top-1
accuracy per split, UA, robust accuracy) keeps its per-example outcomes as an ``Outcomes``: one
bool per example (the event counted: correct, or wrong for UA) and a digest of *which* examples
in which order, so outcomes are paired only when they describe the same images.

The ``gap`` metric turns the model's and the reference's outcomes into the two discordant counts
``n/<key>/model_only`` (the event for the model, not for the reference) and
``n/<key>/reference_only``; with ``n/<key>`` and the value they give the whole 2x2 table, which
``Report.gap_interval`` (Newcombe's paired interval) and ``Report.beyond_noise`` (McNemar) read.
Outcomes travel in ``Report.outcomes`` and in ``report.json`` (bit-packed, base64), so a
reference given as a report (a study's retrain) pairs as well as a reference model.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MODEL_ONLY = "model_only"
REFERENCE_ONLY = "reference_only"


def digest(idx: Any) -> str:
    """A short fingerprint of example indices, in order (same digest = same images, same order)."""
    arr = np.ascontiguousarray(np.asarray(idx, dtype=np.int64))
    return hashlib.sha1(arr.tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class Outcomes:
    """One bool per example (the event the proportion counts) and the examples' digest."""

    hits: np.ndarray
    digest: str

    @classmethod
    def of(cls, hits: Any, idx: Any) -> Outcomes:
        h = np.asarray(hits.cpu() if hasattr(hits, "cpu") else hits, dtype=bool).ravel()
        i = np.asarray(idx.cpu() if hasattr(idx, "cpu") else idx).ravel()
        if len(h) != len(i):
            raise ValueError(f"{len(h)} outcomes for {len(i)} example indices")
        return cls(h, digest(i))

    def __len__(self) -> int:
        return len(self.hits)

    def invert(self) -> Outcomes:
        """The complementary event on the same examples (UA counts the forget set's mistakes)."""
        return Outcomes(~self.hits, self.digest)

    def to_json(self) -> dict[str, Any]:
        bits = base64.b64encode(np.packbits(self.hits).tobytes()).decode("ascii")
        return {"n": len(self.hits), "digest": self.digest, "bits": bits}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Outcomes:
        n = int(d["n"])
        raw = np.frombuffer(base64.b64decode(d["bits"]), dtype=np.uint8)
        hits = np.unpackbits(raw)[:n].astype(bool)
        if len(hits) != n:
            raise ValueError(f"outcome bits hold {len(hits)} examples, expected {n}")
        return cls(hits, str(d["digest"]))


def discordant(model: Outcomes | None, reference: Outcomes | None) -> tuple[int, int] | None:
    """(model_only, reference_only): examples with the event for one and not the other; None
    unless both describe the same examples in the same order."""
    if model is None or reference is None or model.digest != reference.digest or len(model) != len(reference):
        return None
    return int((model.hits & ~reference.hits).sum()), int((reference.hits & ~model.hits).sum())


def discordant_counts(values: Mapping[str, Outcomes], reference: Mapping[str, Outcomes] | None) -> dict[str, int]:
    """``n/<key>/model_only`` and ``n/<key>/reference_only`` for every key both sides have."""
    out: dict[str, int] = {}
    for key, mine in values.items():
        d = discordant(mine, (reference or {}).get(key))
        if d is not None:
            out[f"n/{key}/{MODEL_ONLY}"], out[f"n/{key}/{REFERENCE_ONLY}"] = d
    return out


def table(key: str, value: float, scale: float, counts: Mapping[str, float]) -> tuple[int, int, int, int] | None:
    """The paired 2x2 table (both, model_only, reference_only, neither) of ``key`` from its
    value (in units of ``scale``: 100 for percentages), ``n/<key>`` and the discordant counts;
    None when the counts are missing or inconsistent with the value."""
    n, b, c = (counts.get(f"n/{key}"), counts.get(f"n/{key}/{MODEL_ONLY}"), counts.get(f"n/{key}/{REFERENCE_ONLY}"))
    if n is None or b is None or c is None or not n > 0:
        return None
    n, b, c = int(n), int(b), int(c)
    hits = round(value / scale * n)  # the model's events: both + model_only
    both = hits - b
    neither = n - both - b - c
    if both < 0 or neither < 0 or abs(hits - value / scale * n) > 1e-6 * max(1, n):
        return None
    return both, b, c, neither
