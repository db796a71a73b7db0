"""The daemon's bulk delete helper: on the daemon holding the "deletions"
duty, carries out the queued jobs one after the other (SPEC §9), woken at
once by a job created through this daemon's API, else within ``POLL``
seconds. A job left running by a daemon that stopped is resumed from its
last committed batch."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from ..pg.connect import UNREACHABLE, redact
from ..replay import deletionjobs
from ..storage import jobs
from ..sync.engine import Engine
from .ownership import Ownership

log = structlog.get_logger("synchrod")

DUTY = "deletions"
POLL = 2.0        # seconds between looks for jobs queued through another daemon
RETRY = 10.0      # seconds before trying again after the replay database went away


class DeletionWatch:
    """Carries out bulk delete jobs; their progress goes to
    ``engine.storage_listeners`` (the monitor: SSE, metrics), the calls
    deleted to ``publish`` (the storage events' way: listeners, log and
    subscribers)."""

    def __init__(self, engine: Engine, ownership: Ownership, publish: Callable[[dict], None]):
        self.engine = engine
        self.ownership = ownership
        self.publish = publish
        self.wake = asyncio.Event()   # set when this daemon's API queued a job

    def queued(self) -> None:
        """A job was just created here: look now."""
        self.wake.set()

    async def run(self) -> None:
        """Forever: waits for a job, then carries out every open one. Never
        ends on an error: the job stays where its last batch left it."""
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), POLL)
            except TimeoutError:
                pass
            self.wake.clear()
            if not self.engine.schema_ready or self.engine.target_pool is None:
                continue
            try:
                await self._work()
            except UNREACHABLE as exc:
                log.warning("deletion_jobs_unavailable", error=redact(f"{type(exc).__name__}: {exc}"))
                await asyncio.sleep(RETRY)
            except Exception:  # noqa: BLE001 - the helper must not end
                log.exception("deletion_jobs_failed")
                await asyncio.sleep(RETRY)

    async def _work(self) -> None:
        async with self.engine.target_pool.acquire(timeout=10) as conn:
            job_id = await deletionjobs.next_open(conn)
            while job_id is not None:
                if not await self.ownership.claim_duty(DUTY):
                    return   # another daemon carries out the jobs
                await jobs.carry_out(conn, job_id, daemon=self.engine.daemon_name,
                                     owned_roots=self.engine.owned_roots(),
                                     progress=self._progress, deleted=self._deleted)
                job_id = await deletionjobs.next_open(conn)

    def _progress(self, view: dict, entered: str | None) -> None:
        event = {"eventType": "DELETION_JOB", "job": view, "entered": entered}
        for listener in self.engine.storage_listeners:
            listener(event)

    def _deleted(self, event: dict) -> None:
        log.info("storage_deleted", job=event["job"], calls=len(event["sids"]),
                 files=event["files"], bytes=event["bytes"])
        self.publish(event)
