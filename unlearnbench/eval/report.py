"""The typed result of an evaluation, with a lossless JSON round trip.

``values`` is flat ``{metric_key: float}`` (the MLflow metrics); ``counts`` how many points each
value rests on (``n/<key>`` for proportions: accuracies, UA, MIA-Efficacy, clean / robust
accuracy; ``<attack>/n_members`` and ``n_nonmembers`` for membership attacks; logged to MLflow
as metrics too) and ``reference_counts`` the same for the reference; ``undefined`` the values
that are not numbers and why (TPR at an FPR below 1/n_nonmembers); ``variances`` (and
``reference_variances``) a value's variance estimated from the data at evaluation time (DeLong's
for an attack's AUC, from its scores); ``interval(key)`` a 95 % interval (Wilson for proportions;
for an AUC DeLong's on the logit scale where its variance is known, else Hanley-McNeil) and ``gap_interval(key)`` one of
value - reference (``eval.intervals``): paired (Newcombe's method 10 for paired proportions, with
McNemar's test for ``beyond_noise``) where ``outcomes`` of both models on the same points gave
the discordant counts ``n/<key>/model_only`` / ``reference_only`` (``eval.paired``), else
unpaired; ``per_class`` a DataFrame
(split, class, name, n, acc[, reference_acc]); ``curves`` ROC points by name
(``{"fpr": [...], "tpr": [...]}``); ``config`` what was evaluated and how (flattened into MLflow
params); ``provenance`` git sha, versions, device, seed, host, time; ``timings`` seconds per
metric plus ``predictions`` and ``total``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from unlearnbench.core.io import atomic_write
from unlearnbench.eval import intervals as iv
from unlearnbench.eval import paired

TAG_KEYS = ("kind", "method", "dataset", "model", "forget", "seed")
PER_CLASS_COLUMNS = ["split", "class", "name", "n", "acc"]


def _clean(value: Any) -> Any:
    """JSON cannot hold NaN/inf portably: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _floats(d: dict[str, Any] | None) -> dict[str, float]:
    return {k: float("nan") if v is None else float(v) for k, v in (d or {}).items()}


def _finite(d: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (d or {}).items() if v is not None and math.isfinite(float(v))}


_TPR = re.compile(r"^(?P<prefix>.+)/tpr_at_fpr_[^/]+$")
_AUC = re.compile(r"^(?P<prefix>.+)/auc$")


def proportion_n(key: str, counts: Mapping[str, float]) -> tuple[int, float] | None:
    """(n, scale) when ``key`` is a proportion measured on n points: scale 100 for percentages,
    1 for fractions (TPRs of membership attacks, whose n is the attack's ``n_members``)."""
    n = counts.get(f"n/{key}")
    if n is not None and n == n and n > 0:
        return int(n), (1.0 if key.startswith("mia/") else 100.0)
    m = _TPR.match(key)
    if m and (n := counts.get(f"{m['prefix']}/n_members")) is not None and n == n and n > 0:
        return int(n), 1.0
    return None


def value_interval(key: str, value: float | None, counts: Mapping[str, float],
                   variances: Mapping[str, float] | None = None) -> iv.Interval | None:
    """95 % interval of ``value`` in its own unit: Wilson for proportions; for an attack's AUC
    DeLong's (logit scale, ``iv.auc_interval_delong``) when ``variances`` holds its DeLong variance
    from the scores, else Newcombe's symmetrised Hanley-McNeil from the counts alone; None for
    anything else (gaps, divergences, run time) or without counts."""
    if value is None or not math.isfinite(value):
        return None
    pn = proportion_n(key, counts)
    if pn is not None:
        n, scale = pn
        w = iv.wilson(value / scale, n)
        return None if w is None else (w[0] * scale, w[1] * scale)
    m = _AUC.match(key)
    if m:
        pos, neg = counts.get(f"{m['prefix']}/n_members"), counts.get(f"{m['prefix']}/n_nonmembers")
        if pos and neg:
            var = (variances or {}).get(key)
            if var is not None:
                return iv.auc_interval_delong(value, var, int(pos), int(neg))
            return iv.auc_interval(value, int(pos), int(neg))
    return None


