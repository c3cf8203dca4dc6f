"""Progress that library code can report without printing anything itself.

Off by default, so library use and tests stay silent; the CLI turns it on unless ``--quiet``.
It always writes to stderr, so piped stdout stays clean. Two renderings:

- stderr is a terminal: rich progress bars (transient; nested tasks share one display);
- stderr is a file or a pipe (``nohup``, CI logs, ``2> log``): plain lines, one per milestone
  (an epoch, a finished job, an attack stage), each with what, how far, images/s, elapsed and
  ETA, because a log shows nothing of a bar for minutes and then a wall of carriage returns.

Code reports a milestone with ``task.report(text, images=n)`` (a line; on a bar, the new
description) and plain steps with ``task.advance()``; a task made with ``each=True`` prints a
line at every ``advance`` (a list of jobs, the points of an attack stage).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

_state: dict[str, Any] = {"enabled": False, "progress": None, "lines": None, "images": 0}


def count_images(n: int) -> None:
    """Training loops add the images they stepped through (the CLI's images/s at the end)."""
    _state["images"] += int(n)


def images_seen() -> int:
    return int(_state["images"])


def set_enabled(enabled: bool) -> None:
    _state["enabled"] = enabled


def is_enabled() -> bool:
    return bool(_state["enabled"])


def set_line_mode(lines: bool | None) -> None:
    """Force plain lines (True) or bars (False); None = lines exactly when stderr is no terminal."""
    _state["lines"] = lines


def line_mode() -> bool:
    if _state["lines"] is not None:
        return bool(_state["lines"])
    try:
        return not sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return True


def clock(seconds: float) -> str:
    """``83`` → ``1:23``; ``3725`` → ``1:02:05``."""
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class StagedEta:
    """Time left over stages of different cost per point, learnt from the stages already run.

    ``weights`` holds each stage's prior cost per point in any unit (AutoAttack: gradient steps per
    point: APGD-CE 100, APGD-T 9x100, ...). The seconds per unit come from what has run so far —
    the finished stages plus the running one — so the ETA of the next stages is what the machine
    showed, not the running stage's rate extrapolated (which, in AutoAttack, was half the real time:
    APGD-CE is nine times cheaper per point than APGD-T)."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = dict(weights)
        self.units = 0.0
        self.seconds = 0.0

    def finish(self, stage: str, points: int, seconds: float) -> None:
        self.units += self.weights[stage] * points
        self.seconds += seconds

    def remaining(self, stage: str, done: float, total: float, elapsed: float, later: list[str],
                  points_left: int) -> float | None:
        """Seconds left: the running ``stage`` (``done`` of ``total`` points after ``elapsed`` s),
        then the ``later`` stages on at most ``points_left`` points. None before any measurement."""
        w = self.weights[stage]
        units, seconds = self.units + w * done, self.seconds + elapsed
        if done <= 0:  # nothing of this stage finished yet: the earlier stages' rate only
            units, seconds = self.units, self.seconds
        if units <= 0 or seconds <= 0:
            return None
        rate = seconds / units
        current = rate * w * (total - done) if done > 0 else max(0.0, rate * w * total - elapsed)
        return current + rate * points_left * sum(self.weights[s] for s in later)


class _Task:
    """One unit of progress: a bar, a line printer, or (progress off) nothing."""

    # Set by the caller for a better ETA than "elapsed x left / done" (say a StagedEta's); returns
    # seconds left or None.
    eta_fn: Any = None

    def __init__(self, description: str, total: float | None, *, progress: Any = None, task_id: Any = None,
                 stream: TextIO | None = None, each: bool = False, unit: str = "") -> None:
        self.description = description
        self.total = total
        self.done = 0.0
        self.images = 0
        self.start = time.perf_counter()
        self.each = each
        self.unit = unit
        self._progress = progress
        self._id = task_id
        self._stream = stream

    def advance(self, n: float = 1) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.advance(self._id, n)
        elif self._stream is not None and self.each:
            self._line("")

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._id, description=text)

    def report(self, text: str, *, images: int = 0) -> None:
        """A milestone (say an epoch): ``images`` processed since the last one give images/s."""
        self.images += images
        if self._progress is not None:
            self._progress.update(self._id, description=f"{self.description} {text}".strip())
        elif self._stream is not None:
            self._line(text)

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.images / elapsed if elapsed > 0 else 0.0

    def _line(self, text: str) -> None:
        elapsed = time.perf_counter() - self.start
        parts = [f"{self.description}: {text}".rstrip(": ") if text else self.description]
        if self.total:
            unit = f" {self.unit}" if self.unit else ""
            parts.append(f"{self.done:g}/{self.total:g}{unit}")
        if self.images:
            parts.append(f"{self.rate():.0f} img/s")
        parts.append(f"elapsed {clock(elapsed)}")
        left = self.eta_fn(self.done, elapsed) if self.eta_fn is not None else None
        if left is not None:
            parts.append(f"ETA {clock(left)}")
        elif self.total and 0 < self.done < self.total:
            parts.append(f"ETA {clock(elapsed * (self.total - self.done) / self.done)}")
        self._stream.write(" | ".join(parts) + "\n")  # type: ignore[union-attr]
        self._stream.flush()  # type: ignore[union-attr]


@contextlib.contextmanager
def task(description: str, total: float | None, *, each: bool = False, unit: str = "") -> Iterator[_Task]:
    """A progress task; nested bar tasks share one live display."""
    if not _state["enabled"]:
        yield _Task(description, total)
        return
    if line_mode():
        yield _Task(description, total, stream=sys.stderr, each=each, unit=unit)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    outer = _state["progress"] is None
    if outer:
        _state["progress"] = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        _state["progress"].start()
    progress = _state["progress"]
    task_id = progress.add_task(description, total=total)
    try:
        yield _Task(description, total, progress=progress, task_id=task_id, each=each, unit=unit)
    finally:
        progress.remove_task(task_id)
        if outer:
            progress.stop()
            _state["progress"] = None
