"""One check for values that end up inside a line of another program's file (a crontab line, a
systemd unit, a shell command): no control characters.

A newline in an experiment name or a folder would end the cron line early and start a second
one that cron runs as a command of its own; a carriage return, tab or escape sequence is no
legitimate part of a name or path either. Unicode line and paragraph separators are refused
too, since some readers end lines there.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from unlearnbench.core.errors import ConfigError

_REFUSED_CATEGORIES = ("Cc", "Zl", "Zp")  # control characters, line separator, paragraph separator


def first_control(text: str) -> int | None:
    """Index of the first control character in ``text`` (None when it has none)."""
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return i
    return None


def check_plain(value: Any, what: str) -> Any:
    """Return ``value`` (a str or path) if it holds no control character, else raise a
    ``ConfigError`` naming ``what`` (e.g. ``--experiment``) and the character."""
    if value is None:
        return value
    text = str(value)
    i = first_control(text)
    if i is not None:
        raise ConfigError(f"{what} contains the control character {text[i]!r} at position {i + 1}; "
                          "names and paths here must be a single line of printable characters.")
    return value
