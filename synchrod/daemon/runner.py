"""The daemon loop: one task per group of sources, each cycling its sources
one after another and then sleeping; the flags it acts on (``Control``)."""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import structlog

from ..core import clock
from ..core.states import SourceEvent
from ..sync.cycle import run_cycle
from ..sync.engine import Engine
from .ownership import Ownership

log = structlog.get_logger("synchrod.runner")


class Control:
    """What signals, the config watcher and "run now" ask of the daemon loop.
    They only set flags here; the loops act on them."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self._wake: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._start = asyncio.Event()         # ends the start_at wait
        self._changed = asyncio.Event()       # replaced on every configuration change

    def run_now(self, group: str | None = None) -> None:
        """Skips the current sleep of one group, or of all."""
        self._start.set()
        for ev in (self._wake.values() if group is None else [self._wake[group]]):
            ev.set()

    def config_changed(self) -> None:
        """Wakes every current ``changed_or`` waiter once (the configuration was reloaded);
        later waits need a new change."""
        old, self._changed = self._changed, asyncio.Event()
        old.set()

    async def sleep(self, seconds: float) -> bool:
        """The ``start_at`` wait: until the time, stop, or "run now" (then True)."""
        woke = await _first_of({"stop": self.stop, "wake": self._start}, seconds)
        self._start.clear()
        return woke == "wake"

    async def changed_or(self, seconds: float, group: str) -> str:
        """Waits for a configuration change, a wake of this group, stop, or
        the time; says which ("changed", "wake", "stop", "time")."""
        woke = await _first_of({"stop": self.stop, "wake": self._wake[group],
                                "changed": self._changed}, seconds)
        self._wake[group].clear()
        return woke


async def _first_of(events: dict[str, asyncio.Event], seconds: float) -> str:
    """The name of the first event set within ``seconds`` (a wake wins a tie), or "time"."""
    waiters = {asyncio.ensure_future(ev.wait()): name for name, ev in events.items()}
    try:
        await asyncio.wait(waiters, timeout=max(seconds, 0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
    for name in ("wake", "stop", "changed"):
        if name in events and events[name].is_set():
            return name
    return "time"


async def run_forever(engine: Engine, control: Control,
                      ownership: Ownership | None = None) -> None:
    """The daemon loop: one task per group, each a cycle of its sources, then
    ``sleep_period`` of idle time after it ends. Groups that appear in a
    reloaded configuration get a task; a group that disappears ends its own."""
    start_at = engine.config.synchro.start_at
    if start_at is not None:
        delay = (start_at - clock.now()).total_seconds()
        if delay > 0:
            log.info("waiting_for_start_at", start_at=clock.iso(start_at), seconds=round(delay))
            if await control.sleep(delay):
                log.info("start_at_skipped", reason="run now")
    tasks: dict[str, asyncio.Task] = {}
    try:
        while not control.stop.is_set():
            for g, t in list(tasks.items()):  # a group removed, maybe added back since
                if t.done():
                    tasks.pop(g)
            groups = {s.group for s in engine.config.sources}
            for g in sorted(groups - tasks.keys()):
                tasks[g] = asyncio.create_task(_group_loop(engine, g, control, ownership),
                                               name=f"group-{g}")
            await control.changed_or(3600, "")
    except asyncio.CancelledError:
        for t in tasks.values():  # the stop time-out: abandon the calls in hand
            t.cancel()
        raise
    finally:
        if tasks:
            await asyncio.gather(*tasks.values(), return_exceptions=True)


async def _group_loop(engine: Engine, group: str, control: Control,
                      ownership: Ownership | None) -> None:
    while not control.stop.is_set():
        members = [s for s in engine.config.sources if s.group == group]
        if not members:
            return
        if engine.config.synchro.enabled:
            try:
                await _group_round(engine, members, control, ownership)
            except Exception:  # noqa: BLE001 - the group goes on at its next period
                log.exception("group_round_failed", group=group)
        await _idle(engine, group, control)


async def _group_round(engine: Engine, members, control: Control,
                       ownership: Ownership | None) -> None:
    await engine.refresh_disabled()
    enabled = [s.sysname for s in members if engine.enabled(s)]
    if ownership is None:
        owned = set(enabled)
    else:
        # this daemon's share of every enabled source (SPEC §11); what is no longer its
        # own (another daemon's share now, or disabled) is released here, between cycles
        share = await ownership.assigned(s.sysname for s in engine.config.sources
                                         if engine.enabled(s))
        wanted = share & set(enabled)
        await ownership.release({s.sysname for s in members} - wanted)
        owned = await ownership.claim(wanted)
    for src in members:
        runtime = engine.sources.get(src.sysname)
        if runtime is None or control.stop.is_set():
            continue
        if not engine.enabled(src):
            runtime.on(SourceEvent.DISABLED)
        elif src.sysname not in owned:
            runtime.on(SourceEvent.NOT_OWNED)
        elif runtime.paused_by is not None:
            runtime.on(SourceEvent.PAUSED)
        else:
            await run_cycle(engine, runtime, stop=control.stop,
                            still_owner=ownership.owns if ownership is not None else None)


async def _idle(engine: Engine, group: str, control: Control) -> None:
    """``sleep_period`` after the cycles end, re-read when the configuration changes."""
    began = time.monotonic()
    while not control.stop.is_set():
        left = engine.config.synchro.sleep_period - (time.monotonic() - began)
        if left <= 0:
            return
        why = await control.changed_or(left, group)
        if why in ("wake", "stop"):
            return
