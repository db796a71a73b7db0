"""Long-lived state shared by cycles: the target pool, one runtime per source
(its connection, its media pool), the balance ledger of target paths."""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import asyncpg
import structlog

from . import media, recorder
from .config import Config, SourceConfig
from .core import catalog as schema_rules
from .core.catalog import Catalog
from .core.filters import taken_types
from .dbconn import UNREACHABLE, create_pool, redact
from .introspect import read_catalog
from .recorder import Recorder
from .replay import controls, reads, schema
from .replay.statements import BatchStatements


log = structlog.get_logger("synchrod.engine")
TARGET_TIMEOUT = 10.0   # seconds a target path's measurement may take


class SameDatabaseError(Exception):
    """A source DSN names the replay database itself."""


class MediaStalled(Exception):
    """A source's media I/O made no progress for ``io_timeout`` seconds."""


class SchemaError(Exception):
    """A database lacks what synchrod needs; the message names every part."""


@dataclass
class SourceRuntime:
    cfg: SourceConfig
    pool: ThreadPoolExecutor
    workers: int
    rec: Recorder | None = None   # the recorder connection, with its catalog
    statements: BatchStatements | None = None   # for this recorder and the replay database
    speech_digests: tuple[str, str] | None = None  # (replay, recorder) when last made identical
    verified: bool = False        # identity compared with the target's
    index_ready: bool = False
    state: str = "waiting"        # waiting | running | down | disabled | standby
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
    last_result: object | None = None   # the last cycle.CycleResult
    last_work: object | None = None     # the last one that took calls
    backlog: int | None = None    # eligible calls not yet synchronized (None: not known yet)
    oldest_pending_at: dt.datetime | None = None
    paused_by: str | None = None  # paused through the API (until resume or restart)

    def set_phase(self, phase: str) -> None:
        self.phase, self.phase_at = phase, _now()

    # --- media I/O off the event loop, with a stall detector -----------------------
    def touch(self) -> None:
        """A media job made progress (called from the pool's threads too)."""
        self.progress_at = time.monotonic()

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in list(self.inflight))

    def submit(self, fn, *args) -> Future:
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
                raise MediaStalled(f"media I/O under {self.cfg.mount_path} made no progress "
                                   f"for {idle:.0f} s (hung mount?)")
        return [f.result() for f in futs]

    async def media(self, io_timeout: float, fn, *args):
        return (await self.media_all(io_timeout, [(fn, *args)]))[0]

    def check_resumed(self) -> bool:
        """True when the source may cycle: not stalled, or its stalled I/O returned."""
        if self.stalled_since is None:
            return True
        if self.busy:
            return False
        log.info("source_resumed", source=self.cfg.sysname,
                 stalled_seconds=round((_now() - self.stalled_since).total_seconds(), 1))
        self.stalled_since = None
        return True

    def refresh_pool(self, workers: int) -> None:
        """Adopts a changed ``copy_workers`` between cycles."""
        if workers != self.workers and not self.busy:
            old, self.pool = self.pool, _media_pool(self.cfg.sysname, workers)
            self.workers = workers
            old.shutdown(wait=False)

    async def connection(self, engine: "Engine") -> Recorder:
        """The recorder, connected, its catalog read and checked against what
        this source's configuration needs (SchemaError names what is missing)."""
        if self.rec is None or self.rec.is_closed():
            self.rec = await recorder.open_recorder(
                self.cfg.database, text_encoding=self.cfg.text_encoding,
                application_name=f"synchrod:{self.cfg.sysname}")
            self.statements = None
            if not self.verified:
                ident = await recorder.identity(self.rec.conn)
                if ident == engine.target_identity:
                    await self.drop()
                    raise SameDatabaseError(f"source {self.cfg.sysname} is the replay database itself")
                self.verified = True
        problems = engine.schema_problems(self.cfg, self.rec.catalog)
        if problems:
            raise SchemaError("; ".join(problems))
        if self.statements is None:
            self.statements = BatchStatements.build(self.rec.catalog, engine.target_catalog,
                                                    engine.config.synchro.synchronize_voice_tags)
        return self.rec

    async def retire(self) -> None:
        """A source removed from the configuration: closed once its cycle ends."""
        while self.state == "running":
            await asyncio.sleep(0.2)
        await self.drop()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def drop(self) -> None:
        rec, self.rec = self.rec, None
        if rec is not None:
            await rec.close()


