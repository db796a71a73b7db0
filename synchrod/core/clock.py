"""The one clock and the one ISO 8601 form of times shown to operators."""
from __future__ import annotations

import datetime as dt

#: before every timestamp a database holds; with couple id 0, the position
#: before every row of a keyset read on (start_ts, id)
BEGINNING = dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)
KEYSET_START = (BEGINNING, 0)


def now() -> dt.datetime:
    """The current time, timezone-aware in UTC (every timestamp synchrod keeps)."""
    return dt.datetime.now(dt.timezone.utc)


def iso(value):
    """A datetime or date as ISO 8601 text; anything else unchanged (None stays None)."""
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


def parse_iso(value: str | None) -> dt.datetime | None:
    """The inverse of :func:`iso` for datetimes; None for None or empty."""
    return dt.datetime.fromisoformat(value) if value else None
