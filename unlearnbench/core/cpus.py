"""How many CPUs this process may really use (stdlib only: the CLI asks before torch loads).

PyTorch's default intra-op thread count is the machine's core count. In a container limited by a
CPU quota (cgroup v2 ``cpu.max``) or a process pinned to some cores (``taskset``, Slurm, Ray),
that many threads contend for fewer CPUs: each parallel region waits for its slowest thread, and
a thread that lost its CPU stalls all of them (benchmarks/threads_oversubscription.py measures it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask), or the machine's count where unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_quota(path: Path = CGROUP_CPU_MAX) -> float | None:
    """The cgroup v2 CPU quota in CPUs (``quota / period``), or None when unlimited or unknown."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus(path: Path = CGROUP_CPU_MAX) -> int:
    """min(affinity, ceil(cgroup quota)), at least 1: the default thread count of every command."""
    n = affinity_cpus()
    quota = cgroup_quota(path)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_threads_env(environ: dict[str, str] | os._Environ | None = None) -> int | None:
    """Before torch loads: make ``usable_cpus()`` the intra-op default (``OMP_NUM_THREADS``, which
    torch reads at start-up) unless the user chose a count. Returns the count set, or None."""
    env = os.environ if environ is None else environ
    if any(v in env for v in THREAD_VARS):
        return None
    n = usable_cpus()
    for v in THREAD_VARS:
        env[v] = str(n)
    return n


def describe() -> str:
    quota = cgroup_quota()
    return (f"{usable_cpus()} usable (affinity {affinity_cpus()} of {os.cpu_count()} CPUs, cgroup quota "
            f"{'none' if quota is None else f'{quota:g} CPUs'})")