@dataclass
class Engine:
    config: Config
    target_pool: asyncpg.Pool | None = None
    target_identity: tuple[str, str] | None = None
    target_catalog: Catalog = field(default_factory=Catalog)
    # every target path as last measured (usage, and why it takes no new files)
    target_states: dict[str, media.TargetState] = field(default_factory=dict)
    _measuring: dict = field(default_factory=dict)   # path -> measurement still under way
    schema_ready: bool = False    # synchrod's tables exist in the replay database
    sources: dict[str, SourceRuntime] = field(default_factory=dict)
    balance_ledger: dict[str, int] = field(default_factory=dict)
    # source -> user, sources disabled through the API (synchrod.source_control)
    disabled_by: dict[str, str] = field(default_factory=dict)
    # called with (runtime, CycleResult) after every cycle: metrics, live events
    cycle_listeners: list = field(default_factory=list)
    daemon_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _tasks: set = field(default_factory=set)
    _job_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    async def open(self, migrate: bool = True) -> None:
        groups = {s.group for s in self.config.sources} or {"default"}
        self.target_pool = await create_pool(self.config.target.database,
                                             application_name="synchrod:target",
                                             max_size=2 * len(groups) + 2)
        async with self.target_pool.acquire() as conn:
            if migrate:
                await schema.migrate(conn)
            self.schema_ready = await reads.schema_ready(conn)
            if self.schema_ready:
                self.disabled_by = await controls.disabled(conn)
            self.target_identity = await recorder.identity(conn)
            self.target_catalog = await read_catalog(conn, probe_types=True)
        self.apply_config(self.config)

    def schema_problems(self, src: SourceConfig, source: Catalog) -> list[str]:
        """What the replay database and this recorder lack for this source's
        configuration (SPEC §2), each named; empty when both are fit."""
        s = self.config.synchro
        return ([f"replay database: {p}" for p in schema_rules.target_problems(self.target_catalog, s)]
                + [f"recorder: {p}" for p in schema_rules.source_problems(source, s)]
                + schema_rules.type_problems(source, self.target_catalog,
                                             taken_types(src, s.only_processed)))

    @property
    def target_problems(self) -> dict[str, str]:
        """Target path -> why it takes no new files (missing, unwritable)."""
        return {p: st.problem for p, st in self.target_states.items() if st.problem}

    def target_paths(self) -> list[str]:
        """Every target path (audio and video), each once."""
        t = self.config.target
        return sorted({p.path for p in t.audio_paths + t.video_paths})

    def note_target_states(self, states: dict[str, media.TargetState]) -> None:
        """Adopts a measurement of target paths; logs a path that closes or opens."""
        before = self.target_problems
        for path, st in states.items():
            if st.problem and before.get(path) != st.problem:
                log.warning("target_path_unavailable", path=path, problem=st.problem)
            elif not st.problem and path in before:
                log.info("target_path_available", path=path)
        current = set(self.target_paths())
        self.target_states = {p: st for p, st in {**self.target_states, **states}.items()
                              if p in current}

    async def measure_targets(self) -> dict[str, media.TargetState]:
        """Every target path measured off the event loop, each bounded: a
        hung filesystem is reported as such, and not asked again while the
        question is still pending (its thread may never come back)."""
        loop = asyncio.get_running_loop()
        states = {}
        for path in self.target_paths():
            pending = self._measuring.get(path)
            if pending is None or pending.done():
                pending = self._measuring[path] = loop.run_in_executor(None, media.target_state, path)
            try:
                states[path] = await asyncio.wait_for(asyncio.shield(pending), TARGET_TIMEOUT)
            except asyncio.TimeoutError:
                states[path] = media.TargetState(None, "did not answer (hung filesystem?)")
        self.note_target_states(states)
        return states

    def apply_config(self, config: Config) -> list[str]:
        """Adopts a (re)loaded configuration; sources keep their runtime.
        Returns the names of the sources it removed."""
        self.config = config
        workers = config.synchro.copy_workers
        for src in config.sources:
            rt = self.sources.get(src.sysname)
            if rt is None:
                self.sources[src.sysname] = rt = SourceRuntime(
                    src, _media_pool(src.sysname, workers), workers)
                rt.job_id = next(self._job_ids)
            else:
                if (rt.cfg.database, rt.cfg.text_encoding) != (src.database, src.text_encoding):
                    rt.verified = False
                    rt.index_ready = False
                    self._background(rt.drop())
                rt.statements = None  # the voice-tag switch shapes them
                rt.cfg = src
                if not src.enabled:
                    rt.state = "disabled"
                elif rt.state == "disabled":
                    rt.state = "waiting"
        removed = sorted(set(self.sources) - {s.sysname for s in config.sources})
        for name in removed:
            self._background(self.sources.pop(name).retire())
        return removed

    def _background(self, coro) -> None:
        task = asyncio.get_event_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def verify_sources(self) -> list[str]:
        """Refuses sources that are the target database; returns those that
        could not be reached (checked again at their first cycle)."""
        async def verify(rt: SourceRuntime) -> str | None:
            try:
                await rt.connection(self)
            except UNREACHABLE as exc:
                return f"{rt.cfg.sysname}: {redact(str(exc))}"
            except SchemaError as exc:  # reported by its cycles, which end in state error
                log.warning("source_schema_incompatible", source=rt.cfg.sysname, error=str(exc))
            return None

        # concurrently: many unreachable recorders must not add up their time-outs
        found = await asyncio.gather(*(verify(rt) for rt in self.sources.values()
                                       if rt.cfg.enabled))
        return [line for line in found if line]

    async def refresh_disabled(self) -> None:
        """Re-reads the sources disabled through the API (by any daemon)."""
        if not self.schema_ready or self.target_pool is None:
            return
        try:
            async with self.target_pool.acquire(timeout=5) as conn:
                self.disabled_by = await controls.disabled(conn)
        except Exception as exc:  # noqa: BLE001 - keep the last known; cycles report the fault
            log.warning("source_control_unreadable", error=redact(f"{type(exc).__name__}: {exc}"))

    def enabled(self, src: SourceConfig) -> bool:
        """Enabled in the file and not disabled through the API."""
        return src.enabled and src.sysname not in self.disabled_by

    def busy_sources(self) -> list[str]:
        """Sources whose media threads have not returned (a hung mount)."""
        return sorted(name for name, rt in self.sources.items() if rt.busy)

    async def close(self) -> None:
        for rt in self.sources.values():
            await rt.drop()
            rt.pool.shutdown(wait=False, cancel_futures=True)
        if self.target_pool is not None:
            await self.target_pool.close()
            self.target_pool = None

    def owned_roots(self) -> tuple[str, ...]:
        return tuple(self.target_paths())


def _media_pool(sysname: str, workers: int) -> ThreadPoolExecutor:
    # the thread names carry the source (faults.SYNCHROD_FAULT_SOURCE reads them)
    return ThreadPoolExecutor(workers, thread_name_prefix=f"media-{sysname}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
