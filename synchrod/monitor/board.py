"""The monitor's picture of the daemon: sources, jobs, target paths, and the
daemon itself, built from the live state; changes become live events.

The per-source part is in memory (``views``); what another daemon knows
(owners, failure counts) and filesystem use are refreshed in the background,
so a request never waits on a disk or a database.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING

import structlog

from ..control import views
from ..control.handle import DaemonHandle
from ..core import clock
from ..core.levels import ALARMS, Level
from ..core.states import COUNT_KEYS
from ..pg.connect import redact
from ..replay import controls, daemons, reads
from .archivestate import ArchiveState
from .events import Hub

if TYPE_CHECKING:
    from ..sync.cycle import CycleResult
    from ..sync.runtime import SourceRuntime

log = structlog.get_logger("synchrod.monitor")

TICK = 0.5            # seconds between checks for changes to send as events
SLOW_REFRESH = 5.0    # seconds between reads of the database and of the target filesystems


class Board:
    """The views the API serves and the page shows, and the live events
    that keep the page up to date."""

    def __init__(self, daemon: DaemonHandle, hub: Hub):
        self.daemon = daemon
        self.hub = hub
        self.owners: dict[str, str] = {}        # source -> daemon name, from the database
        self.attempts: dict[str, tuple[int, int]] = {}
        self.targets: list[dict] = self._target_views({})
        self._last_bases: dict[str, dict] = {}
        self._last_daemon: dict | None = None
        self._alarmed: dict[str, dict] = {}      # key -> the alarm of its episode, while it lasts
        self.archive = ArchiveState(lambda: daemon.engine.config.archive)

    # --- views ------------------------------------------------------------------
    def bases(self) -> dict[str, dict]:
        """Each configured source's base, from the daemon's live state (no I/O)."""
        return self.daemon.source_bases()

    def source(self, sysname: str, base: dict, now: dt.datetime) -> dict:
        """The source's view at ``now``, with its owner and its retrying and erroneous counts
        as last read from the replay database."""
        return views.source_view(sysname, base, now, self._owner(sysname, base),
                                 *self.attempts.get(sysname, (0, 0)))

    def sources(self) -> list[dict]:
        """Every configured source's view, now."""
        now = clock.now()
        return [self.source(name, base, now) for name, base in self.bases().items()]

    def jobs(self) -> list[dict]:
        """Every configured source's job."""
        return [views.job_view(name, base, self._owner(name, base))
                for name, base in self.bases().items()]

    def _owner(self, name: str, base: dict) -> str | None:
        return self.daemon.engine.daemon_name if base["owned"] else self.owners.get(name)

    def daemon_view(self) -> dict:
        """The daemon part of the status: its identity (times as ISO text) and whether any user
        can log in."""
        view = {k: clock.iso(v) for k, v in self.daemon.identity().items()}
        view["users_configured"] = bool(self.daemon.engine.config.monitor.users)
        return view

    def config_view(self) -> dict:
        """The running configuration without databases or secrets."""
        c = self.daemon.engine.config
        s = c.synchro
        return {"enabled": s.enabled, "sleep_period": s.sleep_period,
                "calls_per_period": s.calls_per_period, "max_attempts": s.max_attempts,
                "mark_erroneous": s.mark_erroneous, "only_finished": s.only_finished,
                "only_processed": s.only_processed, "verify": s.verify,
                "copy_workers": s.copy_workers, "start_at": clock.iso(s.start_at),
                "target_sysname": c.target.sysname, "sources": len(c.sources),
                "token_ttl": c.monitor.token_ttl, "history_days": c.monitor.history_days}

    def status(self) -> dict:
        """The whole status (GET /api/v1/status, the ``snapshot`` event): daemon, sources, jobs,
        target paths, configuration; from memory, never waiting on a disk or a database."""
        now = clock.now()
        bases = self.bases()
        return {"daemon": self.daemon_view(),
                "sources": [self.source(n, b, now) for n, b in bases.items()],
                "jobs": [views.job_view(n, b, self._owner(n, b)) for n, b in bases.items()],
                "target_paths": self._target_views(self.daemon.engine.target_states),
                "config": self.config_view(),
                "alarms": self.alarms(),
                "generated_at": clock.iso(now)}

    def gauges(self) -> tuple[list[dict], list[dict], list[dict]]:
        """(sources, target paths, storage filesystems) as views, for the
        Prometheus gauges at scrape time."""
        return (self.sources(), self._target_views(self.daemon.engine.target_states),
                self.daemon.engine.storage.views())

    # --- target paths ------------------------------------------------------------
    def _target_views(self, states: dict) -> list[dict]:
        out = []
        # without video_paths, video files share the audio paths
        for kind, p in self.daemon.engine.config.target.distinct_paths():
            state = states.get(p.path)
            fs = state.usage if state else None
            problem = state.problem if state else None   # not measured yet
            out.append({"path": p.path, "kind": kind, "priority": p.priority,
                        "balance": p.balance, "watermark": p.watermark,
                        "usage_ratio": round(fs.ratio(), 4) if fs else None,
                        "used_bytes": fs.used if fs else None,
                        "capacity_bytes": fs.capacity if fs else None,
                        # unreadable or unwritable takes nothing, as placement decides
                        "above_watermark": problem is not None or fs is None or fs.at_or_above(p.watermark),
                        "problem": problem})
        return out

    def refresh_targets(self) -> None:
        """From the daemon's own measurements (a hung filesystem costs its
        measuring task, never a request)."""
        self.targets = self._target_views(self.daemon.engine.target_states)

    def _publish_targets(self) -> None:
        before = self.targets
        self.refresh_targets()
        if self.targets == before:
            return
        self.hub.publish("target", self.targets)
        for p in self.targets:
            if p["problem"]:
                self.alarm("target_unavailable", None,
                           f"{p['path']} {p['problem']}: it takes no new files", key=f"path:{p['path']}")
            elif p["above_watermark"]:
                self.alarm("target_full", None, f"{p['path']} is at or above its watermark "
                           f"({p['watermark']} %): it takes no new files", key=f"path:{p['path']}")
            else:
                self._alarmed.pop(f"path:{p['path']}", None)

    async def refresh_database(self, db, tokens) -> None:
        """Reads what the replay database knows: the other daemons' sources, and (once the schema
        is ready) the failure counts and revoked tokens; raises when the database fails."""
        ready = self.daemon.engine.schema_ready
        async with db() as conn:
            live = await daemons.live(conn)
            names = [s.sysname for s in self.daemon.engine.config.sources]
            self.attempts = await reads.attempt_counts(conn, names) if ready else {}
            if ready:
                tokens.adopt_revoked(await controls.revoked(conn))
                await self.archive.refresh(conn)
        self.owners = {name: d["name"] for name, d in daemons.owners(live).items()}

    # --- live events ---------------------------------------------------------------
    def on_cycle(self, runtime: SourceRuntime, result: CycleResult) -> None:
        """A cycle ended: a live ``cycle`` event, and an alarm when it failed."""
        name = runtime.config.sysname
        self.hub.publish("cycle", {
            "source": name, "run_id": result.run_id, "state": result.state,
            "generation": runtime.generation, "seconds": round(result.seconds, 3),
            "counts": {k: getattr(result, k) for k in COUNT_KEYS}, "error": result.error})
        if runtime.stalled_since is not None:
            self.alarm("source_stalled", name, result.error or "media I/O stalled")
        elif result.state.failed:
            self.alarm("source_down", name, result.error or result.state)
        elif name in self._alarmed:
            self._alarmed.pop(name)
            self.hub.publish("alarm", {"kind": "source_recovered", "source": name,
                                       "message": f"{name} works again", "at": clock.iso(clock.now())})

    def on_storage(self, event: dict) -> None:
        """A storage threshold event: a live ``storage`` event, and the alarm of
        the filesystem's new level (none once back to normal); a session
        event (calls pruned or deleted): a live ``deletion`` event."""
        if event["eventType"] == "SESSION_EVENT":
            self.hub.publish("deletion", event)
            return
        self.hub.publish("storage", event)
        key, level = f"fs:{event['filesystem']}", Level[event["level"].upper()]
        if level is Level.NORMAL:
            self._alarmed.pop(key, None)
            return
        self.alarm(ALARMS[level], None, f"{event['filesystem']} is {event['percentageUtilization']} % "
                   f"used: storage level {event['level']}", key=key)

    def on_archive(self, what: str, data: dict) -> None:
        """An archive run started, did a page, or ended: a live ``archive`` event."""
        if what == "ended":
            self.archive.on_run_ended(data)
        body = {"event": what, "task": data.get("task"),
                "run": data if what != "batch" else {k: data[k] for k in ("ok", "failed", "bytes")}}
        self.hub.publish("archive", body)

    def clear_alarm(self, key: str) -> None:
        """The episode of the alarm under ``key`` is over: the next one is raised again."""
        self._alarmed.pop(key, None)

    def alarm(self, kind: str, source: str | None, message: str, key: str | None = None) -> None:
        """Raised once per episode: a source down for an hour is one alarm."""
        key = key or source or kind
        current = self._alarmed.get(key)
        if current is not None and current["kind"] == kind and kind != "config_error":
            return
        alarm = {"kind": kind, "source": source, "message": message, "at": clock.iso(clock.now())}
        self._alarmed[key] = alarm
        self.hub.publish("alarm", alarm)

    def alarms(self) -> list[dict]:
        """The alarms whose episode lasts (a source still down, a filesystem
        still critical, ...), newest first: ``alarms`` of GET /api/v1/status."""
        return sorted(self._alarmed.values(), key=lambda a: a["at"], reverse=True)

    def publish_changes(self) -> None:
        """A ``source`` and a ``job`` event for each source whose base changed; a ``daemon``
        event when the daemon view changed after the first, and an alarm for a new config error."""
        now = clock.now()
        bases = self.bases()
        for name, base in bases.items():
            if self._last_bases.get(name) != base:
                self.hub.publish("source", self.source(name, base, now))
                self.hub.publish("job", views.job_view(name, base, self._owner(name, base)))
        self._last_bases = bases
        d = self.daemon_view()
        if d != self._last_daemon:
            if d["config_error"] and (self._last_daemon or {}).get("config_error") != d["config_error"]:
                self.alarm("config_error", None, d["config_error"])
            elif not d["config_error"]:
                self._alarmed.pop("config_error", None)
            if self._last_daemon is not None:
                self.hub.publish("daemon", d)
            self._last_daemon = d

    async def run(self, db, tokens) -> None:
        """Publishes changes every TICK; reads the database every SLOW_REFRESH."""
        loop = asyncio.get_running_loop()
        slow_at = 0.0
        while True:
            try:
                self._publish_targets()
                if loop.time() >= slow_at:
                    slow_at = loop.time() + SLOW_REFRESH
                    await self.refresh_database(db, tokens)
                self.publish_changes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the monitor goes on without this refresh
                log.warning("monitor_refresh_failed", error=redact(f"{type(exc).__name__}: {exc}"))
            await asyncio.sleep(TICK)
