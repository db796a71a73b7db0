"""Carrying out a bulk delete job (SPEC §9, MediaSense ``deleteSessions``):
batch after batch of the couples it selects, each batch removed in the
crash-safe order of ``replay.deletions`` with the job's progress in the same
transaction, its files unlinked once it committed. A cancellation is seen
between batches; the database going away leaves the job running, to be
resumed from its last committed batch by whichever daemon holds the duty."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg
import structlog

from .. import faults
from ..core import clock
from ..pg.connect import UNREACHABLE, redact
from ..replay import deletionjobs, deletions
from ..replay.deletionjobs import OpenJob
from .purge import unlink

log = structlog.get_logger("synchrod.storage")

BATCH = 200   # couples per batch: progress a page can watch, few round trips

#: (job view, the state it entered or None) after every change of a job
Progress = Callable[[dict, str | None], None]
#: a SESSION_EVENT (calls deleted) after every batch that removed some
Deleted = Callable[[dict], None]


async def carry_out(conn: asyncpg.Connection, job_id: int, *, daemon: str,
                    owned_roots: Sequence[str], progress: Progress, deleted: Deleted,
                    batch: int = BATCH) -> dict | None:
    """Runs the job to its end (done, cancelled or failed) and returns its
    last view; None when it had ended before. Raises what ``UNREACHABLE``
    names (the job stays running and is resumed later)."""
    job = await deletionjobs.start(conn, job_id, daemon)
    if job is None:
        return None
    progress(job.view, "running")
    await unlink(conn, None)   # a batch's files a crash left (it may be this job's)
    log.info("deletion_job_running", job=job_id, requested_by=job.view["requested_by"],
             selection=job.view["selection"])
    try:
        while True:
            if await deletionjobs.cancel_requested(conn, job_id):
                return await _end(conn, job, "cancelled", progress,
                                  f"cancelled after {job.view['operations_completed']} calls")
            if not await _one_batch(conn, job, batch, owned_roots, progress, deleted):
                return await _end(conn, job, "done", progress,
                                  f"{job.view['operations_completed']} calls deleted, "
                                  f"{job.view['skipped_protected']} protected skipped")
    except UNREACHABLE:
        raise
    except Exception as exc:  # noqa: BLE001 - a job that cannot go on fails, the daemon does not
        message = redact(f"{type(exc).__name__}: {exc}")
        log.error("deletion_job_failed", job=job_id, error=message)
        return await _end(conn, job, "failed", progress, message)


async def _one_batch(conn: asyncpg.Connection, job: OpenJob, batch: int,
                     owned_roots: Sequence[str], progress: Progress, deleted: Deleted) -> bool:
    """Removes the next batch; False when nothing is left."""
    page, position, not_found = await _next_page(conn, job, batch)
    if page is None:
        return False
    protected = sum(1 for c in page if c.protected)
    todo = [c.id for c in page if not c.protected]
    done = deletions.Pruned()
    async with conn.transaction():
        if todo:
            done = await deletions.prune_batch(
                conn, todo, reason="api", requested_by=job.view["requested_by"],
                comment=job.view["comment"], metadata=job.metadata, owned_roots=owned_roots,
                job_id=job.view["id"])
        # protected since listed, or gone since listed (removed by someone else)
        vanished = len(todo) - len(done.sids) - len(done.protected)
        view = await deletionjobs.advance(conn, job, position, removed=len(done.sids),
                                          protected=protected + len(done.protected),
                                          not_found=not_found + vanished,
                                          files=done.files, nbytes=done.bytes)
    faults.point("deletion_batch")
    await unlink(conn, done.unlink)
    if done.sids:
        deleted({"eventType": "SESSION_EVENT", "eventAction": "DELETED", "sids": done.sids,
                 "reason": "api", "files": done.files, "bytes": done.bytes,
                 "job": job.view["id"], "at": clock.iso(clock.now())})
    progress(view, None)
    return True


async def _next_page(conn: asyncpg.Connection, job: OpenJob, batch: int):
    """(the next couples, the position after them, sids of the batch no
    couple has), or (None, ...) at the end."""
    sel = job.selection
    if sel.sids is not None:
        done = job.position[1]
        chunk = deletionjobs.sid_slice(sel.sids, done, batch)
        if not chunk:
            return None, job.position, 0
        page = await deletions.candidates(conn, before=None, sids=chunk, source=sel.source,
                                          metadata=job.metadata, limit=len(chunk))
        found = {c.sid for c in page}
        return page, (None, done + len(chunk)), sum(1 for s in chunk if s not in found)
    after = (job.position if job.position[0] is not None else deletions.START)
    page = await deletions.candidates(conn, before=sel.before, sids=None, source=sel.source,
                                      metadata=job.metadata, limit=batch, after=after)
    if not page:
        return None, job.position, 0
    return page, (page[-1].start_ts, page[-1].id), 0


async def _end(conn: asyncpg.Connection, job: OpenJob, state: str, progress: Progress,
               message: str) -> dict:
    view = await deletionjobs.finish(conn, job.view["id"], state, message) or job.view
    log.info("deletion_job_" + state, job=job.view["id"], calls=view["operations_completed"],
             skipped_protected=view["skipped_protected"], bytes=view["bytes_freed"])
    progress(view, state)
    return view


async def preview(conn: asyncpg.Connection, selection: deletionjobs.Selection, *,
                  metadata: bool, listed: int = 100) -> dict:
    """What a job would remove now (a dry run: nothing changes): counts,
    files and bytes, and the first ``listed`` calls."""
    out = {"dry_run": True, **await deletionjobs.summary(conn, selection, metadata)}
    if selection.sids is not None:
        page = await deletions.candidates(conn, before=None, sids=selection.sids,
                                          source=selection.source, metadata=metadata, limit=0)
    else:
        after = (selection.after, 0) if selection.after else deletions.START
        page = await deletions.candidates(conn, before=selection.before, sids=None,
                                          source=selection.source, metadata=metadata,
                                          limit=listed * 2, after=after)
    page = [c for c in page if not c.protected][:listed]
    sizes = await deletions.sizes(conn, [c.id for c in page])
    out["recordings"] = [{"sid": c.sid, "couple_id": c.id, "start_ts": clock.iso(c.start_ts),
                          "files": sizes.get(c.id, (0, 0))[0], "bytes": sizes.get(c.id, (0, 0))[1]}
                         for c in page]
    return out
