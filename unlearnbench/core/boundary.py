"""The file and value boundary every command goes through before it does any work.

One place decides what may enter and what may be written:

- :func:`declare` takes every path a command reads (checkpoints, references, originals, ``indices:``
  files, ``--config``, studies, shadow pools, ``--weights``, crontab files) and every path it writes
  (``-o``, ``--json``, ``--save-adv``, report folders, caches, unit files) in one call, and refuses
  an output that resolves to an input (symlinks, hard links, ``./x`` vs ``x``) or to another output,
  that is a FIFO, a device or a folder, whose name is too long for the file system, or whose folder
  cannot be written. Nothing is created by the check.
- :func:`read_text` is the one reader of text files (UTF-8, a byte-order mark allowed).
- :func:`check_value` refuses control characters in a value that ends up in a line of someone
  else's file format (a cron line, a systemd unit, an MLflow tag).

Every refusal is a :class:`~unlearnbench.core.errors.UserError` subclass: one sentence, exit 2.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnbench.core.errors import ConfigError, InputError, OutputError

# --------------------------------------------------------------------------- values

# Unicode's own line and paragraph separators and the bidirectional overrides (which make a
# line read differently from what it runs) are as dangerous in a config line as "\n".
_INVISIBLE = {"\u2028", "\u2029", "\u200e", "\u200f", "\u061c"} | {chr(c) for c in range(0x202A, 0x202F)} | {
    chr(c) for c in range(0x2066, 0x206A)}


def bad_character(value: str) -> str | None:
    """The first character of ``value`` that must not reach a line of a config file, else None.

    Refused: C0 and C1 control characters (newline, tab, NUL, ESC, DEL, ...), Unicode line and
    paragraph separators, bidirectional controls, and lone surrogates (bytes that were not UTF-8
    on the command line).
    """
    for ch in value:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Zl", "Zp") or ch in _INVISIBLE:
            return ch
    return None


def check_value(value: str, what: str) -> str:
    """Return ``value`` unchanged, or raise ConfigError naming ``what`` and the offending character.

    The shared guard for anything written into a line of another program's file: a newline in a
    cron line is a second cron job, one in a unit file a second directive.
    """
    ch = bad_character(value)
    if ch is not None:
        code = f"U+{ord(ch):04X}"
        name = unicodedata.name(ch, "") if unicodedata.category(ch) != "Cs" else "a byte that is not UTF-8"
        raise ConfigError(f"{what} contains the control character {code}{f' ({name})' if name else ''}; "
                          "remove it (newlines and control characters are never accepted in a value).")
    return value


# --------------------------------------------------------------------------- ranges

# torch.manual_seed takes any 64-bit value, numpy 32 bits and MLflow stores text: [0, 2**63) is the
# range every consumer of a seed takes without wrapping or failing halfway through a study.
SEED_LIMIT = 2**63
# A study runs every method on every seed: a list this long is a typo (a pasted range), not a plan.
MAX_SEEDS = 1000
_DEVICE = re.compile(r"^(?:auto|cpu|mps|cuda(?::[0-9]{1,4})?)$")


def check_seed(value: object, what: str = "seed") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise ConfigError(f"{what} must be an integer in [0, 2^63); got {value!r}.")


def check_device(value: object, what: str = "device") -> None:
    """auto, cpu, mps or cuda[:N] — as text, before torch is asked (``meta`` holds no data)."""
    if not isinstance(value, str) or not _DEVICE.match(value.strip()):
        hint = (" ('meta' is PyTorch's shape-only device: it holds no weights)" if value == "meta" else "")
        raise ConfigError(f"{what} {value!r} is not a device this tool runs on{hint}; use auto, cpu or cuda[:N].")


def _check_seconds(value: object, what: str) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{what} is a run time and must be a finite number of seconds, zero or more; got {value!r}.")


def check_named(key: str, value: object, what: str | None = None) -> None:
    """Range checks that follow from a value's name, wherever it enters (a config key or an option):
    ``seed``/``*_seed`` in [0, 2^63), ``seeds`` lists of at most MAX_SEEDS such seeds, ``device``,
    ``*_seconds`` not negative. None (an option not given) passes."""
    if value is None:
        return
    what = what or key
    if key == "seed" or key.endswith("_seed"):
        check_seed(value, what)
    elif key == "seeds" or key.endswith("_seeds"):
        seeds = list(value) if isinstance(value, (list, tuple)) else [value]
        if len(seeds) > MAX_SEEDS:
            raise ConfigError(f"{what} lists {len(seeds)} seeds; at most {MAX_SEEDS} are accepted.")
        for s in seeds:
            check_seed(s, f"every seed in {what}")
    elif key == "device":
        check_device(value, what)
    elif key.endswith("_seconds"):
        _check_seconds(value, what)


# --------------------------------------------------------------------------- text files


def _read_bytes(path: Path, size: int, *, fifo: bool) -> bytes:
    """Up to ``size`` bytes. A FIFO is opened without blocking (a FIFO nobody writes to would
    otherwise hang the command forever) and then read normally: process substitution
    (``--config <(…)``) still works, and a FIFO without a writer reads as empty."""
    if not fifo:
        with open(path, "rb") as fh:
            return fh.read(size)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.set_blocking(fd, True)
        chunks, got = [], 0
        while got < size:
            chunk = os.read(fd, min(1 << 16, size - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | Path, what: str = "File", *, limit: int = 64 << 20) -> str:
    """The text of ``path``: UTF-8, a leading byte-order mark dropped; else one sentence naming the file.

    UTF-16 and binary files are refused, not guessed at; ``\\r\\n`` line ends read as ``\\n``.
    ``limit`` bounds the size read (a config or a deletion request is never gigabytes; a device or
    ``/dev/zero`` given by mistake must not fill the memory).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(f"{what} {str(path)!r} does not exist.") from None
    except OSError as exc:
        raise InputError(f"{what} {str(path)!r} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {str(path)!r} is a folder; give a file.")
    try:
        raw = _read_bytes(path, limit + 1, fifo=stat.S_ISFIFO(st.st_mode))
    except OSError as exc:
        raise InputError(f"{what} {str(path)!r} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    if len(raw) > limit:
        raise InputError(f"{what} {str(path)!r} is larger than {limit >> 20} MiB; that is not a text input of this tool.")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{what} {str(path)!r} is UTF-16 text; save it as UTF-8.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); "
                         "save it as UTF-8.") from None
    if "\x00" in text:
        raise InputError(f"{what} {str(path)!r} holds NUL bytes; it is binary, not text.")
    return text.replace("\r\n", "\n")


