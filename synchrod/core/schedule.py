"""When archive export tasks run (SPEC §10 "Schedules"): the schedule of a
task, its problems, and its slots in UTC.

A repeating task's slots are local wall-clock times in the archive's time
zone: ``hourly`` every hour at minute MM, ``daily`` at HH:MM, ``weekly`` on
its weekday at HH:MM, ``monthly`` on its day (1..28) at HH:MM. Daylight
saving time: a wall-clock time that does not exist (the spring-forward gap)
is the first valid instant after the gap (02:30 on a day whose 02:00 jumps
to 03:00 is 03:00 local); one that exists twice (fall back) is its first
occurrence only (``fold=0``). So an hourly task at ``:15`` runs once in a
repeated hour, and on a spring-forward day runs at 03:00 (for 02:15) and at
03:15 too: two distinct slots. A ``once`` task has no slots here: its time
is :func:`once_time` and its caller decides when it runs.

No I/O and no clock: callers pass every time in, timezone-aware; every
datetime returned is aware in UTC.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

KINDS = ("once", "hourly", "daily", "weekly", "monthly")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: a once task's time is less than this far ahead
ONCE_HORIZON = dt.timedelta(days=7)
#: the longest gap between two slots of a kind, daylight saving included
PERIODS = {"hourly": dt.timedelta(hours=2), "daily": dt.timedelta(days=2),
           "weekly": dt.timedelta(days=8), "monthly": dt.timedelta(days=32)}

UTC = dt.timezone.utc
_MINUTE_RE = re.compile(r":([0-5][0-9])")
_CLOCK_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A task's schedule as configured: ``kind`` one of :data:`KINDS`; ``at``
    "now" or an ISO 8601 date-time for ``once`` (a naive one is in the task's
    time zone), ":MM" for ``hourly``, "HH:MM" otherwise; ``weekday`` (one of
    :data:`WEEKDAYS`) for ``weekly`` only; ``day`` (1..28) for ``monthly`` only."""

    kind: str
    at: str
    weekday: str | None = None
    day: int | None = None


def _aware(value: dt.datetime, what: str) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, not {value!r}")


def _at_problem(kind: str, at: object) -> str | None:
    """Why ``at`` is malformed for ``kind``; None when it is well formed."""
    if not isinstance(at, str):
        return f"must be a string, not {at!r}"
    if kind == "once":
        if at == "now":
            return None
        try:
            dt.datetime.fromisoformat(at)
        except ValueError:
            return f'must be "now" or an ISO 8601 date-time such as 2026-03-01T02:00, not {at!r}'
        return None
    if kind == "hourly":
        return None if _MINUTE_RE.fullmatch(at) else \
            f'must be the minute of each hour as ":MM" (":00" to ":59"), not {at!r}'
    return None if _CLOCK_RE.fullmatch(at) else \
        f'must be a time of day as "HH:MM" ("00:00" to "23:59"), not {at!r}'


def problems(schedule: Schedule, tz: dt.tzinfo, now: dt.datetime) -> list[tuple[str, str]]:
    """(key, message) for every problem of ``schedule``, key being "schedule",
    "at", "weekday" or "day": an unknown kind (then nothing else is checked);
    ``at`` malformed for the kind; a weekly task without a valid weekday, or
    a weekday for another kind; a monthly task without a day in 1..28, or a
    day for another kind. Syntax only: whether a once task's time is in
    range is :func:`once_problem` (a reload must not refuse a once task that
    already ran and whose time has passed). ``now`` must be aware; ``tz`` is
    accepted for symmetry with the other functions."""
    _aware(now, "now")
    return _problems(schedule)


def _problems(schedule: Schedule) -> list[tuple[str, str]]:
    """:func:`problems`, which needs no time."""
    kind = schedule.kind
    if kind not in KINDS:
        return [("schedule", f"must be one of {', '.join(KINDS)}, not {kind!r}")]
    found = []
    at = _at_problem(kind, schedule.at)
    if at:
        found.append(("at", at))
    weekday, day = schedule.weekday, schedule.day
    if kind == "weekly":
        if weekday is None:
            found.append(("weekday", "a weekly task needs a weekday: one of "
                                     + ", ".join(WEEKDAYS)))
        elif weekday not in WEEKDAYS:
            found.append(("weekday", f"must be one of {', '.join(WEEKDAYS)}, not {weekday!r}"))
    elif weekday is not None:
        found.append(("weekday", f"is for weekly tasks only, not {kind}"))
    if kind == "monthly":
        if day is None:
            found.append(("day", "a monthly task needs a day of the month (1..28)"))
        elif not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 28:
            found.append(("day", f"must be a day of the month from 1 to 28, not {day!r}"))
    elif day is not None:
        found.append(("day", f"is for monthly tasks only, not {kind}"))
    return found


def once_time(schedule: Schedule, tz: dt.tzinfo) -> dt.datetime | None:
    """The aware UTC instant of a once task's time; None for "now" (and for a
    task of another kind). A naive time is wall-clock time in ``tz`` (one in
    a daylight-saving gap is the first instant after it, one that exists twice
    its first occurrence); one with an offset keeps it. ValueError when ``at``
    is not ISO 8601 (:func:`problems` reports that)."""
    if schedule.kind != "once" or schedule.at == "now":
        return None
    when = dt.datetime.fromisoformat(schedule.at)
    if when.tzinfo is None or when.utcoffset() is None:
        return _resolve(when.replace(tzinfo=None), tz)
    return when.astimezone(UTC)


