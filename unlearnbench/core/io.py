"""Atomic file writes, and the writable-target probe commands run before their work starts.

A crash or an error mid-write leaves the old file (or none) in place, never half a file; an
output that cannot be written (read-only folder, full disk, a file where a folder should be) is
one sentence (:class:`OutputError`), not an ``OSError`` traceback.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from unlearnbench.core.errors import OutputError


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """``with atomic_write(p, "w") as fh: fh.write(...)`` — ``p`` appears only if the block succeeds."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"Cannot write {path}: {_reason(exc)}; nothing was written there.") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_writable(
    path: str | Path, *, inputs: Iterable[str | Path | None] = (), folder: bool = False, option: str = "output"
) -> Path:
    """Check before the work that ``path`` can be written; never leaves anything behind.

    Refuses an output that is one of the command's ``inputs`` (``-o`` = ``-c`` would overwrite the
    model being read), a folder where a file is meant (or a file where a folder is), a path under a
    file, and a folder that does not take a new file (read-only or not ours): the nearest existing
    ancestor gets a temporary file created and removed again, which is the only test that also
    holds for root on a read-only mount.
    """
    path = Path(path).expanduser()
    for src in inputs:
        if src is not None and _same(path, Path(src)):
            raise OutputError(f"{option} {path} is also an input of this command; write to another path.")
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError(f"{option} {path} is a file; it must be a folder (or not exist yet).")
        if not folder and path.is_dir():
            raise OutputError(f"{option} {path} is a folder; give a file path.")
    ancestor = path if folder and path.is_dir() else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{option} {path} cannot be created: {ancestor} is a file, not a folder.")
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".unlearnbench-probe-")
    except OSError as exc:
        raise OutputError(f"{option} {path} cannot be written: {ancestor} is not writable ({_reason(exc)}).") from None
    os.close(fd)
    os.unlink(probe)
    if path.exists() and not path.is_dir() and not os.access(path, os.W_OK):
        raise OutputError(f"{option} {path} exists and is read-only; remove it or write elsewhere.")
    return path
