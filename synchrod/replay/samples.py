"""Per-minute samples for the monitor's charts (``synchrod.source_samples``,
``synchrod.filesystem_samples``, migration 012) and the charts' series:
synchronized calls per minute from the cycle history, lag and backlog and
filesystem use from the samples, each bucketed server-side in one query.

Every read is a range scan of an index on the time (``runs(finished_at)``,
``*_samples(at)``) over the window asked for, so its cost follows the
window, not the history kept."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import asyncpg

MAX_POINTS = 1440   # buckets per series at most: one a minute over a day

# One statement a tick: the filesystems' rows ride in the same round trip
# as the sources' (a data-modifying CTE).
_WRITE = """
WITH s AS (
    INSERT INTO synchrod.source_samples (at, daemon, source, backlog, lag_seconds)
    SELECT $1::timestamptz, $2::text, * FROM unnest($3::text[], $4::int[], $5::float8[])
)
INSERT INTO synchrod.filesystem_samples (at, daemon, filesystem, used_ratio, level)
SELECT $1::timestamptz, $2::text, * FROM unnest($6::text[], $7::real[], $8::smallint[])
"""
_PRUNE_SOURCES = ("DELETE FROM synchrod.source_samples "
                  "WHERE at < now() - make_interval(days => $1)")
_PRUNE_FILESYSTEMS = ("DELETE FROM synchrod.filesystem_samples "
                      "WHERE at < now() - make_interval(days => $1)")

# A cycle's synchronized calls spread evenly over its run (started_at to
# finished_at, the commit of its last chunk): a cycle of an hour is not a
# spike in its last minute. $1 window start, $2 bucket seconds, $3 buckets.
_CALLS = """
SELECT source, bucket, calls FROM (
    SELECT r.source, k AS bucket,
           sum(CASE WHEN r.secs <= 0 THEN r.synchronized::float8
                    ELSE r.synchronized * (least(r.f, (k + 1) * $2) - greatest(r.s, k * $2)) / r.secs
               END) AS calls
      FROM (SELECT source, synchronized,
                   extract(epoch FROM started_at - $1::timestamptz)::float8 AS s,
                   extract(epoch FROM finished_at - $1::timestamptz)::float8 AS f,
                   extract(epoch FROM finished_at - started_at)::float8 AS secs
              FROM synchrod.runs
             WHERE finished_at >= $1::timestamptz AND synchronized > 0
               AND source = ANY($4::text[])) r
     CROSS JOIN LATERAL generate_series(greatest(floor(r.s / $2), 0)::int,
                                        least(floor(r.f / $2), $3 - 1)::int) AS k
     GROUP BY r.source, k) q
 WHERE calls > 0
 ORDER BY source, bucket
"""
# The worst of a bucket: the highest lag, backlog, use and level sampled in it.
_SOURCES = """
SELECT source, floor(extract(epoch FROM at - $1::timestamptz) / $2)::int AS bucket,
       max(lag_seconds) AS lag_seconds, max(backlog) AS backlog
  FROM synchrod.source_samples
 WHERE at >= $1::timestamptz AND at < $1::timestamptz + make_interval(secs => $2 * $3)
   AND source = ANY($4::text[])
 GROUP BY 1, 2 ORDER BY 1, 2
"""
_FILESYSTEMS = """
SELECT filesystem, floor(extract(epoch FROM at - $1::timestamptz) / $2)::int AS bucket,
       max(used_ratio)::float8 AS used_ratio, max(level) AS level
  FROM synchrod.filesystem_samples
 WHERE at >= $1::timestamptz AND at < $1::timestamptz + make_interval(secs => $2 * $3)
 GROUP BY 1, 2 ORDER BY 1, 2
"""


@dataclass(frozen=True, slots=True)
class Window:
    """The buckets of a chart: ``count`` of ``step`` seconds from ``start``
    (aligned on the step since the Unix epoch), the last one holding now."""
    start: dt.datetime
    step: int
    count: int

    @property
    def end(self) -> dt.datetime:
        """Where the last bucket ends (just after now)."""
        return self.start + dt.timedelta(seconds=self.step * self.count)

    def time_of(self, bucket: int) -> int:
        """The Unix time (seconds) at which a bucket starts."""
        return int(self.start.timestamp()) + bucket * self.step


def window(now: dt.datetime, hours: int, max_points: int = MAX_POINTS) -> Window:
    """The last ``hours`` before ``now`` in at most ``max_points`` buckets of
    whole minutes (one minute each up to a day)."""
    seconds = hours * 3600
    step = max(1, math.ceil(seconds / max_points / 60)) * 60
    count = math.ceil(seconds / step)
    current = math.floor(now.timestamp() / step) * step
    start = dt.datetime.fromtimestamp(current - (count - 1) * step, dt.timezone.utc)
    return Window(start, step, count)


async def write(conn: asyncpg.Connection, at: dt.datetime, daemon: str,
                sources: list[tuple[str, int, float]],
                filesystems: list[tuple[str, float, int | None]]) -> None:
    """One tick's samples in one statement: (source, backlog, lag seconds)
    and (filesystem, used ratio, level 0-3 or None)."""
    await conn.execute(_WRITE, at, daemon,
                       [s[0] for s in sources], [s[1] for s in sources], [s[2] for s in sources],
                       [f[0] for f in filesystems], [f[1] for f in filesystems],
                       [f[2] for f in filesystems])


async def prune(conn: asyncpg.Connection, days: int) -> int:
    """Forgets samples older than ``days``; returns how many."""
    async with conn.transaction():
        n = int((await conn.execute(_PRUNE_SOURCES, days)).split()[-1])
        n += int((await conn.execute(_PRUNE_FILESYSTEMS, days)).split()[-1])
    return n


def _args(w: Window) -> tuple:
    return w.start, float(w.step), w.count


async def calls_per_minute(conn: asyncpg.Connection, w: Window,
                           sources: list[str]) -> dict[str, list[list[float]]]:
    """Each source's synchronized calls per minute, as [time, rate] of the
    buckets that had any (the others had none)."""
    out: dict[str, list[list[float]]] = {}
    per_minute = 60 / w.step
    for r in await conn.fetch(_CALLS, *_args(w), sources):
        out.setdefault(r["source"], []).append(
            [w.time_of(r["bucket"]), round(r["calls"] * per_minute, 2)])
    return out


async def source_series(conn: asyncpg.Connection, w: Window,
                        sources: list[str]) -> dict[str, tuple[list, list]]:
    """Each source's (lag, backlog) as [time, value] of the buckets sampled
    (a bucket without one: no daemon owned the source, or none ran)."""
    out: dict[str, tuple[list, list]] = {}
    for r in await conn.fetch(_SOURCES, *_args(w), sources):
        lag, backlog = out.setdefault(r["source"], ([], []))
        t = w.time_of(r["bucket"])
        lag.append([t, round(r["lag_seconds"], 1)])
        backlog.append([t, r["backlog"]])
    return out


async def filesystem_series(conn: asyncpg.Connection, w: Window) -> dict[str, list[list]]:
    """Each filesystem sampled in the window: [time, used ratio, level] of
    its buckets (level 0 normal to 3 emergency, None with space management off)."""
    out: dict[str, list[list]] = {}
    for r in await conn.fetch(_FILESYSTEMS, *_args(w)):
        out.setdefault(r["filesystem"], []).append(
            [w.time_of(r["bucket"]), round(r["used_ratio"], 4), r["level"]])
    return out
