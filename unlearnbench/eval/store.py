"""The MLflow store itself, before MLflow opens it: where it is, whether it can be used (a
server that answers, a SQLite file that is an MLflow store and writable), and the lock that
serialises its creation. Split from ``eval.tracking``, which turns results into runs."""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from unlearnbench.core.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` store (an input no output may overwrite), else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with a clear sentence when the tracking store cannot be used."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
                if resp.status >= 400:
                    raise OSError(f"HTTP {resp.status}")
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(
                f"MLflow server {uri} is unreachable ({reason}); start it or pass "
                f"--tracking-uri {DEFAULT_URI} to log locally."
            ) from None
    elif uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if db.parent != Path("") and not db.parent.exists():
            raise UserError(f"Folder {db.parent} for the MLflow store {uri} does not exist; create it first.")
        _check_sqlite_writable(db, uri)
    elif uri.startswith("file:") or "://" not in uri:
        pass
    else:
        scheme = uri.split("://", 1)[0]
        if scheme not in ("postgresql", "mysql", "mssql", "databricks"):
            raise UserError(f"Unsupported tracking URI {uri!r}; use sqlite:///mlflow.db or http://host:port.")


def _check_sqlite_writable(db: Path, uri: str) -> None:
    """A SQLite store that is locked, read-only or not a database fails here, in one sentence.

    Otherwise MLflow finds out at its first write, after the training, and SQLAlchemy logs a page
    of errors. ``BEGIN IMMEDIATE`` takes the write lock SQLite would need and gives it back.
    """

    from unlearnbench.core.boundary import check_output

    if db.is_dir():
        raise UserError(f"MLflow store {uri} is a folder; point --tracking-uri at a .db file.")
    if not db.exists():
        check_output(db, option=f"MLflow store {uri}:")
        return
    with store_lock(db, uri, create=False):
        _probe_sqlite(db, uri)


# Tables every MLflow SQLite store has; a database with tables but without these is another
# program's, and MLflow would add its schema to it (an alembic migration) before failing.
_MLFLOW_TABLES = {"alembic_version", "experiments", "runs"}


def _probe_sqlite(db: Path, uri: str) -> None:
    import sqlite3

    try:
        # Read-only first: whether this is an MLflow store is decided without changing the file.
        con = sqlite3.connect(f"file:{quote_path(db)}?mode=ro", uri=True, timeout=2.0)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        tables = None if "locked" in str(exc) or "busy" in str(exc) else set()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"MLflow store {uri} is not an SQLite database ({exc}); pass another --tracking-uri.") from None
    if tables and not _MLFLOW_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:4]) + (", …" if len(tables) > 4 else "")
        raise UserError(f"MLflow store {uri} is an SQLite database of another program (tables {shown}), not an "
                        "MLflow store; it was left unchanged — pass another --tracking-uri.")
    try:
        con = sqlite3.connect(f"file:{quote_path(db)}?mode=rw", uri=True, timeout=2.0)
        try:
            con.execute("PRAGMA schema_version").fetchone()
            con.execute("BEGIN IMMEDIATE")
            con.rollback()
        finally:
            con.close()
    except sqlite3.OperationalError as exc:
        reason = str(exc)
        if "locked" in reason or "busy" in reason:
            raise UserError(
                f"MLflow store {uri} is locked by another process; wait for it to finish or pass another --tracking-uri."
            ) from None
        raise UserError(f"MLflow store {uri} cannot be written ({reason}); pass a writable --tracking-uri.") from None
    except sqlite3.DatabaseError as exc:
        raise UserError(f"MLflow store {uri} is not an SQLite database ({exc}); pass another --tracking-uri.") from None


def quote_path(path: Path) -> str:
    """A path as SQLite's ``file:`` URI takes it (``?`` and ``#`` in a name would end the path)."""
    import urllib.parse

    return urllib.parse.quote(str(path.absolute()))


@contextlib.contextmanager
def store_lock(db: Path, uri: str, *, create: bool = True, wait: float = 120.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a SQLite store's file while MLflow creates or migrates it.

    Four processes that start on a new store at once otherwise all run MLflow's schema migration
    and three fail ("duplicate column name") and lose their runs. ``flock`` locks are separate from
    the POSIX byte-range locks SQLite itself takes, so this never blocks or breaks SQLite's own
    locking; ``create`` makes the empty file (SQLite takes an empty file as a new database).
    """
    import fcntl
    import time

    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(db, flags, 0o666)
    except FileNotFoundError:
        yield
        return
    except OSError:
        try:  # a read-only store can still be probed (and refused in one sentence) under a shared read lock
            fd = os.open(db, os.O_RDONLY)
        except OSError as exc:
            raise UserError(f"MLflow store {uri} cannot be opened ({exc.strerror}); pass another --tracking-uri.") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UserError(f"MLflow store {uri} has been set up by another process for over {wait:.0f} s; "
                                    "wait for it to finish or pass another --tracking-uri.") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the flock
