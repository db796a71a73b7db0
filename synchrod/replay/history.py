"""Cycle history (``synchrod.runs`` and ``synchrod.run_calls``): pages of it
for the monitor, failed cycles, pruning. Every page is a keyset read on an
index, so its cost does not grow with the history."""
from __future__ import annotations

import datetime as dt

import asyncpg

from ..core import clock

RUN_COLUMNS = ("id", "source", "daemon", "started_at", "finished_at", "state", "taken",
               "synchronized", "not_used", "erroneous", "failed", "skipped", "files", "bytes",
               "error")
_SELECT_RUN = ("SELECT id, source, daemon, started_at, finished_at, state, taken, synchronized, "
               "not_used, erroneous, failed, skipped, files, bytes, error FROM synchrod.runs")

# Newest first; $1 `before` is the previous page's last id (keyset pagination).
# One statement per shape, never "($n IS NULL OR ...)", whose index conditions
# only a custom plan finds (synchrod's connections force custom plans, see
# dbconn.server_settings: a rarely-seen source then uses runs(source, id DESC)).
_RUNS = _SELECT_RUN + " WHERE id < $1 ORDER BY id DESC LIMIT $2"
_SOURCE_RUNS = _SELECT_RUN + " WHERE source = $3 AND id < $1 ORDER BY id DESC LIMIT $2"
_NO_BEFORE = 2 ** 63 - 1
_RUN = _SELECT_RUN + " WHERE id = $1"
_RUN_CALLS = """
SELECT source_cplid, sid, outcome, reason, detail FROM synchrod.run_calls
 WHERE run_id = $1 AND source_cplid > $2 ORDER BY source_cplid LIMIT $3
"""
_FAILED_CYCLE = """
INSERT INTO synchrod.runs (source, daemon, started_at, finished_at, state, taken, synchronized,
       not_used, erroneous, failed, skipped, files, bytes, error)
VALUES ($1, $2, $3, now(), $4, 0, 0, 0, 0, 0, 0, 0, 0, $5) RETURNING id
"""
_END_RUN = "UPDATE synchrod.runs SET finished_at = now(), state = $2, error = $3 WHERE id = $1"
_PRUNE_CALLS = """
DELETE FROM synchrod.run_calls WHERE run_id IN (
    SELECT id FROM synchrod.runs WHERE finished_at < now() - make_interval(days => $1))
"""
_PRUNE_RUNS = "DELETE FROM synchrod.runs WHERE finished_at < now() - make_interval(days => $1)"


def run_view(r: asyncpg.Record) -> dict:
    """A runs row as the API shows it: ISO timestamps and its duration in ``seconds``."""
    run = {k: r[k] for k in RUN_COLUMNS}
    run["seconds"] = round((r["finished_at"] - r["started_at"]).total_seconds(), 3)
    for k in ("started_at", "finished_at"):
        run[k] = clock.iso(run[k])
    return run


async def runs(conn: asyncpg.Connection, source: str | None, before: int | None,
               limit: int) -> tuple[list[dict], int | None]:
    """A page of runs, newest first, and the ``before`` of the next page."""
    args = (before or _NO_BEFORE, limit + 1)
    rows = await (conn.fetch(_RUNS, *args) if source is None
                  else conn.fetch(_SOURCE_RUNS, *args, source))
    more = len(rows) > limit
    page = [run_view(r) for r in rows[:limit]]
    return page, (page[-1]["id"] if more else None)


async def run(conn: asyncpg.Connection, run_id: int, after: int,
              limit: int) -> tuple[dict, list[dict], int | None] | None:
    """A run, a page of its calls by source call id, and the ``after`` of the next page."""
    row = await conn.fetchrow(_RUN, run_id)
    if row is None:
        return None
    calls = [dict(r) for r in await conn.fetch(_RUN_CALLS, run_id, after, limit + 1)]
    more = len(calls) > limit
    calls = calls[:limit]
    return run_view(row), calls, (calls[-1]["source_cplid"] if more else None)


async def end_run(conn: asyncpg.Connection, run_id: int, state: str, error: str | None) -> None:
    """A cycle that committed calls and then failed keeps its error."""
    await conn.execute(_END_RUN, run_id, state, error)


async def failed_cycle(conn: asyncpg.Connection, source: str, daemon: str,
                       started_at: dt.datetime, state: str, error: str | None) -> int:
    """Records a cycle that failed before committing any chunk (every count 0,
    finished now); returns its run id."""
    return await conn.fetchval(_FAILED_CYCLE, source, daemon, started_at, state, error)


async def prune(conn: asyncpg.Connection, days: int) -> int:
    """Forgets runs older than ``days``; returns how many."""
    async with conn.transaction():
        await conn.execute(_PRUNE_CALLS, days)
        status = await conn.execute(_PRUNE_RUNS, days)
    return int(status.split()[-1])


# the newest run of each source: one index probe per source, whatever the history
_LAST_RUNS = """
SELECT r.* FROM unnest($1::text[]) AS s(name)
 CROSS JOIN LATERAL (SELECT source, finished_at, state, taken, synchronized, not_used,
                            erroneous, failed, skipped, error
                       FROM synchrod.runs WHERE source = s.name ORDER BY id DESC LIMIT 1) r
"""


async def last_runs(conn: asyncpg.Connection, sources: list[str]) -> dict[str, asyncpg.Record]:
    """The newest history row of each source that has one."""
    return {r["source"]: r for r in await conn.fetch(_LAST_RUNS, sources)}
