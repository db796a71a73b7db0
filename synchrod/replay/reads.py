"""Reads from the replay database that the planner needs, each one query."""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from ..core.model import TargetCouple

# LATERAL keeps it an index lookup per sid whatever the planner thinks of
# the array (a join + GROUP BY drifted to scanning all of cfiles).
_COUPLES_BY_SID = """
SELECT c.id, c.callid, c.sid::text AS sid, c.state::text AS state,
       c.problemstatus::text AS problemstatus, c.length, coalesce(c.protected, false) AS protected,
       coalesce(c.deleted::text = 'D', false) AS deleted,
       f.nfiles, f.nbytes, f.paths
  FROM callrec.couples c
 CROSS JOIN LATERAL (
       SELECT count(*) AS nfiles, coalesce(sum(cf.cfsize), 0)::bigint AS nbytes,
              coalesce(array_agg(cf.cfpath::text ORDER BY cf.id), '{}') AS paths
         FROM callrec.cfiles cf WHERE cf.cplid = c.id) f
 WHERE c.sid = ANY($1::text[])
"""

_CALLS_OF_SIDS = "SELECT sid::text AS sid, callid FROM callrec.couples WHERE sid = ANY($1::text[])"


# Records about source couples are keyed by the recorder's couple id and
# hold its sid: one whose sid differs is about another call (a recorder
# restored from a backup reuses ids) and is ignored.
_SYNCED = """
SELECT s.source_cplid, s.mark FROM synchrod.synced s
  JOIN unnest($2::bigint[], $3::text[]) AS q(id, sid) ON q.id = s.source_cplid AND q.sid = s.sid
 WHERE s.source = $1
"""

_IN_BACKOFF = """
SELECT source_cplid, sid FROM synchrod.attempts
 WHERE source = $1 AND next_try_at > now() AND next_try_at < 'infinity'
"""

_RETRY_DUE = """
SELECT source_cplid FROM synchrod.attempts WHERE source = $1 AND next_try_at <= now()
"""

_ATTEMPTS = """
SELECT a.source_cplid, a.attempts FROM synchrod.attempts a
  JOIN unnest($2::bigint[], $3::text[]) AS q(id, sid) ON q.id = a.source_cplid AND q.sid = a.sid
 WHERE a.source = $1
"""

_RESYNC_CURSOR = """
SELECT resync_cursor_ts, resync_cursor_id FROM synchrod.source_state WHERE source = $1
"""


async def couples_by_sid(conn: asyncpg.Connection, sids: Sequence[str]) -> dict[str, TargetCouple]:
    """The couples of these sids on the target, by sid, with their files' count, bytes
    and paths (one query); sids the target lacks are absent."""
    rows = await conn.fetch(_COUPLES_BY_SID, list(sids))
    return {r["sid"]: TargetCouple(r["id"], r["callid"], r["sid"], r["state"], r["problemstatus"],
                                   r["length"], r["nfiles"], r["nbytes"], tuple(r["paths"]),
                                   r["protected"], r["deleted"])
            for r in rows}


_TOMBSTONED = "SELECT sid FROM synchrod.tombstones WHERE sid = ANY($1::text[])"


async def tombstoned(conn: asyncpg.Connection, sids: Sequence[str]) -> set[str]:
    """The sids among these that were pruned or deleted on the target (never copied back)."""
    return {r["sid"] for r in await conn.fetch(_TOMBSTONED, list(sids))} if sids else set()


async def calls_of_sids(conn: asyncpg.Connection, sids: Sequence[str]) -> dict[str, int]:
    """sid → target call, for the sids the target holds."""
    return {r["sid"]: r["callid"] for r in await conn.fetch(_CALLS_OF_SIDS, list(sids))}


def _pairs(couples: Sequence[tuple[int, str]]) -> tuple[list[int], list[str]]:
    return [i for i, _ in couples], [s for _, s in couples]


async def synced_marks(conn: asyncpg.Connection, source: str,
                       couples: Sequence[tuple[int, str]]) -> dict[int, str]:
    """Mark each (couple id, sid) earned before, for those that were delivered."""
    return {r["source_cplid"]: r["mark"] for r in await conn.fetch(_SYNCED, source, *_pairs(couples))}


async def in_backoff(conn: asyncpg.Connection, source: str) -> list[tuple[int, str]]:
    """(couple id, sid) of the source's calls waiting for their next try."""
    return [(r["source_cplid"], r["sid"]) for r in await conn.fetch(_IN_BACKOFF, source)]


async def retry_due(conn: asyncpg.Connection, source: str) -> list[int]:
    """Failed calls whose back-off is over (calls marked E wait forever)."""
    return [r["source_cplid"] for r in await conn.fetch(_RETRY_DUE, source)]


async def schema_ready(conn: asyncpg.Connection) -> bool:
    """True once synchrod's schema exists in the replay database (synchrod.attempts)."""
    return await conn.fetchval("SELECT to_regclass('synchrod.attempts') IS NOT NULL")


async def attempts(conn: asyncpg.Connection, source: str,
                   couples: Sequence[tuple[int, str]]) -> dict[int, int]:
    """Failures so far of each (couple id, sid)."""
    return {r["source_cplid"]: r["attempts"]
            for r in await conn.fetch(_ATTEMPTS, source, *_pairs(couples))}


async def resync_cursor(conn: asyncpg.Connection, source: str):
    """How far the source's re-synchronisation went, (start_ts, couple id); None when
    none is under way."""
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
