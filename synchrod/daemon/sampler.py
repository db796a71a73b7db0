"""The charts' samples (``replay.samples``), written at the start of every
minute: the backlog and lag of each source this daemon owns, from its live
state, and, on the daemon holding the storage duty, each target
filesystem's use and level. One statement a tick; a tick that cannot reach
the replay database is skipped, and nothing here ever stops the daemon."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from ..control import views
from ..core import clock
from ..pg.connect import redact
from ..replay import samples
from ..sync.engine import Engine
from .ownership import Ownership
from .storagewatch import DUTY as STORAGE_DUTY

log = structlog.get_logger("synchrod")

SAMPLE_EVERY = 60   # seconds: one sample per bucket of a day's chart


def source_rows(bases: dict[str, dict], now) -> list[tuple[str, int, float]]:
    """(source, backlog, lag seconds) of each source owned here whose backlog is known."""
    rows = []
    for name, base in bases.items():
        lag = views.lag_seconds(base, now) if base["owned"] and base["backlog"] is not None else None
        if lag is not None:
            rows.append((name, base["backlog"], lag))
    return rows


def filesystem_rows(engine: Engine) -> list[tuple[str, float, int | None]]:
    """(mount point, used ratio, level) of each target filesystem measured:
    the storage levels' when space management is on, else the target paths'
    own measurements (every 5 s), without a level."""
    if engine.config.storage.enabled:
        return [(fs.filesystem, fs.usage.ratio(), int(fs.level))
                for fs in engine.storage.filesystems.values()]
    seen: dict[str, float] = {}
    for path, st in engine.target_states.items():
        if st.usage is not None and st.problem is None:
            seen.setdefault(st.filesystem or path, st.usage.ratio())
    return [(name, ratio, None) for name, ratio in seen.items()]


class Sampler:
    """Writes a tick of samples every minute of the wall clock (so a day's
    chart has one per bucket)."""

    def __init__(self, engine: Engine, ownership: Ownership, bases: Callable[[], dict[str, dict]]):
        self.engine = engine
        self.ownership = ownership
        self.bases = bases
        self._failing = False   # the last tick could not be written (logged once)

    async def run(self) -> None:
        """Samples at the start of every minute until cancelled."""
        while True:
            await asyncio.sleep(SAMPLE_EVERY - time.time() % SAMPLE_EVERY)
            if time.time() % SAMPLE_EVERY > SAMPLE_EVERY / 2:
                continue   # woken a hair before the minute (the loop's clock is monotonic)
            await self.tick()

    async def tick(self) -> int:
        """One tick's samples; how many rows were written (0 when there was
        nothing to sample or the database could not be reached). Never raises
        but on cancellation."""
        if not self.engine.schema_ready:
            return 0
        try:
            now = clock.now()
            sources = source_rows(self.bases(), now)
            filesystems = (filesystem_rows(self.engine)
                           if await self.ownership.claim_duty(STORAGE_DUTY) else [])
            if not sources and not filesystems:
                return 0
            async with self.engine.target_pool.acquire(timeout=10) as conn:
                await samples.write(conn, now, self.engine.daemon_name, sources, filesystems)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a chart's gap, never a daemon's failure
            if not self._failing:
                log.warning("samples_skipped", error=redact(f"{type(exc).__name__}: {exc}"))
            self._failing = True
            return 0
        if self._failing:
            log.info("samples_resumed")
            self._failing = False
        return len(sources) + len(filesystems)
