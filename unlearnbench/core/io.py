"""Atomic file writes, and the writable-target probe commands run before their work starts.

A crash or an error mid-write leaves the old file (or none) in place, never half a file; an
output that cannot be written (read-only folder, full disk, a file where a folder should be) is
one sentence (:class:`OutputError`), not an ``OSError`` traceback.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from unlearnbench.core.errors import OutputError


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _torch_write_error(exc: RuntimeError) -> bool:
    text = str(exc)
    return any(m in text for m in ("PytorchStreamWriter", "inline_container", "file write failed", "unexpected pos"))


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0o022)  # reading the umask means setting it; put it straight back
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """``with atomic_write(p, "w") as fh: fh.write(...)`` — ``p`` appears only if the block succeeds."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        # mkstemp makes the file 0600; the result gets the mode any new file would (0644 under
        # umask 022, so a colleague can open a shared report), or keeps the mode of the file it replaces.
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"Cannot write {path}: {_reason(exc)}; nothing was written there.") from None
    except RuntimeError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        # torch.save reports a failed write (a full disk, a file-size limit) as a RuntimeError
        # from its zip writer, not as the OSError underneath.
        if _torch_write_error(exc):
            raise OutputError(f"Cannot write {path}: the write failed (disk full or a file-size limit?); "
                              "nothing was written there.") from None
        raise
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
