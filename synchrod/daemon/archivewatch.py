"""The daemon's archive scheduler (SPEC §10): on the daemon holding the
"archive" duty, every few seconds, decides each task's slots (missed ones
recorded, the due one started, one coming while the task still runs
recorded as skipped) and runs them, each on a connection of its own. The
configuration's tasks are read at every tick, so a reload applies at once."""
from __future__ import annotations

import asyncio
import datetime as dt

import structlog

from ..archive import tasks as archive_tasks
from ..config import ArchiveTask
from ..core import archiveslots, clock
from ..pg.connect import UNREACHABLE, connect, redact
from ..replay import archiveruns
from ..sync.engine import Engine
from .ownership import Ownership

log = structlog.get_logger("synchrod")

DUTY = "archive"
TICK = 5.0        # seconds between looks at the schedules


def definition(task: ArchiveTask, timezone: str) -> str:
    """What identifies a task's schedule: a change of it schedules the task anew."""
    s = task.schedule
    return f"{s.kind}|{s.at}|{s.weekday or ''}|{s.day or ''}|{timezone}"


class ArchiveWatch:
    """Runs archive tasks by their schedules; ``run_now`` for the API."""

    def __init__(self, engine: Engine, ownership: Ownership):
        self.engine = engine
        self.ownership = ownership
        self.active_since: dt.datetime | None = None   # since this daemon holds the duty
        self.running: dict[str, asyncio.Task] = {}
        self.listeners: list = []   # (event, data) callbacks: started, batch, ended, slot

    async def run(self) -> None:
        """Forever: a tick every ``TICK`` seconds while archive is enabled."""
        while True:
            await asyncio.sleep(TICK)
            cfg = self.engine.config.archive
            if not cfg.enabled or not self.engine.schema_ready:
                continue
            try:
                if not await self.ownership.claim_duty(DUTY):
                    self.active_since = None
                    continue
                self.active_since = self.active_since or clock.now()
                await self.tick(clock.now())
            except UNREACHABLE as exc:
                log.warning("archive_schedule_unavailable", error=redact(f"{type(exc).__name__}: {exc}"))
            except Exception:  # noqa: BLE001 - the scheduler must not end
                log.exception("archive_schedule_failed")

    async def tick(self, now: dt.datetime) -> None:
        """Decides every enabled task's slots up to ``now``."""
        cfg = self.engine.config.archive
        async with self.engine.target_pool.acquire(timeout=10) as conn:
            known = await archiveruns.tasks(conn)
            for task in cfg.tasks:
                if not task.enabled:
                    continue
                wanted = definition(task, cfg.timezone)
                rec = known.get(task.name)
                if rec is None or rec["definition"] != wanted:
                    await archiveruns.task_seen(conn, task.name, wanted, now)
                    rec = {"last_slot_at": now, "once_done": False}
                p = archiveslots.plan(task.schedule, cfg.zone, last_handled=rec["last_slot_at"],
                                      active_since=self.active_since, now=now,
                                      once_done=rec["once_done"])
                for slot in p.missed:
                    if await archiveruns.record_slot(conn, task.name, slot, "missed",
                                                     f"Task '{task.name}' missed: no daemon ran it "
                                                     "at its time", self.engine.daemon_name):
                        self._slot(task.name, slot, "missed")
                if p.missed:
                    log.warning("archive_slots_missed", task=task.name, slots=len(p.missed))
                if p.due is not None:
                    if task.name in self.running:
                        if await archiveruns.record_slot(conn, task.name, p.due, "skipped",
                                                         f"Task '{task.name}' skipped: its previous "
                                                         "run was still going", self.engine.daemon_name):
                            self._slot(task.name, p.due, "skipped")
                        log.warning("archive_slot_skipped", task=task.name, slot=clock.iso(p.due))
                    else:
                        self.start(task, p.due)
                if p.handled_until is not None:
                    await archiveruns.slot_handled(conn, task.name, p.handled_until, p.once_done)

    def start(self, task: ArchiveTask, slot_at: dt.datetime | None,
              requested_by: str | None = None) -> bool:
        """Starts a run of ``task`` in the background; False when one is going on here."""
        if task.name in self.running:
            return False
        self.running[task.name] = asyncio.create_task(self._run(task, slot_at, requested_by),
                                                      name=f"archive-{task.name}")
        return True

    async def _run(self, task: ArchiveTask, slot_at: dt.datetime | None,
                   requested_by: str | None) -> None:
        """One run of ``task`` on a connection of its own; the listeners hear it
        start and end (a run that fails on an error ends ``failed``), or the
        slot that had no run (skipped: the task runs elsewhere; failed: it
        could not start)."""
        started: list[dict] = []

        def on_start(view: dict) -> None:
            started.append(view)
            self._notify("started", view)
        try:
            conn = await connect(self.engine.config.target.database,
                                 application_name=f"synchrod:archive:{self.engine.daemon_name}")
            try:
                ctx = archive_tasks.context(self.engine.config, task, self.engine.target_catalog,
                                            on_batch=self._batch)
                end = await archive_tasks.run_task(conn, ctx, daemon=self.engine.daemon_name,
                                                   slot_at=slot_at, requested_by=requested_by,
                                                   on_start=on_start)
                if end is not None:
                    self._notify("ended", end)
            finally:
                await conn.close()
        except archive_tasks.TaskBusy:
            if slot_at is not None:   # a run by hand refused so has no slot to count
                async with self.engine.target_pool.acquire(timeout=10) as conn:
                    recorded = await archiveruns.record_slot(
                        conn, task.name, slot_at, "skipped",
                        f"Task '{task.name}' skipped: its previous run was still going",
                        self.engine.daemon_name)
                if recorded:
                    self._slot(task.name, slot_at, "skipped")
        except Exception as exc:  # noqa: BLE001 - logged; the next slot tries again
            log.warning("archive_run_error", task=task.name,
                        error=redact(f"{type(exc).__name__}: {exc}"))
            if started:   # run_task ended it failed (as far as the database let it)
                self._notify("ended", {**started[0], "state": "failed"})
            else:         # it could not start: the slot (or the request) has no run
                self._slot(task.name, slot_at, "failed")
        finally:
            self.running.pop(task.name, None)

    def _slot(self, task: str, slot_at: dt.datetime | None, state: str) -> None:
        """A slot (None: a run by hand) that had no run: ``missed``, ``skipped``,
        or ``failed`` when its run could not even start."""
        self._notify("slot", {"task": task, "state": state,
                              "slot_at": clock.iso(slot_at) if slot_at else None})

    def _batch(self, task: str, ok: int, failed: int, nbytes: int) -> None:
        self._notify("batch", {"task": task, "ok": ok, "failed": failed, "bytes": nbytes})

    def _notify(self, what: str, data: dict) -> None:
        for listener in self.listeners:
            listener(what, data)

    async def close(self) -> None:
        """Cancels the runs going on (their journal lets the next run repair)."""
        for t in list(self.running.values()):
            t.cancel()
        await asyncio.gather(*self.running.values(), return_exceptions=True)
