"""One run of an archive task (SPEC §10): every not yet archived file of the
task's calls within ``lookback_days``, page by page (one query per page
with every sidecar field), copied and verified in a bounded pool, one
``syncfs`` for the page, then the page's manifest rows and entries in one
transaction. A file's failure is its entry; a full destination ends the run
(``destination_full``) recording nothing for what was not written. A run
killed anywhere leaves only journaled temporary files, which the next run
of the task removes first."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import asyncpg
import structlog

from .. import faults
from ..config import ArchiveTask
from ..core import archivelayout as layout
from ..core import clock
from ..errors import CallError, TargetError
from ..fs import archivecopy, copying
from ..replay import archive, archiveruns

log = structlog.get_logger("synchrod.archive")

BATCH = 500     # files per page: one query, one syncfs (a disk cache flush), one commit
WORKERS = 4     # copies at once


@dataclass(frozen=True)
class RunContext:
    """What a run needs besides the database: the task, the archive's time
    zone, where replay files may be read from (real paths), the page
    statement for this replay schema, whether couples carry archive marks."""
    task: ArchiveTask
    tz: ZoneInfo
    roots: tuple[str, ...]
    statement: str
    marks: bool
    workers: int = WORKERS
    on_batch: Callable[[str, int, int, int], None] | None = None   # task, ok, failed, bytes


@dataclass
class _Page:
    archived: list[dict] = field(default_factory=list)
    entries: list[tuple] = field(default_factory=list)
    failed: int = 0
    target: TargetError | None = None


def message_of(state: str, name: str, detail: str | None = None) -> str:
    """The run's message as SPEC §10 words it."""
    if state == "completed":
        return f"Task '{name}' completed."
    if state == "errors":
        return f"Task '{name}' had errors"
    return f"Task '{name}' failed: {detail}"


async def run(conn: asyncpg.Connection, ctx: RunContext, run_id: int, *,
              now: dt.datetime | None = None, batch: int = BATCH) -> dict:
    """Carries out the run ``run_id`` (already started) and ends it; returns
    its final view. Pipelined: a page is copied while the one before it is
    made durable and recorded. Database errors propagate (the caller ends
    the run)."""
    task, now = ctx.task, now or clock.now()
    await _clean_pending(conn, task.name)
    cursor = [archive.START]

    async def fetch() -> tuple[list[dict], list[str]]:
        """The next page and its destinations, journaled before a byte is written."""
        files = await archive.candidates(
            conn, ctx.statement, start=now - dt.timedelta(days=task.lookback_days), end=now,
            stopped_before=now - dt.timedelta(minutes=task.min_age_minutes),
            sources=task.sources or None, task=task.name, after=cursor[0], limit=batch)
        dests = _destinations(ctx, files)
        if files:
            await archive.pending_add(conn, task.name, dests)
            last = files[-1]
            cursor[0] = (last["start_ts"], last["couple_id"], last["cfile_id"])
        return files, dests

    pages: list[_Page] = []
    finishing = None   # the previous page being made durable and recorded (it has the connection)
    with ThreadPoolExecutor(ctx.workers, thread_name_prefix=f"archive-{task.name}") as pool:
        try:
            files, dests = await fetch()
            while files:
                copied = await _copy(ctx, run_id, files, dests, pool, now)
                if finishing is not None:
                    pages.append(await finishing)
                    finishing = None
                if copied.page.target is not None:   # the destination is full: no further page
                    pages.append(await _finish(conn, ctx, run_id, copied))
                    break
                files, dests = await fetch()
                finishing = asyncio.ensure_future(_finish(conn, ctx, run_id, copied))
            if finishing is not None:
                pages.append(await finishing)
                finishing = None
        finally:
            if finishing is not None:   # an error: let the record end before the connection is used
                await asyncio.gather(finishing, return_exceptions=True)
    couples = {a["cplid"] for p in pages for a in p.archived}
    target = next((p.target for p in pages if p.target is not None), None)
    state, detail = ("failed", _target_detail(target)) if target else ("completed", None)
    if ctx.marks and couples:
        await archive.mark_archived(conn, sorted(couples), task.name, task.folder)
    counts = await archiveruns.get(conn, run_id)
    if state == "completed" and counts["files_failed"]:
        state = "errors"
    end = await archiveruns.finish(conn, run_id, state, message_of(state, task.name, detail))
    log.info("archive_run_" + state, task=task.name, run=run_id, files_ok=end["files_ok"],
             files_failed=end["files_failed"], bytes=end["bytes"], message=end["message"])
    return end


def _target_detail(error: TargetError) -> str:
    kind = "destination_full" if error.reason == "storage_full" else "destination_unwritable"
    return f"{kind}: {error.detail}"


async def _clean_pending(conn: asyncpg.Connection, task: str) -> None:
    """Removes the temporary files an interrupted run of the task left."""
    left = await archive.pending_of(conn, task)
    if left:
        await asyncio.to_thread(lambda: [archivecopy.clean(p) for p in left])
        await archive.pending_forget(conn, left)
        log.info("archive_repaired", task=task, temporary_files=len(left))