def once_problem(schedule: Schedule, tz: dt.tzinfo, now: dt.datetime) -> str | None:
    """For a once task with a time: a message if that time is not in
    [now, now + 7 days), else None. None too for "now", for other kinds and
    for a malformed time (that is :func:`problems`' to report)."""
    _aware(now, "now")
    try:
        when = once_time(schedule, tz)
    except (ValueError, TypeError):
        return None
    if when is None:
        return None
    if when < now:
        return f"{schedule.at} is in the past (now is {now.astimezone(tz).isoformat()})"
    if when >= now + ONCE_HORIZON:
        return (f"{schedule.at} is 7 days or more ahead (a once task's time must be less than "
                f"7 days ahead; now is {now.astimezone(tz).isoformat()})")
    return None


def _resolve(wall: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """The UTC instant of the naive wall-clock time ``wall`` in ``tz``: its
    first occurrence when it exists twice; the first valid instant after the
    gap (the transition itself) when it does not exist."""
    wall = wall.replace(fold=0)
    first = wall.replace(tzinfo=tz).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # in a gap: fold=0 reads it with the offset before the transition (an
    # instant after the transition), fold=1 with the one after (before it)
    lo = int(wall.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    hi = int(first.timestamp())
    if lo > hi:
        lo, hi = hi, lo
    offset_after = dt.datetime.fromtimestamp(hi, UTC).astimezone(tz).utcoffset()
    while hi - lo > 1:   # transitions fall on whole seconds
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == offset_after:
            hi = mid
        else:
            lo = mid
    return dt.datetime.fromtimestamp(hi, UTC)


def _clock(schedule: Schedule) -> tuple[int, int]:
    """(hour, minute) of a repeating schedule's ``at`` (hour 0 for hourly);
    ValueError when the schedule has a problem or is not a repeating one."""
    if schedule.kind not in PERIODS:
        raise ValueError(f"not a repeating schedule kind: {schedule.kind!r}")
    found = _problems(schedule)
    if found:
        raise ValueError("; ".join(f"{key} {message}" for key, message in found))
    if schedule.kind == "hourly":
        return 0, int(schedule.at[1:])
    return int(schedule.at[:2]), int(schedule.at[3:])


def _walls(schedule: Schedule, local: dt.datetime) -> Iterator[dt.datetime]:
    """Every naive wall-clock slot of a repeating schedule, ascending, from a
    little before the naive local time ``local`` (early enough that no slot
    resolving after ``local`` is left out), without end."""
    hour, minute = _clock(schedule)
    kind = schedule.kind
    if kind == "hourly":
        wall = local.replace(minute=minute, second=0, microsecond=0) - dt.timedelta(hours=3)
        step = dt.timedelta(hours=1)
        while True:
            yield wall
            wall += step
    if kind in ("daily", "weekly"):
        date = local.date() - dt.timedelta(days=1)
        step = dt.timedelta(days=1)
        if kind == "weekly":
            date -= dt.timedelta(days=(date.weekday() - WEEKDAYS.index(schedule.weekday)) % 7)
            step = dt.timedelta(days=7)
        while True:
            yield dt.datetime.combine(date, dt.time(hour, minute))
            date += step
    day = schedule.day
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    while True:
        yield dt.datetime(year, month, day, hour, minute)
        year, month = (year, month + 1) if month < 12 else (year + 1, 1)


def _instants(schedule: Schedule, tz: dt.tzinfo, begin: dt.datetime) -> Iterator[dt.datetime]:
    """The distinct slots of a repeating schedule as UTC instants, ascending,
    from a little before ``begin`` (every slot after ``begin`` among them)."""
    local = begin.astimezone(tz).replace(tzinfo=None, fold=0)
    last = None
    for wall in _walls(schedule, local):
        instant = _resolve(wall, tz)
        if last is not None and instant <= last:
            continue   # two wall-clock slots in one gap: one instant, one slot
        last = instant
        yield instant


def next_slot(schedule: Schedule, tz: dt.tzinfo, after: dt.datetime) -> dt.datetime | None:
    """The first slot strictly after ``after`` (aware), as an aware UTC
    datetime; None for a once task (its caller handles it). ValueError for a
    naive ``after``, an unknown kind or a malformed schedule."""
    _aware(after, "after")
    if schedule.kind == "once":
        return None
    for instant in _instants(schedule, tz, after):
        if instant > after:
            return instant
    raise AssertionError("unreachable: slots never end")  # pragma: no cover


def slots_between(schedule: Schedule, tz: dt.tzinfo, start: dt.datetime, end: dt.datetime,
                  limit: int = 1000) -> list[dt.datetime]:
    """Every slot s with start < s <= end (aware UTC, ascending), at most the
    last ``limit`` of them; empty for a once task or when ``limit`` < 1.
    The work is bounded by ``limit``, not by how long start..end is: it
    begins about ``limit`` longest gaps (:data:`PERIODS`) before ``end`` and
    reaches further back only if that held fewer than ``limit`` slots.
    ValueError for a naive bound, an unknown kind or a malformed schedule."""
    _aware(start, "start")
    _aware(end, "end")
    if schedule.kind == "once":
        return []
    _clock(schedule)   # a malformed schedule fails even when the range is empty
    if limit < 1 or end <= start:
        return []
    window = PERIODS[schedule.kind] * limit
    while True:
        begin = start if window >= end - start else end - window
        found: deque[dt.datetime] = deque(maxlen=limit)
        for instant in _instants(schedule, tz, begin):
            if instant > end:
                break
            if instant > start:
                found.append(instant)
        if len(found) == limit or begin == start:
            return list(found)
        window *= 2
