"""Pruning and deleting target couples in the replay database (SPEC §9), in
the crash-safe order of §3.7: one transaction deletes the rows, audits each
call in ``synchrod.deletions``, tombstones its sid and schedules its files in
``synchrod.pending_unlink``; the files are removed only after it commits (and
by the next repair if a crash comes between).

Never touched: protected couples (skipped and counted), and couples a batch
is committing (the batch's sid locks are taken first, in the same order).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from ..core import clock
from ..core.pathsafety import is_inside
from ..pg.connect import WRITE_PLANS
from . import statements

#: candidates oldest first; $1 before (exclusive), $2 a source's couples only
#: (NULL: all), $3 with pruned couples too (metadata deletion), $4 limit,
#: $5/$6 the (start_ts, id) of the previous page's last (keyset pagination),
#: $7 only couples with a file below one of these directories (NULL: any),
#: $8 an archive task: couples with a file it has not archived are flagged
_CANDIDATES = """
SELECT c.id, c.sid::text AS sid, c.start_ts, coalesce(c.protected, false) AS protected,
       ($8::text IS NOT NULL AND EXISTS (SELECT 1 FROM callrec.cfiles f WHERE f.cplid = c.id
          AND NOT EXISTS (SELECT 1 FROM synchrod.archive_files a
                           WHERE a.task = $8 AND a.cfile_id = f.id))) AS not_archived
  FROM callrec.couples c
 WHERE c.start_ts < $1
   AND (c.start_ts, c.id) > ($5::timestamptz, $6::bigint)
   AND ($3::bool OR c.deleted IS DISTINCT FROM 'D')
   AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM synchrod.synced s
                                     WHERE s.target_cplid = c.id AND s.source = $2))
   AND ($7::text[] IS NULL OR EXISTS (SELECT 1 FROM callrec.cfiles f, unnest($7) AS r(dir)
                                       WHERE f.cplid = c.id AND starts_with(f.cfpath::text, r.dir)))
 ORDER BY c.start_ts, c.id
 LIMIT $4
"""
_CANDIDATES_BY_SID = """
SELECT c.id, c.sid::text AS sid, c.start_ts, coalesce(c.protected, false) AS protected,
       false AS not_archived
  FROM callrec.couples c
 WHERE c.sid = ANY($1::text[])
   AND ($3::bool OR c.deleted IS DISTINCT FROM 'D')
   AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM synchrod.synced s
                                     WHERE s.target_cplid = c.id AND s.source = $2))
 ORDER BY c.start_ts, c.id
"""
_FILES_OF = """
SELECT cplid, count(*)::int AS files, coalesce(sum(cfsize), 0)::bigint AS bytes
  FROM callrec.cfiles WHERE cplid = ANY($1::bigint[]) GROUP BY cplid
"""
_NOT_ARCHIVED = """
SELECT DISTINCT f.cplid FROM callrec.cfiles f
 WHERE f.cplid = ANY($1::bigint[])
   AND NOT EXISTS (SELECT 1 FROM synchrod.archive_files a WHERE a.task = $2 AND a.cfile_id = f.id)
"""
_LOCK_COUPLES = """
SELECT id, sid::text AS sid, coalesce(protected, false) AS protected, callid,
       coalesce(deleted::text = 'D', false) AS pruned
  FROM callrec.couples WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE
"""
_DELETE_FILES = """
DELETE FROM callrec.cfiles WHERE cplid = ANY($1::bigint[])
RETURNING cplid, cfpath::text AS cfpath, coalesce(cfsize, 0)::bigint AS cfsize
"""
#: what CallREC's trigger lets go of a protected couple: its RECD files
_DELETE_PROTECTED_RECD = """
DELETE FROM callrec.cfiles WHERE cplid = ANY($1::bigint[]) AND cftype = 'RECD'
RETURNING cplid, cfpath::text AS cfpath, coalesce(cfsize, 0)::bigint AS cfsize
"""
_MARK_DELETED = "UPDATE callrec.couples SET deleted = 'D' WHERE id = ANY($1::bigint[])"
_DELETE_COUPLES = "DELETE FROM callrec.couples WHERE id = ANY($1::bigint[])"
_DELETE_EMPTY_CALLS = """
DELETE FROM callrec.calls k WHERE k.id = ANY($1::bigint[])
   AND NOT EXISTS (SELECT 1 FROM callrec.couples c WHERE c.callid = k.id)