def _destinations(ctx: RunContext, files: list[dict]) -> list[str]:
    return [layout.destination(ctx.task.folder, layout.relative_path(
        f["start_ts"], ctx.tz, f["sid"], f["cftype"], f["cfile_id"], f["cfpath"])) for f in files]


@dataclass
class _Copied:
    """A page copied, not yet durable nor recorded."""
    page: _Page
    dests: list[str]
    failed: list[str]   # destinations of the files that failed (their leftovers to clean)


async def _copy(ctx: RunContext, run_id: int, files: list[dict], dests: list[str],
                pool: ThreadPoolExecutor, now: dt.datetime) -> _Copied:
    """Copies one page's files in the pool; each file's result accounted.
    One job per worker, each taking the page's next file until none is
    left: a handful of futures per page rather than one per file, whose
    completions would each wake the event loop and contend for the GIL."""
    take, made = _Taker(len(files)), set()   # made: directories known to exist

    def job() -> list[tuple[int, object]]:
        out = []
        for i in iter(take, None):
            try:
                out.append((i, _copy_one(ctx, run_id, files[i], dests[i], now, made)))
            except (CallError, TargetError) as exc:   # the file's own result
                out.append((i, exc))
        return out

    loop = asyncio.get_running_loop()
    done = await asyncio.gather(*[loop.run_in_executor(pool, job)
                                  for _ in range(min(ctx.workers, len(files)))],
                                return_exceptions=True)
    unexpected = next((d for d in done if isinstance(d, BaseException)), None)
    if unexpected is not None:
        raise unexpected   # a bug or the process stopping: the run fails, the journal stays
    results: list = [None] * len(files)
    for i, result in (r for part in done for r in part):
        results[i] = result
    page = _Page()
    for f, dest, result in zip(files, dests, results):
        _account(page, f, dest, result)
    return _Copied(page, dests, [d for d, r in zip(dests, results) if isinstance(r, BaseException)])


class _Taker:
    """The next index of a page for whichever worker asks (None when none is left)."""
    def __init__(self, n: int):
        self._next, self._n, self._lock = 0, n, threading.Lock()

    def __call__(self) -> int | None:
        with self._lock:
            if self._next >= self._n:
                return None
            self._next += 1
            return self._next - 1


async def _finish(conn: asyncpg.Connection, ctx: RunContext, run_id: int, copied: _Copied) -> _Page:
    """Makes a copied page durable (one syncfs), then records it in one transaction."""
    task, page = ctx.task, copied.page
    if page.archived:
        await asyncio.to_thread(copying.syncfs, task.folder)
    faults.point("archive_batch")
    if copied.failed:
        await asyncio.to_thread(lambda: [archivecopy.clean(d) for d in copied.failed])
    await archive.record(conn, task.name, run_id, page.archived, page.entries, page.failed)
    await archive.pending_forget(conn, copied.dests)
    if ctx.on_batch is not None:
        ctx.on_batch(task.name, len(page.archived), page.failed,
                     sum(a["bytes"] for a in page.archived))
    return page


def _copy_one(ctx: RunContext, run_id: int, f: dict, dest: str, now: dt.datetime, made: set):
    """Blocking: one file and its sidecar (the sidecar holds the copy's sha256)."""
    def sidecar(sha256: str) -> bytes:
        return layout.sidecar_bytes(layout.sidecar(f, task=ctx.task.name, run_id=run_id,
                                                   archived_at=clock.now(), sha256=sha256,
                                                   tz=ctx.tz))
    return archivecopy.archive_file(ctx.roots, f["cfpath"], dest, f["cfsize"], sidecar, made)


def _account(page: _Page, f: dict, dest: str, result) -> None:
    side = layout.sidecar_path(dest)
    if isinstance(result, archivecopy.Copied):
        page.archived.append({"cfile_id": f["cfile_id"], "cplid": f["couple_id"], "sid": f["sid"],
                              "destination": dest, "sha256": result.sha256, "bytes": result.size})
        page.entries += [("media", dest, f["cfpath"], f["sid"], "archived", None),
                         ("sidecar", side, f["cfpath"], f["sid"], "archived", None)]
    elif isinstance(result, TargetError):
        page.target = page.target or result   # not this file's fault: nothing recorded for it
    elif isinstance(result, CallError):
        page.failed += 1
        page.entries += [("media", dest, f["cfpath"], f["sid"], "failed", str(result)),
                         ("sidecar", side, f["cfpath"], f["sid"], "failed",
                          "not written: its media file failed")]


def replay_roots(target_paths: Sequence[str], mounts: Sequence[str]) -> tuple[str, ...]:
    """Where replay files may be read from: the target paths and the sources'
    mounts (linked files), as real paths."""
    return tuple(sorted({os.path.realpath(p) for p in (*target_paths, *mounts)}))
