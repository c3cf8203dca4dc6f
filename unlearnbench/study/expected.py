"""The paper's numbers a study expects (``expected:`` in a study YAML) and their comparison with
what the study measured.

A block per (forget spec, prune variant) cites its source and lists, per row label of the study
(``retrain``, ``finetune``, a preset's method name, ...), the paper's mean ± std of UA, RA, TA,
MIA (MIA-Efficacy) and Avg. Gap, the paper's RTE in minutes where it gives one (shown beside the
measured RTE in minutes, never judged: other hardware) and the row's ``source`` (where the
numbers were read)::

    expected:
      - forget: random:0.1
        citation: "Fan et al., SalUn, ICLR 2024, Table 1 (CIFAR-10, ResNet-18, random 10 %)"
        protocol: "ResNet-18 trained 182 epochs (main_train.py); 10 trials"
        variant: ""                       # or prune=0.95 for the rows of a pruned model
        methods:
          retrain: {UA: 5.24±0.69, RA: 100.00±0.00, TA: 94.26±0.02, MIA: 12.88±0.09, avg_gap: 0}
          finetune: {name: FT, UA: 0.63±0.55, ...}

Values are ``"mean±std"`` (or ``"mean ± std"``), ``[mean, std]`` or a bare mean (the paper gives
no std: the difference is shown, no verdict). Rows the
study does not run are kept (the report shows them as not run): a paper table is shipped whole.

Comparison (:func:`compare`): the difference measured − paper in units of the paper's std, and a
plain verdict, *within 2 std* or *outside*. A printed ``±0.00`` means a std below 0.005, so the
std is floored at :data:`STD_FLOOR` (half the tables' last digit) before dividing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from unlearnbench.core.config import configclass
from unlearnbench.core.errors import ConfigError

# The paper tables' columns → the study's metric keys (TA depends on the forget spec).
COLUMNS = {"ua": "UA", "ra": "RA", "ta": "TA", "mia": "MIA", "avg_gap": "Avg. Gap", "rte": "RTE (min)"}
KEYS = {"ua": "ua", "ra": "retain_acc", "mia": "mia_efficacy", "avg_gap": "avg_gap", "rte": "rte_seconds"}
# Shown beside the measured value, never judged: the paper's minutes were on its own GPU.
UNJUDGED = {"rte": "other hardware"}
STD_FLOOR = 0.005
WITHIN = 2.0  # the verdict's threshold, in paper std units
_VALUE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:(?:±|\+-|\+/-)\s*(\d+(?:\.\d+)?))?\s*$")


def parse_value(value: Any, where: str) -> tuple[float, float | None]:
    """``"5.24±0.69"``, ``"5.24 ± 0.69"``, ``[5.24, 0.69]`` → ``(mean, std)``; a bare ``5.24``
    (the paper prints no std, as for Avg. Gap) → ``(mean, None)``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected mean±std, got {value!r}.")
    if isinstance(value, (int, float)):
        return float(value), None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return float(value[0]), float(value[1])
    if isinstance(value, str):
        m = _VALUE.match(value)
        if m:
            return float(m[1]), (float(m[2]) if m[2] is not None else None)
    raise ConfigError(f"{where}: expected mean±std such as 5.24±0.69, got {value!r}.")


