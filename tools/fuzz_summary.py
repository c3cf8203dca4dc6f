"""Summarise a fuzz run's case log (FUZZ_STATS, written by tests/test_fuzz.py) as Markdown rows:
per test, the cases run, how many the boundary refused and how many got through to the work,
and the failures (which pytest also reports). Usage: python tools/fuzz_summary.py STATS.tsv"""

from __future__ import annotations

import collections
import sys


def main(path: str) -> int:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            test, outcome, *rest = line.rstrip("\n").split("\t")
            name = test.split("::", 1)[-1]
            counts[name][outcome] += 1
            if outcome == "FAILED":
                failures.append(f"{name}: {' '.join(rest)[:300]}")
    total = collections.Counter()
    print("| test | cases | refused (exit 0/2) | reached the work | failed |")
    print("|---|---:|---:|---:|---:|")
    for name in sorted(counts):
        c = counts[name]
        total.update(c)
        print(f"| {name} | {sum(c.values())} | {c['refused']} | {c['reached']} | {c['FAILED']} |")
    print(f"| **all** | **{sum(total.values())}** | {total['refused']} | {total['reached']} | {total['FAILED']} |")
    for f in failures[:20]:
        print(f"\n- FAILED {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