def paired_table(key: str, value: float | None, counts: Mapping[str, float]) -> tuple[int, int, int, int] | None:
    """The 2x2 table (both, model only, reference only, neither) of a proportion whose model and
    reference outcomes on the same points are known (``eval.paired``); None otherwise."""
    if value is None or not math.isfinite(value):
        return None
    pn = proportion_n(key, counts)
    return None if pn is None else paired.table(key, value, pn[1], counts)


def difference_interval(key: str, value: float | None, ref: float | None, counts: Mapping[str, float],
                        ref_counts: Mapping[str, float], variances: Mapping[str, float] | None = None,
                        ref_variances: Mapping[str, float] | None = None) -> iv.Interval | None:
    """95 % interval of ``value - ref``: Newcombe's *paired* interval when the discordant counts
    are known (the reference scored on the same points, ``eval.paired``), else Newcombe / MOVER
    from both intervals as if independent (wider). ``ref_counts`` falls back to ``counts``: the
    reference is scored on the same points."""
    if value is None or ref is None:
        return None
    tab = paired_table(key, value, counts)
    if tab is not None and _consistent(tab, ref, proportion_n(key, counts)):
        scale = proportion_n(key, counts)[1]  # type: ignore[index]
        d = iv.newcombe_paired(*tab)
        return None if d is None else (d[0] * scale, d[1] * scale)
    a = value_interval(key, value, counts, variances)
    b = value_interval(key, ref, {**counts, **ref_counts}, ref_variances)
    return iv.mover(value, a, ref, b)


def _consistent(tab: tuple[int, int, int, int], ref: float, pn: tuple[int, float] | None) -> bool:
    """Whether the table's reference margin (both + reference only) is the reference value."""
    if pn is None:
        return False
    n, scale = pn
    return abs((tab[0] + tab[2]) - ref / scale * n) <= 1e-6 * max(1, n)


def mcnemar_p(key: str, value: float | None, ref: float | None, counts: Mapping[str, float]) -> float | None:
    """McNemar's exact p-value of value vs reference on the same points; None unless paired."""
    tab = paired_table(key, value, counts)
    if tab is None or ref is None or not _consistent(tab, ref, proportion_n(key, counts)):
        return None
    return iv.mcnemar_p(tab[1], tab[2])


