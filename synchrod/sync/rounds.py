"""Rounds of cycles for ``synchrod once``: every enabled source once (groups
concurrently, the sources of a group one after another), again until idle
when asked."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.states import CycleState, SourceEvent
from .cycle import Counts, CycleResult, run_cycle
from .engine import Engine
from .runtime import SourceRuntime

if TYPE_CHECKING:
    from ..daemon.ownership import Ownership  # `once` leaves sources a daemon works


async def run_round(engine: Engine, only: str | None = None, dry_run: bool = False,
                    stop: asyncio.Event | None = None,
                    ownership: Ownership | None = None,
                    on_cycle: Callable[[SourceRuntime, CycleResult], None] | None = None,
                    ) -> list[CycleResult]:
    """One cycle of every enabled source (``synchrod once``): groups
    concurrently, the sources of a group one after another; ``on_cycle``
    hears of each cycle as it ends (progress)."""
    groups: dict[str, list] = defaultdict(list)
    for src in engine.config.sources:
        if not engine.enabled(src) or (only and src.sysname != only):
            continue
        groups[src.group].append(engine.sources[src.sysname])
    owned = None
    if ownership is not None:
        owned = await ownership.claim(r.config.sysname for members in groups.values() for r in members)

    async def run_group(members: list[SourceRuntime]) -> list[CycleResult]:
        out = []
        for runtime in members:
            if stop is not None and stop.is_set():
                break
            if owned is not None and runtime.config.sysname not in owned:
                runtime.on(SourceEvent.NOT_OWNED)
                out.append(CycleResult(runtime.config.sysname, state=CycleState.STANDBY,
                                       error="worked by another daemon"))
                continue
            out.append(await run_cycle(engine, runtime, dry_run, stop,
                                       ownership.owns if ownership is not None else None))
            if on_cycle is not None:
                on_cycle(runtime, out[-1])
        return out

    per_group = await asyncio.gather(*(run_group(members) for members in groups.values()))
    return [r for results in per_group for r in results]


@dataclass
class Totals(Counts):
    """A source's results summed over several cycles (``once --until-idle``)."""
    source: str
    cycles: int = 0
    state: CycleState = CycleState.IDLE
    error: str | None = None
    plan: list = field(default_factory=list)   # (sid, action) of a dry run

    def add(self, r: CycleResult) -> None:
        """Adds one cycle's result: counts and dry-run plan summed, the state the last one not
        idle (idle if all were), the error the last one reported."""
        self.cycles += 1
        self.plan.extend(r.dry_run_plan)
        self.add_counts(r)
        if r.state != CycleState.IDLE or self.state == CycleState.IDLE:
            self.state = r.state
        self.error = r.error or self.error


def round_progressed(results: list[CycleResult]) -> bool:
    """Another round could change something: calls left the candidate set or
    went into back-off."""
    return any(r.progressed or r.failed for r in results)


async def run_once(engine: Engine, only: str | None, until_idle: bool, dry_run: bool,
                   max_rounds: int = 1_000_000,
                   ownership: Ownership | None = None,
                   on_cycle: Callable[[SourceRuntime, CycleResult], None] | None = None,
                   on_round: Callable[[], None] | None = None) -> dict[str, Totals]:
    """``synchrod once``: one round, or rounds until one makes no progress (``until_idle``,
    never in a dry run; at most ``max_rounds``); each source's totals, by name.
    ``on_cycle`` and ``on_round`` hear of each cycle and round as they end."""
    totals: dict[str, Totals] = {}
    for _ in range(max_rounds):
        results = await run_round(engine, only, dry_run, ownership=ownership, on_cycle=on_cycle)
        for r in results:
            totals.setdefault(r.source, Totals(r.source)).add(r)
        if on_round is not None:
            on_round()
        if not until_idle or dry_run or not round_progressed(results):
            break
    return totals
