"""Progress bars (rich) that library code can use without printing anything itself.

Bars are off by default so library use and tests stay silent; the CLI turns them on unless
``--quiet`` is given. They write to stderr, so piped stdout stays clean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_state = {"enabled": False, "progress": None}


def set_enabled(enabled: bool) -> None:
    _state["enabled"] = enabled


def is_enabled() -> bool:
    return bool(_state["enabled"])


class _Task:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, n)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._id, description=text)


@contextlib.contextmanager
def task(description: str, total: float | None) -> Iterator[_Task]:
    """A progress task; nested tasks share one live display."""
    if not _state["enabled"]:
        yield _Task(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    outer = _state["progress"] is None
    if outer:
        _state["progress"] = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        _state["progress"].start()
    progress = _state["progress"]
    task_id = progress.add_task(description, total=total)
    try:
        yield _Task(progress, task_id)
    finally:
        progress.remove_task(task_id)
        if outer:
            progress.stop()
            _state["progress"] = None
