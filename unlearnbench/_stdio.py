"""Standard output that can fail: closed (``>&-``), a reader gone (``| head -1``), a full disk
(``> /dev/full``). Kept free of imports beyond the standard library: ``__main__`` uses it before
anything else loads.

:class:`Watched` wraps ``sys.stdout`` and remembers the OSError a write or flush raised, so the CLI
can tell "standard output failed" (one sentence, or silence for a closed pipe) from a bug.
"""

from __future__ import annotations

import errno
import sys
from typing import Any


class _Closed:
    """Stands in for a stdout the caller closed: every write fails as writing to fd 1 would."""

    encoding = "utf-8"
    errors = "strict"

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


class Watched:
    """A transparent proxy of a text stream that records the first OSError of a write or flush."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self._inner.write(text)
        except OSError as exc:
            self.failure = self.failure or exc
            raise

    def flush(self) -> None:
        try:
            self._inner.flush()
        except OSError as exc:
            self.failure = self.failure or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def ensure_streams() -> None:
    """A closed stdout or stderr (``>&-``) is ``None`` in Python; give each a stand-in that fails
    on use (stdout) or discards (stderr, where nothing else could be said anyway)."""
    import os

    if sys.stdout is None:
        sys.stdout = _Closed()  # type: ignore[assignment]
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
