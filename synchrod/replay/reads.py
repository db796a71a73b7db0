"""Reads from the replay database that the planner needs, each one query."""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ..core.model import TargetCouple

# LATERAL keeps it an index lookup per sid whatever the planner thinks of
# the array (a join + GROUP BY drifted to scanning all of cfiles).
_COUPLES_BY_SID = """
SELECT c.id, c.callid, c.sid, c.state, c.problemstatus, c.length, f.nfiles, f.nbytes, f.paths
  FROM callrec.couples c
 CROSS JOIN LATERAL (
       SELECT count(*) AS nfiles, coalesce(sum(cf.cfsize), 0)::bigint AS nbytes,
              coalesce(array_agg(cf.cfpath ORDER BY cf.id), '{}') AS paths
         FROM callrec.cfiles cf WHERE cf.cplid = c.id) f
 WHERE c.sid = ANY($1::text[])
"""

_SYNCED = """
SELECT source_cplid, mark, target_cplid FROM synchrod.synced
 WHERE source = $1 AND source_cplid = ANY($2::bigint[])
"""

_IN_BACKOFF = """
SELECT source_cplid FROM synchrod.attempts
 WHERE source = $1 AND next_try_at > now() AND next_try_at < 'infinity'
"""

_RETRY_DUE = """
SELECT source_cplid FROM synchrod.attempts WHERE source = $1 AND next_try_at <= now()
"""

_ATTEMPTS = """
SELECT source_cplid, attempts FROM synchrod.attempts
 WHERE source = $1 AND source_cplid = ANY($2::bigint[])
"""

_CALLS_OF_SOURCE_CALLS = """
SELECT DISTINCT ON (s.source_callid) s.source_callid, c.callid
  FROM synchrod.synced s JOIN callrec.couples c ON c.id = s.target_cplid
 WHERE s.source = $1 AND s.source_callid = ANY($2::bigint[]) AND c.callid IS NOT NULL
 ORDER BY s.source_callid, s.synced_at
"""

_RESYNC_CURSOR = """
SELECT resync_cursor_ts, resync_cursor_id FROM synchrod.source_state WHERE source = $1
"""


async def couples_by_sid(conn: asyncpg.Connection, sids: Sequence[str]) -> dict[str, TargetCouple]:
    rows = await conn.fetch(_COUPLES_BY_SID, list(sids))
    return {r["sid"]: TargetCouple(r["id"], r["callid"], r["sid"], r["state"], r["problemstatus"],
                                   r["length"], r["nfiles"], r["nbytes"], tuple(r["paths"]))
            for r in rows}


async def synced_marks(conn: asyncpg.Connection, source: str, ids: Sequence[int]) -> dict[int, str]:
    return {r["source_cplid"]: r["mark"] for r in await conn.fetch(_SYNCED, source, list(ids))}


async def in_backoff(conn: asyncpg.Connection, source: str) -> list[int]:
    return [r["source_cplid"] for r in await conn.fetch(_IN_BACKOFF, source)]


async def retry_due(conn: asyncpg.Connection, source: str) -> list[int]:
    """Failed calls whose back-off is over (calls marked E wait forever)."""
    return [r["source_cplid"] for r in await conn.fetch(_RETRY_DUE, source)]


async def schema_ready(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT to_regclass('synchrod.attempts') IS NOT NULL")


async def attempts(conn: asyncpg.Connection, source: str, ids: Sequence[int]) -> dict[int, int]:
    return {r["source_cplid"]: r["attempts"] for r in await conn.fetch(_ATTEMPTS, source, list(ids))}


async def target_calls(conn: asyncpg.Connection, source: str, callids: Sequence[int]) -> dict[int, int]:
    """Target call of each source call some couple of which was delivered before."""
    rows = await conn.fetch(_CALLS_OF_SOURCE_CALLS, source, list(callids))
    return {r["source_callid"]: r["callid"] for r in rows}


async def resync_cursor(conn: asyncpg.Connection, source: str):
    row = await conn.fetchrow(_RESYNC_CURSOR, source)
    if row is None or row["resync_cursor_ts"] is None:
        return None
    return row["resync_cursor_ts"], row["resync_cursor_id"]


# retrying: failed, waiting for their next try; given up: E, or without
# mark_erroneous retried only when the operator asks
_ATTEMPT_COUNTS = """
SELECT source, count(*) FILTER (WHERE next_try_at < 'infinity') AS retrying,
       count(*) FILTER (WHERE next_try_at = 'infinity') AS erroneous
  FROM synchrod.attempts WHERE source = ANY($1::text[]) GROUP BY source
"""


async def attempt_counts(conn: asyncpg.Connection,
                         sources: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Source → (calls retrying, calls given up)."""
    return {r["source"]: (r["retrying"], r["erroneous"])
            for r in await conn.fetch(_ATTEMPT_COUNTS, list(sources))}