@configclass
class ExpectedBlock:
    """The paper's values for the rows of one forget spec (and prune variant) of a study."""

    forget: str
    citation: str
    protocol: str = ""
    variant: str = ""  # "" = the dense rows; "prune=0.95" = the rows of that prune level
    # label -> {"name": paper's row name, column -> {"mean", "std"}} (normalised in __post_init__)
    methods: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.citation.strip():
            raise ConfigError(f"The expected block for {self.forget!r} needs a citation (paper, table).")
        if not isinstance(self.methods, Mapping) or not self.methods:
            raise ConfigError(f"The expected block for {self.forget!r} needs methods: {{label: {{UA: ..., ...}}}}.")
        rows: dict[str, Any] = {}
        for label, cols in self.methods.items():
            if not isinstance(cols, Mapping):
                raise ConfigError(f"expected {self.forget} {label}: give a mapping of UA, RA, TA, MIA, avg_gap, RTE.")
            row: dict[str, Any] = {"name": str(cols.get("name", label))}
            if cols.get("source"):
                row["source"] = str(cols["source"])
            for col, value in cols.items():
                if col in ("name", "source"):
                    continue
                key = str(col).lower()
                if key not in COLUMNS:
                    raise ConfigError(f"expected {self.forget} {label}: unknown column {col!r}; "
                                      f"use {', '.join(COLUMNS.values())} (avg_gap).")
                if isinstance(value, Mapping) and set(value) == {"mean", "std"}:  # already normalised
                    mean, std = float(value["mean"]), (None if value["std"] is None else float(value["std"]))
                else:
                    mean, std = parse_value(value, f"expected {self.forget} {label} {col}")
                if std is not None and std < 0:
                    raise ConfigError(f"expected {self.forget} {label} {col}: a std cannot be negative.")
                row[key] = {"mean": mean, "std": std}
            rows[str(label)] = row
        object.__setattr__(self, "methods", rows)

    def row_label(self, label: str) -> str:
        """The study's row label for ``label`` in this block's variant (``finetune [prune=0.95]``)."""
        return f"{label} [{self.variant}]" if self.variant else label


def expected_blocks(items: Any) -> tuple[ExpectedBlock, ...]:
    from unlearnbench.core.config import from_dict

    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise ConfigError("expected must be a list of blocks, each with forget, citation and methods.")
    return tuple(b if isinstance(b, ExpectedBlock) else from_dict(ExpectedBlock, dict(b)) for b in items)


def metric_key(column: str, values: Mapping[str, Any]) -> str:
    """The measured key of a paper column: TA is the retained classes' test accuracy when the row
    has it (class-wise forgetting, as in the papers), else the test accuracy."""
    if column == "ta":
        return "test_retained_acc" if "test_retained_acc" in values else "test_acc"
    return KEYS[column]


def compare(block: Mapping[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Measured vs paper for one block (as a plain dict, e.g. from study.json) against the report's
    summary rows (``{"forget", "label", "values": {key: {"mean", "std", "n"}}}``)."""
    by_label = {r["label"]: r for r in rows if r["forget"] == block["forget"]}
    variant = block.get("variant") or ""
    out_rows = []
    for label, paper in block["methods"].items():
        row_label = f"{label} [{variant}]" if variant else label
        row = by_label.get(row_label)
        values = row["values"] if row else {}
        cells = []
        for col in COLUMNS:
            if col not in paper:
                continue
            p = paper[col]
            key = metric_key(col, values)
            m = values.get(key)
            cell: dict[str, Any] = {"column": COLUMNS[col], "key": key, "paper_mean": p["mean"], "paper_std": p["std"],
                                    "measured": m, "diff": None, "z": None, "verdict": "not run" if row is None
                                    else "not measured"}
            if col in UNJUDGED:
                if m is not None and m.get("mean") is not None and math.isfinite(m["mean"]):  # seconds -> minutes
                    m = {**m, "mean": m["mean"] / 60, **({"std": m["std"] / 60} if m.get("std") is not None else {})}
                    cell.update(measured=m, verdict=f"not compared ({UNJUDGED[col]})")
            elif m is not None and m.get("mean") is not None and math.isfinite(m["mean"]):
                diff = m["mean"] - p["mean"]
                if p["std"] is None:
                    cell.update(diff=diff, verdict="no std in paper")
                else:
                    z = diff / max(p["std"], STD_FLOOR)
                    cell.update(diff=diff, z=z, verdict="within 2 std" if abs(z) <= WITHIN else "outside")
            cells.append(cell)
        out_rows.append({"label": row_label, "name": paper.get("name", label), "run": row is not None,
                         "seeds": len(row["seeds"]) if row else 0, "cells": cells,
                         **({"source": paper["source"]} if paper.get("source") else {})})
    judged = [c for r in out_rows for c in r["cells"] if c["z"] is not None]
    return {
        "forget": block["forget"], "variant": variant, "citation": block["citation"],
        "protocol": block.get("protocol", ""), "rows": out_rows,
        "within": sum(1 for c in judged if c["verdict"] == "within 2 std"), "judged": len(judged),
    }
