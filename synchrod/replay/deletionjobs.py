"""Bulk delete jobs in the replay database (``synchrod.deletion_jobs``, SPEC
§9): created by the API, claimed and advanced batch by batch by the daemon
holding the "deletions" duty, cancelled by the API. Progress is written in
the transaction of the batch it counts, so a job resumes exactly where it
stopped."""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from ..core import clock

FINAL = ("done", "cancelled", "failed")
STATES = ("queued", "running") + FINAL

#: a filter's matching couples, as deletions.candidates selects them: $1
#: before, $2 at or after (NULL: any), $3 source (NULL: any), $4 pruned too;
#: a list's: $1 sids, $2 source, $3 pruned too
_MATCH_FILTER = """
SELECT c.id, coalesce(c.protected, false) AS protected
  FROM callrec.couples c
 WHERE c.start_ts < $1
   AND ($2::timestamptz IS NULL OR c.start_ts >= $2)
   AND ($4::bool OR c.deleted IS DISTINCT FROM 'D')
   AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM synchrod.synced s
                                     WHERE s.target_cplid = c.id AND s.source = $3))
"""
_MATCH_SIDS = """
SELECT c.id, coalesce(c.protected, false) AS protected
  FROM callrec.couples c
 WHERE c.sid = ANY($1::text[]) AND ($3::bool OR c.deleted IS DISTINCT FROM 'D')
   AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM synchrod.synced s
                                     WHERE s.target_cplid = c.id AND s.source = $2))
"""
_SUMMARY = """
SELECT count(*) FILTER (WHERE NOT m.protected)::int AS operations,
       count(*) FILTER (WHERE m.protected)::int AS skipped_protected,
       coalesce(sum(f.files), 0)::bigint AS files, coalesce(sum(f.bytes), 0)::bigint AS bytes
  FROM ({match}) m
  LEFT JOIN LATERAL (SELECT count(*) AS files, sum(cf.cfsize) AS bytes
                       FROM callrec.cfiles cf WHERE cf.cplid = m.id) f ON NOT m.protected
"""
SUMMARY_FILTER = _SUMMARY.format(match=_MATCH_FILTER)
SUMMARY_SIDS = _SUMMARY.format(match=_MATCH_SIDS)

_COLUMNS = """id, state, sids IS NOT NULL AS by_sids, coalesce(cardinality(sids), 0) AS sid_count,
 before, after, source, metadata, comment, requested_by, created_at, started_at, finished_at,
 cancel_requested, operations_completed, operations_remaining, skipped_protected, not_found,
 files_freed, bytes_freed, daemon, message"""
_CREATE = f"""
INSERT INTO synchrod.deletion_jobs (sids, before, after, source, metadata, comment, requested_by,
                                    operations_remaining, position_ts)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $3)
RETURNING {_COLUMNS}
"""
_GET = f"SELECT {_COLUMNS} FROM synchrod.deletion_jobs WHERE id = $1"
_RECENT = f"SELECT {_COLUMNS} FROM synchrod.deletion_jobs ORDER BY id DESC LIMIT $1"
_NEXT_OPEN = """
SELECT id FROM synchrod.deletion_jobs WHERE state IN ('queued', 'running') ORDER BY id LIMIT 1
"""
_START = f"""
UPDATE synchrod.deletion_jobs
   SET state = 'running', started_at = coalesce(started_at, now()), daemon = $2
 WHERE id = $1 AND state IN ('queued', 'running')
RETURNING {_COLUMNS}, sids, position_ts, position_id
"""
_ADVANCE = f"""
UPDATE synchrod.deletion_jobs
   SET position_ts = $2, position_id = $3,
       operations_completed = operations_completed + $4,
       skipped_protected = skipped_protected + $5, not_found = not_found + $6,
       operations_remaining = greatest(0, operations_remaining - $4 - $5 - $6),
       files_freed = files_freed + $7, bytes_freed = bytes_freed + $8
 WHERE id = $1
RETURNING {_COLUMNS}
"""
_FINISH = f"""
UPDATE synchrod.deletion_jobs
   SET state = $2, finished_at = now(), message = $3,
       operations_remaining = CASE WHEN $2::text = 'done' THEN 0 ELSE operations_remaining END
 WHERE id = $1 AND state IN ('queued', 'running')
RETURNING {_COLUMNS}
"""
_CANCEL_REQUESTED = "SELECT cancel_requested FROM synchrod.deletion_jobs WHERE id = $1"
_CANCEL = f"""
UPDATE synchrod.deletion_jobs
   SET cancel_requested = true,
       state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
       finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
       message = CASE WHEN state = 'queued' THEN 'cancelled before it started by ' || $2
                      ELSE message END
 WHERE id = $1 AND state IN ('queued', 'running')
RETURNING {_COLUMNS}
"""


