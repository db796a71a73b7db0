"""The media-file journal that makes every crash repairable.

Before media is written, its final path is recorded in ``pending_files``
(committed on its own). The batch transaction that references the file
deletes that record. Whatever is still recorded at the start of a later cycle
and is not referenced by any cfile is an orphan of an interrupted cycle and is
removed. Files the target stops using go to ``pending_unlink`` in the same
transaction and are removed after it commits. Both checks prove a path is
unreferenced before anything is unlinked.

A ``pending_files`` record is a claim ticket: whoever deletes it decides the
file's fate. The batch transaction deletes the tickets of the files it
references (the file lives); a repair deletes the tickets of unreferenced
files in a transaction of its own, removes the files, then commits (the
file dies). Row locks serialise the two, so a repair by one daemon can never
remove a file another daemon's batch is committing: that batch finds its
ticket gone (or, after a repair that died before committing, its file gone)
and rolls back.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import asyncpg

from ..errors import TicketLost

_RECORD = """
INSERT INTO synchrod.pending_files (path, source)
SELECT p, $2 FROM unnest($1::text[]) AS p
ON CONFLICT (path) DO UPDATE SET source = EXCLUDED.source, created_at = now()
"""
_UNSCHEDULE = "DELETE FROM synchrod.pending_unlink WHERE path = ANY($1::text[])"
_CLAIM_ORPHANS = """
DELETE FROM synchrod.pending_files p
 WHERE p.source = $1 AND NOT EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cfpath = p.path)
RETURNING p.path
"""
_FORGET_REFERENCED = """
DELETE FROM synchrod.pending_files p
 WHERE p.source = $1 AND EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cfpath = p.path)
"""
_TAKE_TICKETS = "DELETE FROM synchrod.pending_files WHERE path = ANY($1::text[]) RETURNING path"
_UNCLAIMED = """
SELECT p FROM unnest($1::text[]) AS p
 WHERE NOT EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cfpath = p)
   AND NOT EXISTS (SELECT 1 FROM synchrod.pending_files j WHERE j.path = p)
"""
_FORGET_PENDING = "DELETE FROM synchrod.pending_files WHERE path = ANY($1::text[])"
_UNLINKABLE = """
SELECT u.path, EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cfpath = u.path) AS referenced
  FROM synchrod.pending_unlink u
 WHERE u.path = ANY($1::text[]) OR $2::bool
"""
_REFERENCED = """
SELECT p, EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cfpath = p) AS referenced
  FROM unnest($1::text[]) AS p
"""
_FORGET_UNLINK = "DELETE FROM synchrod.pending_unlink WHERE path = ANY($1::text[])"


async def record_intents(conn: asyncpg.Connection, source: str, paths: Sequence[str]) -> None:
    """Records the source's final paths in pending_files before their media is written
    (a known path changes source) and cancels their scheduled removals; a no-op for none."""
    if not paths:
        return
    async with conn.transaction():
        await conn.execute(_RECORD, list(paths), source)
        # a stale removal order for a path about to be reused must not fire later
        await conn.execute(_UNSCHEDULE, list(paths))


async def claim_orphans(conn: asyncpg.Connection, source: str) -> list[str]:
    """Takes the tickets of the source's unreferenced files; call it in a
    transaction and remove the files before it commits."""
    return [r["path"] for r in await conn.fetch(_CLAIM_ORPHANS, source)]


async def forget_referenced(conn: asyncpg.Connection, source: str) -> int:
    """Drops tickets whose file a committed row references (an interrupted
    batch that did commit). Returns how many."""
    return int((await conn.execute(_FORGET_REFERENCED, source)).split()[-1])


async def take_tickets(conn: asyncpg.Connection, paths: Sequence[str]) -> None:
    """In the batch transaction: takes the tickets of the files it references,
    and proves the files are still there. Raises TicketLost otherwise."""
    if not paths:
        return
    taken = {r["path"] for r in await conn.fetch(_TAKE_TICKETS, list(paths))}
    lost = [p for p in paths if p not in taken]
    # a repair that removed files and died before committing gave the tickets back
    missing = [p for p in paths if p in taken and not os.path.exists(p)]
    if lost or missing:
        raise TicketLost(lost, missing)


async def unclaimed(conn: asyncpg.Connection, paths: Sequence[str]) -> list[str]:
    """Paths neither referenced nor ticketed: garbage nobody will collect."""
    if not paths:
        return []
    return [r["p"] for r in await conn.fetch(_UNCLAIMED, list(paths))]


async def forget_pending(conn: asyncpg.Connection, paths: Sequence[str]) -> None:
    """Drops the pending_files tickets of ``paths``; a no-op for none."""
    if paths:
        await conn.execute(_FORGET_PENDING, list(paths))


async def unlinkable(conn: asyncpg.Connection, paths: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Scheduled removals (``paths`` only, or all when None) split into
    (unreferenced, still referenced)."""
    rows = await conn.fetch(_UNLINKABLE, list(paths or []), paths is None)
    return ([r["path"] for r in rows if not r["referenced"]],
            [r["path"] for r in rows if r["referenced"]])


async def forget_unlink(conn: asyncpg.Connection, paths: Sequence[str]) -> None:
    """Drops the scheduled removals of ``paths``; a no-op for none."""
    if paths:
        await conn.execute(_FORGET_UNLINK, list(paths))


async def split_referenced(conn: asyncpg.Connection, paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """(unreferenced, referenced) among ``paths``."""
    rows = await conn.fetch(_REFERENCED, list(paths))
    return [r["p"] for r in rows if not r["referenced"]], [r["p"] for r in rows if r["referenced"]]


_IN_FLIGHT = "SELECT count(*) FROM synchrod.pending_files"


async def in_flight(conn: asyncpg.Connection) -> int:
    """Copies journaled and not yet committed (a cycle's media in hand)."""
    return await conn.fetchval(_IN_FLIGHT)