# --------------------------------------------------------------------------- paths


def spec_paths(*specs: Any) -> list[Path]:
    """The files that forget specs read: ``indices:FILE`` names a deletion request, an input.
    A spec is text or an already parsed ``ForgetSpec`` (``kind``, ``path``)."""
    out = []
    for spec in specs:
        if isinstance(spec, str) and spec.strip().startswith("indices:"):
            out.append(Path(spec.strip()[len("indices:"):]))
        elif getattr(spec, "kind", None) == "indices" and getattr(spec, "path", None):
            out.append(Path(spec.path))
    return out


def check_input(path: str | Path, what: str = "Input") -> None:
    """A path that cannot even be looked at (a name too long, a symlink loop, a folder we may not
    enter, a control character) is one sentence here; a missing file is left to its reader, which
    says what kind of file was expected."""
    text = str(path)
    check_value(text, f"{what} {text[:60]!r}")
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise InputError(f"{what} {text[:80]!r}{'…' if len(text) > 80 else ''} cannot be read "
                         f"({exc.strerror or type(exc).__name__}).") from None
    except ValueError:  # an embedded NUL, caught by check_value already; kept for safety
        raise InputError(f"{what} {text[:80]!r} is not a valid path.") from None


@dataclass(frozen=True)
class Output:
    """One path a command writes: ``option`` names it in messages; ``folder`` for report folders."""

    option: str
    path: str | Path | None
    folder: bool = False


