"""The test suite's cost against an earlier commit's, side by side (issue #19: `make test` at most
10 % slower for the new tests).

Both suites run *at the same time* on this machine (a worktree of ``--baseline`` next to this
checkout), each with one intra-op thread, so they share whatever else the machine is doing; the
script prints each suite's wall time, CPU time (user + sys, children included), test count and
in-test time (pytest's junit durations), their ratios, and the in-test time of the files named by
``--attribute`` (the tests an issue added) as a share of the baseline suite. The shared machine
stretches both suites alike; the per-file times still move ±30 % with the load, which the
printout says.

    python benchmarks/test_suite_time.py --baseline af7c26d \\
        --attribute tests/eval/test_stats_properties.py tests/eval/test_metamorphic.py ...
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _start(tree: Path, junit: Path, log: Path, home: Path, select: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=3600", f"--junitxml={junit}", *select]
    return subprocess.Popen(cmd, cwd=tree, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _per_file(junit: Path) -> tuple[dict[str, float], int]:
    """In-test seconds per test file, and the number of tests that ran (skips left out)."""
    seconds: dict[str, float] = collections.defaultdict(float)
    ran = 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        ran += 1
        seconds[case.get("classname", "?").replace(".", "/") + ".py"] += float(case.get("time") or 0)
    return seconds, ran


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", required=True, help="the commit to compare with (e.g. the one an issue was filed at)")
    ap.add_argument("--attribute", nargs="*", default=[], help="test files whose in-test time is attributed to a change")
    ap.add_argument("--select", nargs="*", default=[], help="pytest arguments for both suites (default: the whole suite)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="suite-time-") as tmp_name:
        tmp = Path(tmp_name)
        base = tmp / "baseline"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base), args.baseline], cwd=ROOT, check=True)
        try:
            venv = ROOT / ".venv"
            if venv.exists():
                (base / ".venv").symlink_to(venv)
            t0 = time.perf_counter()
            procs = {name: _start(tree, tmp / f"{name}.xml", tmp / f"{name}.log", tmp / f"home-{name}", args.select)
                     for name, tree in (("baseline", base), ("current", ROOT))}
            # wait4 gives each child's own rusage (its waited-for children included), so the two
            # suites' CPU times are told apart although they run at once
            cpu, wall = {}, {}
            pending = {p.pid: name for name, p in procs.items()}
            while pending:
                pid, status, usage = os.wait4(-1, 0)
                if pid in pending:
                    name = pending.pop(pid)
                    cpu[name] = usage.ru_utime + usage.ru_stime
                    wall[name] = time.perf_counter() - t0
                    procs[name].returncode = os.waitstatus_to_exitcode(status)
            files = {name: _per_file(tmp / f"{name}.xml") for name in procs}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    for name in ("baseline", "current"):
        secs, ran = files[name]
        print(f"{name:9s} exit {procs[name].returncode}  tests {ran:5d}  wall {wall[name]:7.0f} s  "
              f"CPU {cpu[name]:7.0f} s  in-test {sum(secs.values()):7.0f} s")
    b, c = files["baseline"][0], files["current"][0]
    print(f"ratio current/baseline: wall {wall['current'] / wall['baseline']:.2f}, CPU {cpu['current'] / cpu['baseline']:.2f}, "
          f"in-test {sum(c.values()) / sum(b.values()):.2f}")
    if args.attribute:
        added = {f: c.get(f, 0.0) - b.get(f, 0.0) for f in args.attribute}
        for f, s in added.items():
            print(f"  {f}: +{s:.1f} s")
        total = sum(added.values())
        print(f"attributed: +{total:.1f} s in-test = {100 * total / sum(b.values()):.1f} % of the baseline suite's "
              "in-test time (per-file times move about ±30 % with the machine's load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
