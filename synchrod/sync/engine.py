"""The long-lived state cycles share: the replay database's pool, identity
and catalog, one :class:`~synchrod.sync.runtime.SourceRuntime` per source, the
target paths as last measured and the balance ledger among them."""
from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg
import structlog

from ..config import Config, SourceConfig
from ..core import catalog as schema_rules
from ..core.catalog import Catalog
from ..core.filters import taken_types
from ..core.states import SourceEvent, SourceState
from ..errors import SchemaError
from ..fs import targets
from ..pg import introspect
from ..pg.connect import UNREACHABLE, create_pool, redact
from ..pg.introspect import read_catalog
from ..replay import controls, reads, schema
from ..storage.levels import StorageLevels
from .runtime import SourceRuntime, media_pool

if TYPE_CHECKING:
    from .cycle import CycleResult

log = structlog.get_logger("synchrod.engine")
TARGET_TIMEOUT = 10.0   # seconds a target path's measurement may take


@dataclass
class Engine:
    """The replay side and every source's runtime, shared by all cycles."""
    config: Config
    target_pool: asyncpg.Pool | None = None
    target_identity: tuple[str, str] | None = None
    target_catalog: Catalog = field(default_factory=Catalog)
    # every target path as last measured (usage, and why it takes no new files)
    target_states: dict[str, targets.TargetState] = field(default_factory=dict)
    _measuring: dict = field(default_factory=dict)   # path -> measurement still under way
    schema_ready: bool = False    # synchrod's tables exist in the replay database
    sources: dict[str, SourceRuntime] = field(default_factory=dict)
    balance_ledger: dict[str, int] = field(default_factory=dict)
    # source -> user, sources disabled through the API (synchrod.source_control)
    disabled_by: dict[str, str] = field(default_factory=dict)
    # called with (runtime, CycleResult) after every cycle: metrics, live events
    cycle_listeners: list[Callable[[SourceRuntime, CycleResult], None]] = field(default_factory=list)
    daemon_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # storage levels of the target filesystems (space management, SPEC §9)
    storage: StorageLevels = field(init=False)
    # called with every storage event: the monitor's live events and alarms
    storage_listeners: list[Callable[[dict], None]] = field(default_factory=list)
    _tasks: set = field(default_factory=set)
    _job_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.storage = StorageLevels(self.config.storage)

    async def open(self, migrate: bool = True) -> None:
        """Connects to the replay database, migrates synchrod's schema (unless
        ``migrate`` is False: a dry run), reads its identity and catalog, and
        builds a runtime per configured source."""
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
            self.target_identity = await introspect.database_identity(conn)
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

    async def measure_storage(self) -> list[dict]:
        """Measures the target paths (bounded, off the event loop) and updates
        the storage levels; the threshold events of the levels that changed."""
        states = await self.measure_targets()
        return self.storage.update(states, tuple(p.path for _, p in
                                                 self.config.target.distinct_paths()),
                                   self.daemon_name)

    def note_target_states(self, states: dict[str, targets.TargetState]) -> None:
        """Adopts a measurement of target paths; logs a path that closes or opens."""
        before = self.target_problems
        for path, st in states.items():
            if st.problem and before.get(path) != st.problem:
                log.warning("target_path_unavailable", path=path, problem=st.problem)
            elif not st.problem and path in before:
                log.info("target_path_available", path=path)
        current = set(self.config.target_paths())
        self.target_states = {p: st for p, st in {**self.target_states, **states}.items()
                              if p in current}

    async def measure_targets(self) -> dict[str, targets.TargetState]:
        """Every target path measured off the event loop, each bounded: a
        hung filesystem is reported as such, and not asked again while the
        question is still pending (its thread may never come back)."""
        loop = asyncio.get_running_loop()
        states = {}
        for path in self.config.target_paths():
            pending = self._measuring.get(path)
            if pending is None or pending.done():
                pending = self._measuring[path] = loop.run_in_executor(None, targets.target_state, path)
            try:
                states[path] = await asyncio.wait_for(asyncio.shield(pending), TARGET_TIMEOUT)
            except asyncio.TimeoutError:
                states[path] = targets.HUNG
        self.note_target_states(states)
        return states

    def apply_config(self, config: Config) -> list[str]:
        """Adopts a (re)loaded configuration; sources keep their runtime.
        Returns the names of the sources it removed."""
        self.config = config
        self.storage.apply_config(config.storage)
        workers = config.synchro.copy_workers
        for src in config.sources:
            runtime = self.sources.get(src.sysname)
            if runtime is None:
                self.sources[src.sysname] = runtime = SourceRuntime(
                    src, media_pool(src.sysname, workers), workers)
                runtime.job_id = next(self._job_ids)
            else:
                if (runtime.config.database, runtime.config.text_encoding) \
                        != (src.database, src.text_encoding):
                    runtime.verified = False
                    runtime.index_ready = False
                    self._background(runtime.drop())
                runtime.statements = None  # the voice-tag switch shapes them
                runtime.config = src
            runtime.on(SourceEvent.ENABLED if src.enabled else SourceEvent.DISABLED)
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
        async def verify(runtime: SourceRuntime) -> str | None:
            try:
                await runtime.connection(self)
            except UNREACHABLE as exc:
                return f"{runtime.config.sysname}: {redact(str(exc))}"
            except SchemaError as exc:  # reported by its cycles, which end in state error
                log.warning("source_schema_incompatible", source=runtime.config.sysname,
                            error=str(exc))
            return None

        # concurrently: many unreachable recorders must not add up their time-outs
        found = await asyncio.gather(*(verify(r) for r in self.sources.values()
                                       if r.config.enabled))
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
        return sorted(name for name, r in self.sources.items() if r.busy)

    async def close(self) -> None:
        """Closes every recorder connection, the media pools and the replay pool."""
        for runtime in self.sources.values():
            await runtime.drop()
            runtime.pool.shutdown(wait=False, cancel_futures=True)
        if self.target_pool is not None:
            await self.target_pool.close()
            self.target_pool = None

    def owned_roots(self) -> tuple[str, ...]:
        """The directories synchrod may remove files below: the target paths."""
        return tuple(self.config.target_paths())

    def source_state_counts(self) -> dict[SourceState, int]:
        """How many sources are in each state."""
        counts: dict[SourceState, int] = {}
        for runtime in self.sources.values():
            counts[runtime.state] = counts.get(runtime.state, 0) + 1
        return counts