def _identity(path: Path) -> tuple[str, tuple[int, int] | None]:
    """How two spellings of one file are recognised: the resolved path and (device, inode)."""
    resolved = os.path.realpath(path)
    try:
        st = os.stat(path)
        ino = (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        ino = None
    return resolved, ino


def _same(a: Path, b: Path) -> bool:
    ra, ia = _identity(a)
    rb, ib = _identity(b)
    return ra == rb or (ia is not None and ia == ib)


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of ``path`` that exists (a file or a folder; ``/`` at worst)."""
    ancestor = path.parent
    while ancestor != ancestor.parent:
        try:
            os.lstat(ancestor)
            return ancestor
        except OSError:
            ancestor = ancestor.parent
    return ancestor


def _name_limits(folder: Path) -> tuple[int, int]:
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def check_output(path: str | Path, *, inputs: Iterable[str | Path | None] = (), folder: bool = False,
                 option: str = "output") -> Path:
    """Check before the work that ``path`` can be written; never leaves anything behind.

    Refuses an output that is one of ``inputs`` (``-o`` = ``-c`` would overwrite the model being
    read), anything but a regular file where a file goes (a folder, a FIFO, a device: writing there
    would hang or replace it), a file where a folder goes, a path under a file, a name longer than
    the file system takes, and a folder that does not take a new file (read-only or not ours): the
    nearest existing ancestor gets a temporary file created and removed again, the only test that
    also holds for root on a read-only mount.
    """
    if isinstance(path, str) and not path.strip():
        raise OutputError(f"{option} is empty; give a path.")
    # No expanduser: the shell expands ~, and the writer takes the path as given; checking an
    # expanded path would check another file than the one written (and ~nouser raises).
    path = Path(path)
    check_value(str(path), f"{option} {str(path)!r}")
    for src in inputs:
        if src is not None and _same(path, Path(src)):
            raise OutputError(f"{option} {path} is also an input of this command; write to another path.")
    ancestor = _existing_ancestor(path)
    name_max, path_max = _name_limits(ancestor)
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise OutputError(f"{option}: the name {part[:40]!r}… is longer than the {name_max} bytes "
                              "the file system takes; choose a shorter name.")
    # The temporary file atomic_write creates is ".NAME.RANDOM.tmp": its name must fit too.
    if not folder and len(os.fsencode(path.name)) + 20 > name_max:
        raise OutputError(f"{option}: the name {path.name[:40]!r}… is too long for the file system "
                          f"({name_max} bytes with room for a temporary name); choose a shorter name.")
    if len(os.fsencode(os.path.abspath(path))) >= path_max:
        raise OutputError(f"{option}: the path is longer than the {path_max} bytes the system takes.")
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # the latter: a path under a file, said below
        st = None
    except OSError as exc:
        raise OutputError(f"{option} {path} cannot be used ({exc.strerror or type(exc).__name__}).") from None
    if st is not None:
        if folder and not stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{option} {path} is a file; it must be a folder (or not exist yet).")
        if not folder and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{option} {path} is a folder; give a file path.")
        if not folder and not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if (
                stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) else "a socket" if stat.S_ISSOCK(
                st.st_mode) else "not a regular file"
            raise OutputError(f"{option} {path} is {kind}; give a regular file path.")
    if folder and st is not None:
        ancestor = path
    if not ancestor.is_dir():
        raise OutputError(f"{option} {path} cannot be created: {ancestor} is a file, not a folder.")
    try:
        before = os.stat(ancestor)
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".unlearnbench-probe-")
    except OSError as exc:
        raise OutputError(f"{option} {path} cannot be written: {ancestor} is not writable "
                          f"({exc.strerror or type(exc).__name__}).") from None
    os.close(fd)
    os.unlink(probe)
    try:  # the probe leaves no trace, not even a new modification time on the folder
        os.utime(ancestor, ns=(before.st_atime_ns, before.st_mtime_ns))
    except OSError:
        pass
    if st is not None and not folder and not os.access(path, os.W_OK):
        raise OutputError(f"{option} {path} exists and is read-only; remove it or write elsewhere.")
    return path


def declare(*, inputs: Iterable[str | Path | None] = (), outputs: Iterable[Output | tuple] = (),
            specs: Iterable[Any] = ()) -> None:
    """Check a command's whole file boundary in one call, before any work.

    ``inputs`` are the paths it reads, ``specs`` its forget specs, as text or parsed (an
    ``indices:FILE`` is an input too; a parsed spec is not parsed again), ``outputs`` what it writes (:class:`Output` or ``(option, path, folder)``). Besides each
    output's own checks (:func:`check_output`), two outputs may not be one file.
    """
    ins = [Path(p) for p in inputs if p is not None] + spec_paths(*specs)
    for path in ins:
        check_input(path)
    outs = [o if isinstance(o, Output) else Output(*o) for o in outputs]
    outs = [o for o in outs if o.path is not None]
    for o in outs:
        check_output(o.path, inputs=ins, folder=o.folder, option=o.option)
    for i, a in enumerate(outs):
        for b in outs[i + 1:]:
            if _same(Path(a.path), Path(b.path)):
                raise OutputError(f"{a.option} and {b.option} are the same path ({a.path}); give two paths.")
