"""Run independent jobs in-process or on Ray tasks: the same job function, one flag.

Jobs must be picklable top-level functions with picklable arguments, and must not write to the
MLflow SQLite store themselves (SQLite locks under concurrent writers): they return results and
the driver logs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from unlearnbench.core.config import configclass
from unlearnbench.core.errors import ConfigError, UserError
from unlearnbench.core.progress import task
from unlearnbench.core.runtime import pinned_threads

log = logging.getLogger(__name__)
R = TypeVar("R")


@configclass
class ExecutorConfig:
    kind: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # None: start a local Ray; "auto" or ray://host:port for a cluster
    num_cpus: float = 1.0  # resources requested per job
    num_gpus: float = 0.0
    # Intra-op threads every job runs with, on both executors (None: the CPUs a job reserves,
    # rounded down, at least 1). The thread count changes CPU results, so it is pinned per job
    # rather than inherited from the process: the same study gives the same numbers on both.
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.num_cpus <= 0 or self.num_gpus < 0:
            raise ConfigError("num_cpus must be positive and num_gpus non-negative.")
        if self.threads is not None and (isinstance(self.threads, bool) or self.threads < 1):
            raise ConfigError(f"threads must be a whole number of at least 1; got {self.threads}.")

    @property
    def threads_per_job(self) -> int:
        return self.threads if self.threads is not None else max(1, int(self.num_cpus))


@dataclass
class JobOutcome:
    """A job's return value, or the error it raised (one failing job never stops the others)."""

    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _safe_call(fn: Callable[..., R], args: tuple) -> JobOutcome:
    try:
        return JobOutcome(fn(*args))
    except Exception as exc:  # recorded and reported by the driver
        return JobOutcome(error=f"{type(exc).__name__}: {exc}")


def _pinned_call(fn: Callable[..., R], args: tuple, threads: int) -> JobOutcome:
    """One job with its intra-op thread count pinned (and the caller's restored afterwards):
    in-process, the driver may run with any count; on Ray, workers start with OMP_NUM_THREADS
    set from their CPU reservation. Either way the job sees ``threads``."""
    with pinned_threads(threads):
        return _safe_call(fn, args)


def run_jobs(
    fn: Callable[..., R],
    jobs: Sequence[tuple],
    config: ExecutorConfig | None = None,
    description: str = "jobs",
    on_result: Callable[[int, JobOutcome], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    weights: Sequence[float] | None = None,
) -> list[JobOutcome]:
    """Run ``fn(*args)`` for every ``args`` in ``jobs``; results keep the order of ``jobs``.

    Every job runs with ``config.threads_per_job`` intra-op threads, whichever executor runs it.

    ``on_result(i, outcome)`` is called on the driver as each job finishes, so results can be
    logged (and a study resumed) even if a later job is interrupted. ``on_start(i)`` is called on
    the driver just before job ``i`` runs in-process (local executor only: Ray schedules its jobs
    on workers, out of the driver's sight).

    ``weights``: each job's relative cost (say its epochs), for an ETA that learns the seconds per
    unit of cost from the jobs finished so far instead of assuming every job costs the same.
    """
    config = config or ExecutorConfig()
    threads = config.threads_per_job
    results: list[JobOutcome | None] = [None] * len(jobs)
    cost = [float(w) for w in weights] if weights is not None else [1.0] * len(jobs)
    finished: set[int] = set()
    with task(description, len(jobs), each=True, unit="jobs") as bar:
        bar.eta_fn = lambda done, elapsed: weighted_eta(cost, finished, elapsed)
        if config.kind == "local":
            for i, args in enumerate(jobs):
                if on_start:
                    on_start(i)
                results[i] = _pinned_call(fn, args, threads)
                finished.add(i)
                if on_result:
                    on_result(i, results[i])
                bar.advance()
        else:
            ray = _ray()
            if not ray.is_initialized():
                try:
                    ray.init(address=config.ray_address, include_dashboard=False, log_to_driver=False,
                             ignore_reinit_error=True)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise UserError(f"Cannot connect to Ray at {config.ray_address or 'a new local cluster'} ({exc}).") from None
            remote = ray.remote(num_cpus=config.num_cpus, num_gpus=config.num_gpus)(_pinned_call)
            pending = {remote.remote(fn, args, threads): i for i, args in enumerate(jobs)}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        i = pending.pop(ref)
                        try:
                            results[i] = ray.get(ref)
                        except Exception as exc:  # the worker died (OOM, lost node): only this job failed
                            results[i] = JobOutcome(error=f"{type(exc).__name__}: {str(exc).strip()[:500]}")
                        finished.add(i)
                        if on_result:
                            on_result(i, results[i])
                        bar.advance()
            except BaseException:
                # Ctrl-C (or a failing on_result) on the driver: do not leave the cluster busy.
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
    return [r for r in results if r is not None]


def weighted_eta(cost: Sequence[float], finished: set[int], elapsed: float) -> float | None:
    """Seconds left: elapsed x (cost of the jobs left / cost of the jobs finished); None before
    the first job finishes. (On Ray, jobs run in parallel: this is a bound, the queue's work.)"""
    done = sum(cost[i] for i in finished)
    if done <= 0:
        return None
    return elapsed * (sum(cost) - done) / done


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("The Ray executor needs the ray extra: pip install 'unlearnbench[ray]'.") from None
    return ray