@dataclass
class Report:
    values: dict[str, float] = field(default_factory=dict)
    per_class: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PER_CLASS_COLUMNS))
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # kind, method, dataset, model, forget, seed
    directions: dict[str, str] = field(default_factory=dict)  # value key -> higher | lower | reference
    reference_values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    counts: dict[str, int] = field(default_factory=dict)  # n/<key>, <attack>/n_members, ...
    undefined: dict[str, str] = field(default_factory=dict)  # value key -> why it is not a number
    reference_counts: dict[str, int] = field(default_factory=dict)
    # value key -> per-example outcomes (eval.paired): kept so this report, used as a reference,
    # pairs the gaps of the models compared with it
    outcomes: dict[str, paired.Outcomes] = field(default_factory=dict)
    # value key -> variance from the data (DeLong's for an AUC): the AUC interval uses it
    variances: dict[str, float] = field(default_factory=dict)
    reference_variances: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def tags(self) -> dict[str, str]:
        """MLflow tags: kind, method, dataset, model, forget, seed, git_sha; and where it ran (device,
        cpu_bf16), so a report read without its artifacts can still say what precision was used."""
        tags = {k: str(self.meta.get(k, "")) for k in TAG_KEYS}
        tags["git_sha"] = str(self.provenance.get("git_sha", "unknown"))
        if self.provenance.get("device"):
            tags["device"] = str(self.provenance["device"])
            tags["cpu_bf16"] = str(bool(self.provenance.get("cpu_bf16", False))).lower()
        return tags

    def n(self, key: str) -> int | None:
        """How many points ``key`` was measured on (a proportion's denominator), if known."""
        pn = proportion_n(key, self.counts)
        return None if pn is None else pn[0]

    def interval(self, key: str) -> iv.Interval | None:
        """95 % interval of ``values[key]`` (Wilson for proportions, DeLong or Hanley-McNeil for
        an AUC: ``value_interval``)."""
        return value_interval(key, self.values.get(key), self.counts, self.variances)

    def reference_interval(self, key: str) -> iv.Interval | None:
        return value_interval(key, self.reference_values.get(key), {**self.counts, **self.reference_counts},
                              self.reference_variances)

    def gap_interval(self, key: str) -> iv.Interval | None:
        """95 % interval of ``value - reference value`` (signed; ``gap/<key>`` is its absolute value)."""
        return difference_interval(key, self.values.get(key), self.reference_values.get(key), self.counts,
                                   self.reference_counts, self.variances, self.reference_variances)

    def gap_paired(self, key: str) -> bool:
        """Whether ``gap_interval(key)`` is paired (both models' outcomes on the same points known)."""
        return self.gap_p(key) is not None

    def gap_p(self, key: str) -> float | None:
        """McNemar's exact p-value of the gap (paired proportions only; None otherwise)."""
        return mcnemar_p(key, self.values.get(key), self.reference_values.get(key), self.counts)

    def beyond_noise(self, key: str) -> bool | None:
        """Whether the gap to the reference is larger than the noise; None when there is no
        reference value or no interval for ``key``. Paired: McNemar's exact test at 5 % *and* the
        paired interval excluding 0 (the two agree but at the margin; requiring both keeps a mark
        from standing beside an interval that touches 0). Unpaired: the interval excludes 0."""
        interval = self.gap_interval(key)
        excludes = iv.excludes_zero(interval)
        p = self.gap_p(key)
        if excludes is None or p is None:
            return excludes
        return bool(excludes and p < 0.05)

    def rows(self) -> list[tuple[str, float, float | None, float | None, str]]:
        """(key, value, reference value, |gap|, direction) for every value except the gaps."""
        out = []
        for k, v in self.values.items():
            if k.startswith("gap/"):
                continue
            ref = self.reference_values.get(k)
            gap = self.values.get(f"gap/{k}")
            out.append((k, v, ref, gap, self.directions.get(k, "")))
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per value (index: the metric key): value, its n and 95 % interval (``ci_low``,
        ``ci_high``), the reference value, |gap| and the signed gap's interval, direction."""
        rows = []
        for k, v, ref, gap, direction in self.rows():
            ci, gci = self.interval(k), self.gap_interval(k)
            rows.append((k, v, self.n(k), *(ci or (None, None)), ref, gap, *(gci or (None, None)), direction))
        frame = pd.DataFrame(rows, columns=["metric", "value", "n", "ci_low", "ci_high", "reference", "gap",
                                            "gap_ci_low", "gap_ci_high", "direction"])
        frame["n"] = frame["n"].astype("Int64")  # a count, or <NA> where the value has no n
        return frame.set_index("metric")

    # -- display (a terminal's repr(), a notebook's HTML) ----------------------------------------

    def _title(self) -> str:
        m = self.meta
        what = " ".join(p for p in (str(m.get("method") or m.get("model") or ""),
                                    f"on {m['dataset']}" if m.get("dataset") else "",
                                    f"forget {m['forget']}" if m.get("forget") else "") if p)
        return f"Report {self.name!r}" + (f": {what}" if what else "") + f" ({len(self.values)} values)"

    def __repr__(self) -> str:
        lines = [self._title()]
        shown = self.rows()
        width = max((len(r[0]) for r in shown), default=0)
        for k, v, ref, gap, _ in shown[:14]:
            ci, n = self.interval(k), self.n(k)
            cell = f"  {k:<{width}}  {_num(v)}"
            cell += f"  [{_num(ci[0])}, {_num(ci[1])}]" if ci else ""
            cell += f"  n={n}" if n is not None else ""
            cell += f"  reference {_num(ref)}  |gap| {_num(gap)}" if ref is not None else ""
            lines.append(cell)
        if len(shown) > 14:
            lines.append(f"  ... {len(shown) - 14} more: report.to_frame()")
        for key in ("utility_warning", "normalization_warning"):
            if self.config.get(key):
                lines.append(f"  warning: {self.config[key]}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        notes = "".join(f"<p><b>warning:</b> {html.escape(str(self.config[k]))}</p>"
                        for k in ("utility_warning", "normalization_warning") if self.config.get(k))
        table = self.to_frame().to_html(na_rep="", float_format=lambda v: f"{v:.4g}")
        return f"<div><p><b>{html.escape(self._title())}</b> (95 % intervals)</p>{notes}{table}</div>"

    # -- JSON -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "name": self.name,
            "meta": self.meta,
            "values": self.values,
            "directions": self.directions,
            "reference_values": self.reference_values,
            "per_class": self.per_class.to_dict(orient="records"),
            "per_class_columns": list(self.per_class.columns),
            "curves": self.curves,
            "config": self.config,
            "provenance": self.provenance,
            "timings": self.timings,
            "skipped": self.skipped,
            "counts": self.counts,
            "undefined": self.undefined,
            "reference_counts": self.reference_counts,
            "variances": self.variances,
            "reference_variances": self.reference_variances,
            # Derived (ignored when read back): for readers of the JSON that do not use this class.
            "intervals": {k: list(i) for k in self.values if (i := self.interval(k)) is not None},
            "gap_intervals": {k: {"ci": list(i), "paired": self.gap_paired(k), "mcnemar_p": self.gap_p(k),
                                  "beyond_noise": self.beyond_noise(k)}
                              for k in self.values if (i := self.gap_interval(k)) is not None},
            "outcomes": {k: o.to_json() for k, o in self.outcomes.items()},
        })

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        # A report read from a file is checked for its shape here (a TypeError, which load turns
        # into one sentence), not later where a float would meet a .get().
        for key in ("config", "provenance", "meta", "directions", "skipped", "undefined", "counts",
                    "reference_counts", "outcomes", "curves", "values", "timings", "reference_values"):
            if d.get(key) is not None and not isinstance(d[key], dict):
                raise TypeError(f"{key!r} holds {type(d[key]).__name__}, not a mapping")
        if not isinstance(d.get("name", ""), str):
            raise TypeError("'name' is not text")
        columns = d.get("per_class_columns") or PER_CLASS_COLUMNS
        per_class = pd.DataFrame(d.get("per_class") or [], columns=columns)
        curves = {k: {a: [float("nan") if x is None else float(x) for x in xs] for a, xs in c.items()}
                  for k, c in (d.get("curves") or {}).items()}
        return cls(
            values=_floats(d.get("values")), per_class=per_class, curves=curves,
            config=d.get("config") or {}, provenance=d.get("provenance") or {}, timings=_floats(d.get("timings")),
            name=d.get("name", ""), meta=d.get("meta") or {}, directions=d.get("directions") or {},
            reference_values=_floats(d.get("reference_values")), skipped=d.get("skipped") or {},
            # Reports written before counts existed read back without them (no intervals).
            counts={k: int(v) for k, v in (d.get("counts") or {}).items() if v is not None},
            undefined=dict(d.get("undefined") or {}),
            reference_counts={k: int(v) for k, v in (d.get("reference_counts") or {}).items() if v is not None},
            # Reports written before outcomes existed read back without them (unpaired gaps).
            outcomes={k: paired.Outcomes.from_json(v) for k, v in (d.get("outcomes") or {}).items()},
            # Reports written before variances existed read back without them (counts-only AUC
            # intervals).
            variances=_finite(d.get("variances")),
            reference_variances=_finite(d.get("reference_variances")),
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (temp file + rename)."""
        path = Path(path)
        with atomic_write(path, "w") as fh:
            fh.write(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Report:
        from unlearnbench.core.boundary import read_text
        from unlearnbench.core.errors import UserError

        path = Path(path)
        text = read_text(path, "Report")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError, ValueError) as exc:
            raise UserError(f"Report {str(path)!r} is not an unlearnbench report JSON ({str(exc)[:120]}).") from None
        # Any other JSON (a config, a list, ``{}``) would load as a report with no values and give
        # gaps against nothing; a report always holds its metric values.
        if not isinstance(data, dict) or not isinstance(data.get("values"), dict) or not data["values"]:
            raise UserError(f"Report {str(path)!r} is not an unlearnbench report JSON (it holds no metric values).")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"Report {str(path)!r} is not an unlearnbench report JSON ({exc}).") from None


def _num(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.2f}" if abs(v) >= 1 or v == 0 else f"{v:.4g}"
