"""What one source keeps between its cycles: its recorder connection and
batch statements, its media pool with the stall detector, its state (through
:class:`~synchrod.core.states.SourceLifecycle`) and what the monitor shows of
its job."""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import structlog

from ..config import SourceConfig
from ..core import clock
from ..core.states import SourceEvent, SourceLifecycle, SourceState
from ..errors import MediaStalled, SameDatabaseError, SchemaError
from ..pg import introspect
from ..recorder import Recorder, open_recorder
from ..replay.statements import BatchStatements

if TYPE_CHECKING:
    from .cycle import CycleResult
    from .engine import Engine

log = structlog.get_logger("synchrod.engine")


@dataclass
class SourceRuntime:
    """One configured source while the daemon runs (kept across reloads)."""
    config: SourceConfig
    pool: ThreadPoolExecutor
    workers: int
    recorder: Recorder | None = None   # the recorder connection, with its catalog
    statements: BatchStatements | None = None   # for this recorder and the replay database
    speech_digests: tuple[str, str] | None = None  # (replay, recorder) when last made identical
    verified: bool = False        # identity compared with the target's
    index_ready: bool = False
    lifecycle: SourceLifecycle = field(default_factory=SourceLifecycle)
    last_error: str | None = None
    last_cycle_at: dt.datetime | None = None
    # media jobs handed to the pool and not finished; a hung mount keeps them
    inflight: set[Future] = field(default_factory=set)
    progress_at: float = 0.0      # monotonic time of the last finished media job
    stalled_since: dt.datetime | None = None
    # what the monitor shows: the job of this source (SPEC §8)
    job_id: int = 0               # stable while the daemon runs
    generation: int = 0           # cycles started
    phase: str | None = None      # load | compare | copy | commit | mark
    phase_at: dt.datetime | None = None
    failures_in_row: int = 0      # consecutive cycles that ended down or error
    last_success_at: dt.datetime | None = None
    last_result: CycleResult | None = None   # the last cycle's result
    last_work: CycleResult | None = None     # the last one that took calls
    backlog: int | None = None    # eligible calls not yet synchronized (None: not known yet)
    oldest_pending_at: dt.datetime | None = None
    paused_by: str | None = None  # paused through the API (until resume or restart)

    @property
    def state(self) -> SourceState:
        """The source's state; changed only through :meth:`on`."""
        return self.lifecycle.state

    def on(self, event: SourceEvent) -> SourceState:
        """Moves the source's state machine (see ``core.states.TRANSITIONS``)."""
        return self.lifecycle.on(event)

    def set_phase(self, phase: str) -> None:
        """The step of the cycle under way, for the monitor's job view."""
        self.phase, self.phase_at = phase, clock.now()

    # --- media I/O off the event loop, with a stall detector -----------------------
    def touch(self) -> None:
        """A media job made progress (called from the pool's threads too)."""
        self.progress_at = time.monotonic()

    @property
    def busy(self) -> bool:
        """Some media job has not returned (a hung mount keeps it)."""
        return any(not f.done() for f in list(self.inflight))

    def submit(self, fn: Callable, *args: Any) -> Future:
        """Runs ``fn(*args)`` in the source's pool, tracked as in flight."""
        def job():
            try:
                return fn(*args)
            finally:
                self.touch()
        fut = self.pool.submit(job)
        self.inflight.add(fut)
        fut.add_done_callback(self.inflight.discard)
        return fut

    async def media_all(self, io_timeout: float, calls: list[tuple]) -> list:
        """Runs ``(fn, *args)`` calls in the source's pool; their results in
        order (the first exception is raised). A hung mount never returns: when
        no call has finished for ``io_timeout`` seconds, MediaStalled is raised
        and the calls are left to finish (or not) in their threads."""
        futs = [asyncio.wrap_future(self.submit(*c)) for c in calls]
        for f in futs:  # a call abandoned by a stall must not warn when it fails later
            f.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.touch()
        pending = set(futs)
        poll = max(0.05, min(io_timeout / 4, 2.0))
        while pending:
            _, pending = await asyncio.wait(pending, timeout=poll)
            idle = time.monotonic() - self.progress_at
            if pending and idle >= io_timeout:
                raise MediaStalled(f"media I/O under {self.config.mount_path} made no progress "
                                   f"for {idle:.0f} s (hung mount?)")
        return [f.result() for f in futs]

    async def media(self, io_timeout: float, fn: Callable, *args: Any):
        """One call of :meth:`media_all`: ``fn(*args)`` in the pool, bounded by the stall detector."""
        return (await self.media_all(io_timeout, [(fn, *args)]))[0]

    def check_resumed(self) -> bool:
        """True when the source may cycle: not stalled, or its stalled I/O returned."""
        if self.stalled_since is None:
            return True
        if self.busy:
            return False
        log.info("source_resumed", source=self.config.sysname,
                 stalled_seconds=round((clock.now() - self.stalled_since).total_seconds(), 1))
        self.stalled_since = None
        return True

    def refresh_pool(self, workers: int) -> None:
        """Adopts a changed ``copy_workers`` between cycles."""
        if workers != self.workers and not self.busy:
            old, self.pool = self.pool, media_pool(self.config.sysname, workers)
            self.workers = workers
            old.shutdown(wait=False)

    async def connection(self, engine: Engine) -> Recorder:
        """The recorder, connected, its catalog read and checked against what
        this source's configuration needs (SchemaError names what is missing)."""
        if self.recorder is None or self.recorder.is_closed():
            self.recorder = await open_recorder(
                self.config.database, text_encoding=self.config.text_encoding,
                application_name=f"synchrod:{self.config.sysname}")
            self.statements = None
            if not self.verified:
                ident = await introspect.database_identity(self.recorder.conn)
                if ident == engine.target_identity:
                    await self.drop()
                    raise SameDatabaseError(f"source {self.config.sysname} is the replay database itself")
                self.verified = True
        problems = engine.schema_problems(self.config, self.recorder.catalog)
        if problems:
            raise SchemaError("; ".join(problems))
        if self.statements is None:
            self.statements = BatchStatements.build(self.recorder.catalog, engine.target_catalog,
                                                    engine.config.synchro.synchronize_voice_tags)
        return self.recorder

    async def retire(self) -> None:
        """A source removed from the configuration: closed once its cycle ends."""
        while self.state is SourceState.RUNNING:
            await asyncio.sleep(0.2)
        await self.drop()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def drop(self) -> None:
        """Closes the recorder connection (the next cycle opens a new one)."""
        rec, self.recorder = self.recorder, None
        if rec is not None:
            await rec.close()


def media_pool(sysname: str, workers: int) -> ThreadPoolExecutor:
    """A source's bounded pool of media threads."""
    # the thread names carry the source (faults.SYNCHROD_FAULT_SOURCE reads them)
    return ThreadPoolExecutor(workers, thread_name_prefix=f"media-{sysname}")
