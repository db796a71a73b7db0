"""Schedules cycles: groups concurrently, sources of a group one after another."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import structlog

from .cycle import Counts, CycleResult, run_cycle
from .engine import Engine

log = structlog.get_logger("synchrod.runner")


async def run_round(engine: Engine, only: str | None = None, dry_run: bool = False,
                    stop: asyncio.Event | None = None) -> list[CycleResult]:
    groups: dict[str, list] = defaultdict(list)
    for src in engine.config.sources:
        if not src.enabled or (only and src.sysname != only):
            if src.sysname in engine.sources:
                engine.sources[src.sysname].state = "disabled" if not src.enabled else "waiting"
            continue
        groups[src.group].append(engine.sources[src.sysname])

    async def run_group(rts) -> list[CycleResult]:
        out = []
        for rt in rts:
            if stop is not None and stop.is_set():
                break
            out.append(await run_cycle(engine, rt, dry_run))
        return out

    per_group = await asyncio.gather(*(run_group(rts) for rts in groups.values()))
    return [r for results in per_group for r in results]


@dataclass
class Totals(Counts):
    """A source's results summed over several cycles (``once --until-idle``)."""
    source: str
    cycles: int = 0
    state: str = "idle"
    error: str | None = None
    plan: list = field(default_factory=list)   # (sid, action) of a dry run

    def add(self, r: CycleResult) -> None:
        self.cycles += 1
        self.plan.extend(r.dry_run_plan)
        self.add_counts(r)
        if r.state != "idle" or self.state == "idle":
            self.state = r.state
        self.error = r.error or self.error


def round_progressed(results: list[CycleResult]) -> bool:
    """Another round could change something: calls left the candidate set or
    went into back-off."""
    return any(r.progressed or r.failed for r in results)


async def run_once(engine: Engine, only: str | None, until_idle: bool, dry_run: bool,
                   max_rounds: int = 1_000_000) -> dict[str, Totals]:
    totals: dict[str, Totals] = {}
    for _ in range(max_rounds):
        results = await run_round(engine, only, dry_run)
        for r in results:
            totals.setdefault(r.source, Totals(r.source)).add(r)
        if not until_idle or dry_run or not round_progressed(results):
            break
    return totals


async def run_forever(engine: Engine, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
    """The daemon loop: a round, then ``sleep_period`` of idle time after it ends."""
    start_at = engine.config.synchro.start_at
    if start_at is not None:
        delay = (start_at - dt.datetime.now(dt.timezone.utc)).total_seconds()
        if delay > 0:
            log.info("waiting_for_start_at", start_at=start_at.isoformat(), seconds=round(delay))
            await _sleep(delay, stop, wake)
    while not stop.is_set():
        if engine.config.synchro.enabled:
            await run_round(engine, stop=stop)
        await _sleep(engine.config.synchro.sleep_period, stop, wake)


async def _sleep(seconds: float, stop: asyncio.Event, wake: asyncio.Event | None) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        if wake is not None:
            wake.clear()