@dataclass(frozen=True, slots=True)
class Selection:
    """What a job deletes: the couples of ``sids``, or those a filter matches
    (started before ``before``, at or after ``after``, from ``source``)."""
    sids: tuple[str, ...] | None = None
    before: dt.datetime | None = None
    after: dt.datetime | None = None
    source: str | None = None

    def args(self, metadata: bool) -> tuple:
        """The arguments of the SUMMARY statements."""
        if self.sids is not None:
            return (list(self.sids), self.source, metadata)
        return (self.before, self.after, self.source, metadata)


@dataclass(slots=True)
class OpenJob:
    """A job being carried out: its view and where it is."""
    view: dict
    selection: Selection
    metadata: bool
    position: tuple[dt.datetime | None, int]


def view(row: asyncpg.Record) -> dict:
    """A job as the API shows it."""
    selection = ({"kind": "sids", "count": row["sid_count"]} if row["by_sids"] else
                 {"kind": "filter", "before": clock.iso(row["before"]),
                  "after": clock.iso(row["after"]) if row["after"] else None,
                  "source": row["source"]})
    out = {k: row[k] for k in ("id", "state", "operations_completed", "operations_remaining",
                               "skipped_protected", "not_found", "files_freed", "bytes_freed",
                               "requested_by", "comment", "metadata", "cancel_requested",
                               "daemon", "message")}
    for k in ("created_at", "started_at", "finished_at"):
        out[k] = clock.iso(row[k]) if row[k] else None
    out["selection"] = selection
    return out


async def summary(conn: asyncpg.Connection, selection: Selection, metadata: bool) -> dict:
    """How many calls a selection removes now, how many protected ones it
    skips, their files and bytes."""
    stmt = SUMMARY_SIDS if selection.sids is not None else SUMMARY_FILTER
    return dict(await conn.fetchrow(stmt, *selection.args(metadata)))


async def create(conn: asyncpg.Connection, selection: Selection, *, metadata: bool,
                 comment: str | None, requested_by: str) -> dict:
    """Queues a job; its ``operations_remaining`` counts every matching
    couple now (protected ones included: they are skipped and counted)."""
    found = await summary(conn, selection, metadata)
    total = found["operations"] + found["skipped_protected"]
    if selection.sids is not None:
        total = len(selection.sids)   # sids no couple has are counted as not found
    row = await conn.fetchrow(_CREATE, list(selection.sids) if selection.sids is not None else None,
                              selection.before, selection.after, selection.source, metadata,
                              comment, requested_by, total)
    return view(row)


async def get(conn: asyncpg.Connection, job_id: int) -> dict | None:
    """One job's view, None when there is no such job."""
    row = await conn.fetchrow(_GET, job_id)
    return view(row) if row else None


async def recent(conn: asyncpg.Connection, limit: int = 50) -> list[dict]:
    """The latest jobs, newest first."""
    return [view(r) for r in await conn.fetch(_RECENT, limit)]


async def next_open(conn: asyncpg.Connection) -> int | None:
    """The oldest job queued or running (a running one: its daemon stopped)."""
    return await conn.fetchval(_NEXT_OPEN)


async def start(conn: asyncpg.Connection, job_id: int, daemon: str) -> OpenJob | None:
    """Takes a job on (again, after a restart); None when it ended meanwhile."""
    row = await conn.fetchrow(_START, job_id, daemon)
    if row is None:
        return None
    sids = tuple(row["sids"]) if row["sids"] is not None else None
    selection = Selection(sids, row["before"], row["after"], row["source"])
    return OpenJob(view(row), selection, row["metadata"], (row["position_ts"], row["position_id"]))


async def advance(conn: asyncpg.Connection, job: OpenJob, position: tuple, *, removed: int,
                  protected: int, not_found: int, files: int, nbytes: int) -> dict:
    """Counts one batch (inside its transaction) and moves the job past it."""
    row = await conn.fetchrow(_ADVANCE, job.view["id"], position[0], position[1], removed,
                              protected, not_found, files, nbytes)
    job.position, job.view = position, view(row)
    return job.view


async def finish(conn: asyncpg.Connection, job_id: int, state: str, message: str) -> dict | None:
    """Ends a job in a final state; None when it had ended already."""
    row = await conn.fetchrow(_FINISH, job_id, state, message)
    return view(row) if row else None


async def cancel_requested(conn: asyncpg.Connection, job_id: int) -> bool:
    """Whether the API asked to stop the job."""
    return bool(await conn.fetchval(_CANCEL_REQUESTED, job_id))


async def cancel(conn: asyncpg.Connection, job_id: int, user: str) -> dict | None:
    """Cancels a queued job at once, or asks a running one to stop after its
    batch; None when the job is not open (or does not exist)."""
    row = await conn.fetchrow(_CANCEL, job_id, user)
    return view(row) if row else None


def sid_slice(sids: Sequence[str], done: int, size: int) -> list[str]:
    """The next ``size`` sids of a list job after the ``done`` first."""
    return list(sids[done:done + size])
