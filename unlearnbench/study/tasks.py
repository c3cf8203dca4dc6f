"""Study tasks (``classification``, ``generation``) as a registry: each task registers, at the
definition of its study driver, how to read its study file, which executors run its jobs and which
study overrides apply to it. Loading and running a study look the task up (the study file's
``task:`` key, default ``classification``; a config object by its type) instead of branching on
task names, so the API and the CLI take one path for every task.

A task's driver plans its jobs, runs them on ``core.executor`` and records them in MLflow keyed so
that running a study again resumes it (``study.run`` for classification, ``study.generation``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnbench.core.config import load_yaml
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.registry import Registry

DEFAULT_TASK = "classification"


@dataclass(frozen=True)
class StudyTask:
    """``from_dict(data, **overrides)`` builds the task's study config, checked in full before any
    work; ``run(config, **kwargs)`` runs or resumes it and returns a ``study.run.StudyResult``;
    ``executors`` the ``core.executor`` kinds its jobs run on. Overrides of a study's keys apply
    where ``config_type`` has the key."""

    name: str
    config_type: type
    from_dict: Callable[..., Any]
    run: Callable[..., Any]
    executors: tuple[str, ...] = ("local", "ray")
    summary: str = ""


STUDY_TASKS: Registry[StudyTask] = Registry("study tasks", entry_point_group="unlearnbench.study_tasks")


def register_task(name: str, *, config_type: type, from_dict: Callable[..., Any],
                  executors: tuple[str, ...] = ("local", "ray"), summary: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator on a task's study driver: ``@register_task("generation", config_type=..., from_dict=...)``."""

    def deco(run: Callable[..., Any]) -> Callable[..., Any]:
        STUDY_TASKS.add(name, StudyTask(name, config_type, from_dict, run, tuple(executors),
                                        summary or (run.__doc__ or "").strip().split("\n")[0]))
        return run

    return deco


def task_named(name: Any) -> StudyTask:
    if not isinstance(name, str) or name not in STUDY_TASKS:
        raise ConfigError(f"Unknown study task {name!r}; the known tasks are {', '.join(STUDY_TASKS.names())}.")
    return STUDY_TASKS.get(name)


def task_of(config: Any) -> StudyTask:
    """The task whose study config ``config`` is."""
    for entry in STUDY_TASKS.entries():
        if isinstance(config, entry.obj.config_type):
            return entry.obj
    raise ConfigError(f"{type(config).__name__} is not a study config; build one with load_study or study_from_data.")


def study_from_data(data: Mapping[str, Any], **overrides: Any) -> Any:
    """A study config from a study file's mapping (its ``task:`` picks the task), with overrides
    (``None`` = not given); an override of a key the task's study does not have (``subset`` for a
    generation study) is refused in one sentence."""
    if not isinstance(data, Mapping):
        raise ConfigError("A study file must be a mapping of keys (name, methods, forget, ...).")
    task = task_named(data.get("task", DEFAULT_TASK))
    given = {k: v for k, v in overrides.items() if v is not None}
    keys = {f.name for f in dataclasses.fields(task.config_type)}
    extra = [k for k in given if k not in keys]
    if extra:
        raise ConfigError(f"--{extra[0].replace('_', '-')} does not apply to a {task.name} study.")
    body = {k: v for k, v in data.items() if not (k == "task" and task.name == DEFAULT_TASK)}
    return task.from_dict(body, **given)


def study_path(path_or_name: str | Path) -> Path:
    """A study file, or a shipped study by name (``examples()``)."""
    from unlearnbench.study.config import EXAMPLES_DIR, examples

    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = EXAMPLES_DIR / f"{path_or_name}.yaml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"Study {str(path_or_name)!r} is neither a file nor a shipped example; "
                      f"examples: {', '.join(examples())}.")


def load_study(path_or_name: str | Path, **overrides: Any) -> Any:
    """A study (YAML file or shipped name) of any task, checked in full before anything trains."""
    return study_from_data(load_yaml(study_path(path_or_name)), **overrides)


def check_executor_kind(config: Any, kind: str) -> None:
    task = task_of(config)
    if kind not in task.executors:
        raise ConfigError(f"A {task.name} study runs on the {' or '.join(task.executors)} executor, not {kind}.")


def run_study(config: Any, **kwargs: Any) -> Any:
    """Run or resume a study of any task (see its driver for ``kwargs``)."""
    executor = kwargs.get("executor")
    if executor is not None:
        check_executor_kind(config, executor.kind)
    return task_of(config).run(config, **kwargs)