"""
_AUDIT = """
INSERT INTO synchrod.deletions (sid, target_cplid, reason, requested_by, files, bytes, metadata,
                                comment, job_id)
SELECT u.sid, u.id, $1, $2, u.files, u.bytes, $3, $4, $9
  FROM unnest($5::text[], $6::bigint[], $7::int[], $8::bigint[]) AS u(sid, id, files, bytes)
"""
_AUDIT_RECD = """
INSERT INTO synchrod.deletions (sid, target_cplid, reason, requested_by, files, bytes, metadata,
                                comment, job_id, cftypes)
SELECT u.sid, u.id, $1, $2, u.files, u.bytes, false, $3, $4, ARRAY['RECD']
  FROM unnest($5::text[], $6::bigint[], $7::int[], $8::bigint[]) AS u(sid, id, files, bytes)
"""
_TOMBSTONE = """
INSERT INTO synchrod.tombstones (sid) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A target couple that may be pruned."""
    id: int
    sid: str
    start_ts: dt.datetime
    protected: bool
    not_archived: bool = False   # with a file the required archive task has not archived

    @property
    def held(self) -> bool:
        """Kept whatever the reason to prune: protected, or not archived yet."""
        return self.protected or self.not_archived


@dataclass
class Pruned:
    """What one committed batch removed."""
    sids: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    protected: list[str] = field(default_factory=list)   # skipped: protected couples
    not_archived: list[str] = field(default_factory=list)   # skipped: not archived (since listed)
    recd_files: int = 0                                  # protected couples' RECD files removed
    recd_bytes: int = 0
    unlink: list[str] = field(default_factory=list)      # scheduled files below the target paths


#: the keyset position before every couple
START = clock.KEYSET_START


async def candidates(conn: asyncpg.Connection, *, before: dt.datetime | None,
                     sids: Sequence[str] | None, source: str | None, metadata: bool,
                     limit: int, after: tuple[dt.datetime, int] = START,
                     roots: Sequence[str] | None = None,
                     require_archived: str | None = None) -> list[Candidate]:
    """Target couples older than ``before`` (or with one of ``sids``: all of
    them at once), of ``source`` only when given, oldest first, past the
    keyset position ``after``; those already pruned only when ``metadata``
    (their couple may still be deleted). Protected ones are listed too: the
    caller counts them. ``roots``: only couples with a file below one of
    these directories (a filesystem's target paths). ``require_archived``:
    couples with a file this archive task has not archived are flagged."""
    if sids is not None:
        rows = await conn.fetch(_CANDIDATES_BY_SID, list(sids), source, metadata)
    else:
        dirs = [r.rstrip("/") + "/" for r in roots] if roots is not None else None
        rows = await conn.fetch(_CANDIDATES, before, source, metadata, limit, *after, dirs,
                                require_archived)
    return [Candidate(r["id"], r["sid"], r["start_ts"], r["protected"], r["not_archived"])
            for r in rows]


async def sizes(conn: asyncpg.Connection, ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Couple id -> (files, bytes) its cfiles hold now."""
    return {r["cplid"]: (r["files"], r["bytes"]) for r in await conn.fetch(_FILES_OF, list(ids))}


async def prune_batch(conn: asyncpg.Connection, ids: Sequence[int], *, reason: str,
                      requested_by: str | None, comment: str | None, metadata: bool,
                      owned_roots: Sequence[str], job_id: int | None = None,
                      protected_recd: bool = False, require_archived: str | None = None) -> Pruned:
    """Removes the media (with ``metadata``: the couples too, and calls left
    empty) of the couples ``ids`` in one transaction; protected ones are
    skipped. Only files below ``owned_roots`` (the target paths) are
    scheduled for removal: a linked recorder file is never synchrod's to
    delete. The caller removes ``unlink`` after this returns. ``job_id``: the
    bulk delete job whose batch this is (audited with each call).
    ``protected_recd`` (automatic pruning): a protected couple's RECD files
    go (audited with ``cftypes``), the rest of it stays. ``require_archived``:
    couples with a file this archive task has not archived (checked under
    the locks: a better copy may just have replaced an archived one) stay."""
    out = Pruned()
    async with conn.transaction():
        # CallREC's per-row triggers fire for every cfile removed: planned once, not per row
        await conn.execute(WRITE_PLANS)
        locked = await conn.fetch(_LOCK_COUPLES, list(ids))
        # pruned by another pruner since they were listed (the CLI beside the daemon,
        # a bulk delete job beside automatic pruning): not twice
        locked = [r for r in locked if metadata or not r["pruned"]]
        # the batch writer's sid locks: a couple whose batch is committing waits for it
        await conn.fetchval(statements.LOCK_SIDS, sorted({r["sid"] for r in locked}))
        out.protected = [r["sid"] for r in locked if r["protected"]]
        removed = []
        if protected_recd and out.protected:
            removed = await _prune_protected_recd(conn, [r for r in locked if r["protected"]], out,
                                                  reason, requested_by, comment, job_id)
        todo = [r for r in locked if not r["protected"]]
        if require_archived is not None and todo:
            held = {r["cplid"] for r in await conn.fetch(_NOT_ARCHIVED, [r["id"] for r in todo],
                                                          require_archived)}
            out.not_archived = [r["sid"] for r in todo if r["id"] in held]
            todo = [r for r in todo if r["id"] not in held]
        if todo:
            removed += await _prune_couples(conn, todo, out, reason, requested_by, comment,
                                            metadata, job_id)
        out.unlink = sorted({r["cfpath"] for r in removed
                             if any(is_inside(root, r["cfpath"]) for root in owned_roots)})
        if out.unlink:
            await conn.execute(statements.SCHEDULE_UNLINK, out.unlink)
    return out


def _by_couple(rows) -> dict[int, list]:
    per_couple: dict[int, list] = {}
    for r in rows:
        per_couple.setdefault(r["cplid"], []).append(r)
    return per_couple


async def _prune_protected_recd(conn, protected: list, out: Pruned, reason: str,
                                requested_by: str | None, comment: str | None,
                                job_id: int | None) -> list:
    """Removes the RECD cfiles of these protected couples (locked); audits them."""
    removed = await conn.fetch(_DELETE_PROTECTED_RECD, [r["id"] for r in protected])
    per_couple = _by_couple(removed)
    hit = [r for r in protected if r["id"] in per_couple]
    if hit:
        await conn.execute(_AUDIT_RECD, reason, requested_by, comment, job_id,
                           [r["sid"] for r in hit], [r["id"] for r in hit],
                           [len(per_couple[r["id"]]) for r in hit],
                           [sum(f["cfsize"] for f in per_couple[r["id"]]) for r in hit])
    out.recd_files, out.recd_bytes = len(removed), sum(f["cfsize"] for f in removed)
    return list(removed)


async def _prune_couples(conn, todo: list, out: Pruned, reason: str, requested_by: str | None,
                         comment: str | None, metadata: bool, job_id: int | None) -> list:
    """Removes the media (or the couples) of these unprotected couples (locked);
    audits and tombstones them."""
    todo_ids = [r["id"] for r in todo]
    removed = await conn.fetch(_DELETE_FILES, todo_ids)
    per_couple = _by_couple(removed)
    if metadata:
        await conn.execute(_DELETE_COUPLES, todo_ids)
        await conn.execute(_DELETE_EMPTY_CALLS, sorted({r["callid"] for r in todo
                                                        if r["callid"] is not None}))
    else:
        await conn.execute(_MARK_DELETED, todo_ids)
    files = [len(per_couple.get(i, [])) for i in todo_ids]
    nbytes = [sum(f["cfsize"] for f in per_couple.get(i, [])) for i in todo_ids]
    await conn.execute(_AUDIT, reason, requested_by, metadata, comment,
                       [r["sid"] for r in todo], todo_ids, files, nbytes, job_id)
    await conn.execute(_TOMBSTONE, [r["sid"] for r in todo])
    out.sids = [r["sid"] for r in todo]
    out.files, out.bytes = sum(files), sum(nbytes)
    return list(removed)
