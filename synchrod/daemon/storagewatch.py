"""The daemon's space-management helper: measures the storage levels every
``storage.check_interval`` seconds and, on the daemon holding the storage
duty, logs their events and hands them to the monitor and the subscribers."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from ..config import StorageConfig
from ..core.levels import Mode
from ..storage.pruner import prune_round
from ..storage.subscribers import Subscribers
from ..sync.engine import Engine
from .ownership import Ownership

if TYPE_CHECKING:
    from ..monitor.server import Monitor

log = structlog.get_logger("synchrod")

IDLE_POLL = 5.0   # seconds between looks at the configuration while storage is disabled
DUTY = "storage"
AGE_RESCAN = 3600.0   # seconds between age passes that start from the oldest couple


class StorageWatch:
    """Levels measured for this daemon's placement; events published once,
    by the daemon that holds the storage duty."""

    def __init__(self, engine: Engine, ownership: Ownership,
                 monitor: Callable[[], Monitor | None]):
        self.engine = engine
        self.ownership = ownership
        self.monitor = monitor
        self.subscribers = Subscribers(on_alarm=self._subscriber_alarm)
        self._foreign: set[str] = set()   # filesystems full of what is not synchrod's to prune
        self._age_position = None         # where the last age pass ended (this run of the daemon)
        self._age_rescan_at = 0.0         # monotonic time of the next pass from the start

    def start(self) -> None:
        """Subscribes the configured URLs (needs the running event loop)."""
        self.subscribers.apply(self.engine.config.storage.subscribers)

    def apply_config(self, storage: StorageConfig) -> None:
        """Follows a reload: the subscribers listed now (levels follow the engine's config)."""
        self.subscribers.apply(storage.subscribers)

    async def run(self) -> None:
        """Every ``storage.check_interval`` seconds while enabled: measures
        (off the event loop, bounded) and, holding the duty, publishes the
        threshold events. Never ends on an error: the next measurement may work."""
        while True:
            cfg = self.engine.config.storage
            if cfg.enabled:
                try:
                    events = await self.engine.measure_storage()
                    if await self.ownership.claim_duty(DUTY):
                        for event in events:
                            self._publish(event)
                        if cfg.mode is Mode.RECORDING_PRIORITY and self.engine.schema_ready:
                            await self._prune(cfg)
                except Exception:  # noqa: BLE001 - measuring must not end
                    log.exception("storage_measure_failed")
            await asyncio.sleep(cfg.check_interval if cfg.enabled else IDLE_POLL)

    async def _prune(self, cfg: StorageConfig) -> None:
        """One round of automatic pruning, its session events, the alarms of
        filesystems it could not relieve, then a new measurement (its level
        events published too)."""
        if time.monotonic() >= self._age_rescan_at:
            # calls synchronized late may start before the position: start over now and then
            self._age_position, self._age_rescan_at = None, time.monotonic() + AGE_RESCAN
        async with self.engine.target_pool.acquire(timeout=10) as conn:
            result = await prune_round(conn, cfg, list(self.engine.storage.filesystems.values()),
                                       daemon=self.engine.daemon_name,
                                       owned_roots=self.engine.owned_roots(),
                                       age_position=self._age_position)
        if result.age_position is not None:
            self._age_position = result.age_position
        for event in result.events:
            log.info("storage_pruned", reason=event["reason"], calls=len(event["sids"]),
                     files=event["files"], bytes=event["bytes"])
            self.notify(event)
        foreign = {fs.filesystem: fs for fs in result.foreign}
        for name in set(foreign) - self._foreign:
            fs = foreign[name]
            message = (f"{name} stays {fs.usage.ratio() * 100:.1f} % used with nothing synchrod may "
                       "prune there: the rest is protected or not synchrod's")
            log.warning("foreign_usage", filesystem=name, level=fs.level.label, message=message)
            monitor = self.monitor()
            if monitor is not None:
                monitor.board.alarm("foreign_usage", None, message, key=f"foreign:{name}")
        for name in self._foreign - set(foreign):
            monitor = self.monitor()
            if monitor is not None:
                monitor.board.clear_alarm(f"foreign:{name}")
        self._foreign = set(foreign)
        if result.events:
            for event in await self.engine.measure_storage():
                self._publish(event)

    def notify(self, event: dict) -> None:
        """A storage event to the listeners (the monitor) and the subscribers."""
        for listener in self.engine.storage_listeners:
            listener(event)
        self.subscribers.publish(event)

    def _publish(self, event: dict) -> None:
        entering = event["eventAction"].startswith("ENTER_")
        fields = {k: v for k, v in event.items() if k not in ("daemon", "at", "level")}
        log.log(logging.WARNING if entering else logging.INFO, "storage_threshold",
                storage_level=event["level"], **fields)
        self.notify(event)

    def _subscriber_alarm(self, kind: str, url: str, message: str) -> None:
        monitor = self.monitor()
        if monitor is None:
            return
        if kind == "subscriber_down":
            monitor.board.alarm(kind, None, message, key=f"subscriber:{url}")
        else:
            monitor.board.clear_alarm(f"subscriber:{url}")

    async def close(self) -> None:
        """Stops delivering to the subscribers."""
        await self.subscribers.close()
