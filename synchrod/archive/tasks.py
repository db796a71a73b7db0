"""Running an archive task once, by its schedule or by hand (SPEC §10): under
the task's advisory lock (one run of a task at a time, whichever process —
daemon or `synchrod archive run` — asks), runs it left ``running`` by a
process that died ended as failed first, then the run itself."""
from __future__ import annotations

import datetime as dt

import asyncpg
import structlog

from ..config import ArchiveTask, Config
from ..core.catalog import Catalog
from ..pg.connect import redact
from ..replay import archive, archiveruns
from .run import RunContext, message_of, replay_roots, run

log = structlog.get_logger("synchrod.archive")

LOCK_CLASS = 0x5359_4E41   # "SYNA": one advisory lock per task name
_LOCK = "SELECT pg_try_advisory_lock($1, hashtext($2))"
_UNLOCK = "SELECT pg_advisory_unlock($1, hashtext($2))"


async def running_elsewhere(conn: asyncpg.Connection, name: str) -> bool:
    """Whether a process holds the task's lock now (a run is going on)."""
    if await conn.fetchval(_LOCK, LOCK_CLASS, name):
        await conn.fetchval(_UNLOCK, LOCK_CLASS, name)
        return False
    return True


class TaskBusy(Exception):
    """The task is running already (here or in another process)."""


def context(config: Config, task: ArchiveTask, catalog: Catalog, on_batch=None) -> RunContext:
    """What a run of ``task`` needs from the configuration and the replay schema."""
    return RunContext(task=task, tz=config.archive.zone,
                      roots=replay_roots(config.target_paths(),
                                         [s.mount_path for s in config.sources]),
                      statement=archive.candidates_statement(catalog),
                      marks=archive.marks_archive(catalog), on_batch=on_batch)


async def run_task(conn: asyncpg.Connection, ctx: RunContext, *, daemon: str,
                   slot_at: dt.datetime | None = None, requested_by: str | None = None,
                   on_start=None) -> dict | None:
    """Runs the task now (for ``slot_at``, or by hand when None) and returns
    the ended run; None when that slot has a run already. TaskBusy when a run
    of the task is going on. A run that fails on an error ends ``failed``
    with it (the error is raised again for database faults)."""
    name = ctx.task.name
    if not await conn.fetchval(_LOCK, LOCK_CLASS, name):
        raise TaskBusy(f"task {name!r} is running")
    try:
        if await archiveruns.interrupted(conn, name):
            log.warning("archive_run_interrupted", task=name)
        started = await archiveruns.start(conn, name, slot_at, daemon, requested_by)
        if started is None:
            return None
        if on_start is not None:
            on_start(started)
        log.info("archive_run_started", task=name, run=started["id"],
                 slot=started["slot_at"], requested_by=requested_by)
        try:
            return await run(conn, ctx, started["id"])
        except Exception as exc:
            detail = redact(f"{type(exc).__name__}: {exc}")
            log.error("archive_run_failed", task=name, run=started["id"], error=detail)
            try:
                await archiveruns.finish(conn, started["id"], "failed",
                                         message_of("failed", name, detail))
            except Exception:  # noqa: BLE001 - the database is away: the next run repairs
                pass
            raise
    finally:
        if not conn.is_closed():
            try:
                await conn.fetchval(_UNLOCK, LOCK_CLASS, name)
            except Exception:  # noqa: BLE001 - a lost connection released it already
                pass
