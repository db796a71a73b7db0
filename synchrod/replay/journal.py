"""The media-file journal that makes every crash repairable.

Before media is written, its final path is recorded in ``pending_files``
(committed on its own). The batch transaction that references the file
deletes that record. Whatever is still recorded at the start of a later cycle
and is not referenced by any cfile is an orphan of an interrupted cycle and is
removed. Files the target stops using go to ``pending_unlink`` in the same
transaction and are removed after it commits. Both checks prove a path is
unreferenced before anything is unlinked.
"""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg

_RECORD = """
INSERT INTO synchrod.pending_files (path, source)
SELECT p, $2 FROM unnest($1::text[]) AS p
ON CONFLICT (path) DO UPDATE SET source = EXCLUDED.source, created_at = now()
"""
_UNSCHEDULE = "DELETE FROM synchrod.pending_unlink WHERE path = ANY($1::text[])"
_LEFTOVERS = """
SELECT p.path, EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cfpath = p.path) AS referenced
  FROM synchrod.pending_files p WHERE p.source = $1
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
    if not paths:
        return
    async with conn.transaction():
        await conn.execute(_RECORD, list(paths), source)
        # a stale removal order for a path about to be reused must not fire later
        await conn.execute(_UNSCHEDULE, list(paths))


async def leftovers(conn: asyncpg.Connection, source: str) -> tuple[list[str], list[str]]:
    """(orphans to remove, referenced paths whose record only needs dropping)."""
    rows = await conn.fetch(_LEFTOVERS, source)
    orphans = [r["path"] for r in rows if not r["referenced"]]
    kept = [r["path"] for r in rows if r["referenced"]]
    return orphans, kept


async def forget_pending(conn: asyncpg.Connection, paths: Sequence[str]) -> None:
    if paths:
        await conn.execute(_FORGET_PENDING, list(paths))


async def unlinkable(conn: asyncpg.Connection, paths: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Scheduled removals (``paths`` only, or all when None) split into
    (unreferenced, still referenced)."""
    rows = await conn.fetch(_UNLINKABLE, list(paths or []), paths is None)
    return ([r["path"] for r in rows if not r["referenced"]],
            [r["path"] for r in rows if r["referenced"]])


async def forget_unlink(conn: asyncpg.Connection, paths: Sequence[str]) -> None:
    if paths:
        await conn.execute(_FORGET_UNLINK, list(paths))


async def split_referenced(conn: asyncpg.Connection, paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """(unreferenced, referenced) among ``paths``."""
    rows = await conn.fetch(_REFERENCED, list(paths))
    return [r["p"] for r in rows if not r["referenced"]], [r["p"] for r in rows if r["referenced"]]
