"""When a schedule fires: ``--every`` periods, cron expressions (croniter) and the calendar
expressions of systemd timers, and their next run times."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from unlearnbench.core.errors import ConfigError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``24h``, ``30m``, ``1h30m``, ``10s``, ``0.5s`` → seconds."""
    compact = text.replace(" ", "").lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ConfigError(f"Bad interval {text!r}: write it like 24h, 30m, 1h30m or 10s.")
    seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigError(f"Bad interval {text!r}: it must be longer than zero.")
    return seconds


# (name with its article, lowest, highest) of the five fields, for error messages.
_CRON_FIELDS = (("a minute", 0, 59), ("an hour", 0, 23), ("a day of the month", 1, 31), ("a month", 1, 12),
                ("a day of the week", 0, 7))
_CRON_MACROS = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
_CRON_TOKEN = re.compile(r"^[0-9a-z*,/-]+$")
# Names cron knows (month and weekday fields only); croniter would also take L, W, #, ?.
_CRON_WORDS = {3: set("jan feb mar apr may jun jul aug sep oct nov dec".split()),
               4: set("sun mon tue wed thu fri sat".split())}


@dataclass(frozen=True)
class CronSpec:
    """A five-field cron expression (or ``@daily``-style macro), checked and evaluated with
    ``croniter`` (Vixie semantics: when both day fields are restricted, either may match)."""

    text: str

    def next_after(self, t: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after ``t`` (same time zone as ``t``)."""
        from croniter import croniter

        return croniter(self.text, t).get_next(dt.datetime)

    def next_times(self, t: dt.datetime, n: int = 3) -> list[dt.datetime]:
        from croniter import croniter

        it = croniter(self.text, t)
        return [it.get_next(dt.datetime) for _ in range(n)]


def parse_cron(text: str) -> CronSpec:
    """Check ``text`` and return it as a :class:`CronSpec`; a mistake is one sentence naming the
    field, e.g. "'24' is not an hour (0-23)"."""
    from croniter import croniter

    expr = " ".join(text.strip().lower().split())
    if expr.startswith("@"):
        if expr not in _CRON_MACROS:
            raise ConfigError(f"Bad cron expression {text!r}: use five fields or one of {', '.join(sorted(_CRON_MACROS))}.")
        return CronSpec(expr)
    parts = expr.split()
    if len(parts) != 5:
        raise ConfigError(f"Bad cron expression {text!r}: give five fields, e.g. \"0 6 * * *\" (06:00 daily).")
    for i, (part, (what, lo, hi)) in enumerate(zip(parts, _CRON_FIELDS, strict=True)):
        # croniter also takes extensions cron does not (L, #, ?), and reads a backwards range as
        # wrapping around; cron rejects both.
        if any(a.isdigit() and b.isdigit() and int(a) > int(b) for a, b in re.findall(r"(\w+)-(\w+)", part)):
            raise ConfigError(f"Bad cron expression {text!r}: the range {part!r} runs backwards.")
        alone = " ".join(p if j == i else "*" for j, p in enumerate(parts))
        words = set(re.findall(r"[a-z]+", part))
        if not _CRON_TOKEN.match(part) or not words <= _CRON_WORDS.get(i, set()) or not croniter.is_valid(alone):
            raise ConfigError(f"Bad cron expression {text!r}: {part!r} is not {what} ({lo}-{hi}).")
    if not croniter.is_valid(expr):
        raise ConfigError(f"Bad cron expression {text!r}: croniter rejects it; check each field.")
    check_fires(expr, text)
    return CronSpec(expr)


FIRE_WITHIN_YEARS = 5


def check_fires(expr: str, text: str, now: dt.datetime | None = None) -> None:
    """Refuse an expression with no matching minute in the next five years (``30 2 30 2 *``:
    30 February). croniter bounds its search by ``max_years_between_matches``."""
    from croniter import CroniterBadDateError, croniter

    try:
        croniter(expr, now or dt.datetime.now(), max_years_between_matches=FIRE_WITHIN_YEARS).get_next(dt.datetime)
    except CroniterBadDateError:
        raise ConfigError(f"Cron expression {text!r} never fires within the next {FIRE_WITHIN_YEARS} years "
                          "(a date that does not exist?); check the day and month fields.") from None


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def on_calendar(every_s: float, delay_s: float = 0.0) -> str:
    """systemd ``OnCalendar=`` for "every ``every_s``, ``delay_s`` into each period": periods that
    divide a minute, an hour or a day, or one week (from Monday 00:00); the offset counts from the
    start of each period. Calendar times keep their place across reboots and logins."""
    s, d = int(round(every_s)), int(round(delay_s))
    if s != every_s or d != delay_s or s < 1:
        raise ConfigError("--every and --delay must be whole seconds for a systemd timer; use --foreground "
                          "for shorter or fractional intervals.")
    if d >= s:
        raise ConfigError(f"--delay must be shorter than --every ({s} s): it is the offset within each period.")
    hh, mm, ss = d // 3600 % 24, d // 60 % 60, d % 60
    if s == 604800:
        return f"{_WEEKDAYS[d // 86400]} *-*-* {hh:02d}:{mm:02d}:{ss:02d}"
    if s == 86400:
        return f"*-*-* {hh:02d}:{mm:02d}:{ss:02d}"
    if 86400 % s == 0 and s % 3600 == 0:
        return f"*-*-* {hh:02d}/{s // 3600}:{mm:02d}:{ss:02d}"
    if 3600 % s == 0 and s % 60 == 0:
        return f"*-*-* *:{mm:02d}/{s // 60}:{ss:02d}"
    if 60 % s == 0:
        return f"*-*-* *:*:{ss:02d}/{s}"
    raise ConfigError(f"--every {s} s does not divide a day into whole minutes or hours (e.g. 15m, 1h, 6h, 24h, "
                      "7d); use --cron for other periods.")


def next_runs(*, cron: str | None = None, every_s: float | None = None, delay_s: float = 0.0,
              now: dt.datetime | None = None, n: int = 3, calendar: bool = True) -> list[dt.datetime]:
    """When the schedule runs next: cron's next matching minutes, or for ``--every`` the next
    times of its calendar (periods counted from local midnight, Monday for a week); with
    ``calendar=False`` (the foreground loop) ``delay_s`` from now and then every ``every_s``."""
    now = now or dt.datetime.now().astimezone()
    if cron is not None:
        return parse_cron(cron).next_times(now, n)
    if every_s is None:
        raise ConfigError("Give exactly one of --every or --cron.")
    if not calendar:
        return [now + dt.timedelta(seconds=delay_s + i * every_s) for i in range(n)]
    on_calendar(every_s, delay_s)  # the same periods as the timer
    base = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if every_s == 604800:
        base -= dt.timedelta(days=base.weekday())
    first = base + dt.timedelta(seconds=delay_s)
    k = max(0, int((now - first).total_seconds() // every_s) + 1) if first <= now else 0
    return [first + dt.timedelta(seconds=(k + i) * every_s) for i in range(n)]
