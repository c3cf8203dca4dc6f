"""95 % intervals for the numbers a report shows, in closed form (no resampling).

- ``wilson(p, n)``: Wilson score interval of a proportion ``p`` (a fraction) measured on ``n``
  points (Wilson 1927). Unlike the normal ("Wald") interval it stays inside [0, 1] and is not
  empty at p = 0 or 1, which is where unlearning numbers live (UA 100 %, TPR 0).
- ``newcombe(p1, n1, p2, n2)``: interval of the difference p1 - p2 of two proportions from their
  Wilson intervals (Newcombe 1998, method 10, the "hybrid score" interval). A model and its
  retrained reference are scored on the *same* points, whose outcomes are positively correlated,
  so treating them as independent samples makes this interval wider than the paired one: a gap
  whose interval excludes 0 is beyond the evaluation-set noise, some gaps inside it may not be.
- ``t_interval(values)``: Student-t interval of a mean over seeds (n >= 2).
- ``welch(a, b)``: Welch's t interval of mean(a) - mean(b) (seeds of a method vs of retrain).
- ``mover(v1, i1, v2, i2)``: the same construction for any two estimates with intervals (AUCs,
  seed means).
- ``auc_interval(auc, n_pos, n_neg)``: Hanley & McNeil (1982) normal interval of a ROC AUC.

Everything is 95 % (``Z95`` two-sided). Functions take and return plain floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054  # the 97.5 % standard-normal quantile
LEVEL = 0.95

Interval = tuple[float, float]


def wilson(p: float, n: int, z: float = Z95) -> Interval | None:
    """Wilson score interval of a proportion ``p`` in [0, 1] observed on ``n`` points."""
    if n is None or n <= 0 or p is None or not math.isfinite(p):
        return None
    p = min(max(float(p), 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Rounding can push the bounds a hair past the proportion at p = 0 or 1.
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def mover(v1: float, i1: Interval | None, v2: float, i2: Interval | None) -> Interval | None:
    """Interval of ``v1 - v2`` from the two estimates' own intervals ("method of variance
    estimates recovery", Zou & Donner 2008); with Wilson intervals this is Newcombe's method 10."""
    if i1 is None or i2 is None:
        return None
    d = v1 - v2
    lo = d - math.sqrt((v1 - i1[0]) ** 2 + (i2[1] - v2) ** 2)
    hi = d + math.sqrt((i1[1] - v1) ** 2 + (v2 - i2[0]) ** 2)
    return lo, hi


def newcombe(p1: float, n1: int, p2: float, n2: int, z: float = Z95) -> Interval | None:
    """Newcombe's hybrid score interval of ``p1 - p2`` (fractions) for independent samples."""
    return mover(p1, wilson(p1, n1, z), p2, wilson(p2, n2, z))


def half_width(value: float, interval: Interval | None) -> float | None:
    """The larger distance from ``value`` to a bound of its interval."""
    if interval is None:
        return None
    return max(value - interval[0], interval[1] - value)


def t_quantile(df: float, level: float = LEVEL) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval | None:
    """Student-t interval of the mean of ``values`` (seeds); None with fewer than two values."""
    xs = [float(v) for v in values]
    n = len(xs)
    if n < 2:
        return None
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return mean - half, mean + half


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval | None:
    """Welch's t interval of mean(a) - mean(b); None unless both have at least two values."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        return None
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    sa = math.sqrt(sum((x - ma) ** 2 for x in a) / (len(a) - 1))
    sb = math.sqrt(sum((x - mb) ** 2 for x in b) / (len(b) - 1))
    return welch_from_stats(ma, sa, len(a), mb, sb, len(b), level)


def welch_from_stats(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int,
                     level: float = LEVEL) -> Interval | None:
    """Welch's t interval of m1 - m2 from means, sample standard deviations and sizes."""
    if n1 < 2 or n2 < 2:
        return None
    va, vb = s1 * s1 / n1, s2 * s2 / n2
    se2 = va + vb
    d = m1 - m2
    if se2 == 0:
        return d, d
    df = se2 ** 2 / ((va * va / (n1 - 1)) + (vb * vb / (n2 - 1)))
    half = t_quantile(df, level) * math.sqrt(se2)
    return d - half, d + half


def auc_interval(auc: float, n_pos: int, n_neg: int, z: float = Z95) -> Interval | None:
    """Hanley & McNeil's normal interval of a ROC AUC from ``n_pos`` positives, ``n_neg`` negatives."""
    if not n_pos or not n_neg or auc is None or not math.isfinite(auc):
        return None
    a = min(max(float(auc), 0.0), 1.0)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    half = z * math.sqrt(max(var, 0.0))
    return max(0.0, a - half), min(1.0, a + half)


def excludes_zero(interval: Interval | None) -> bool | None:
    """True when the interval lies entirely on one side of 0; None when there is no interval."""
    if interval is None:
        return None
    return interval[0] > 0 or interval[1] < 0


def fmt_interval(interval: Interval | None, digits: int = 2) -> str:
    """``[97.25, 98.99]``; ``""`` without an interval."""
    if interval is None:
        return ""
    return f"[{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
