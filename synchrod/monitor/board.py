"""The monitor's picture of the daemon: sources, jobs, target paths, and the
daemon itself, built from the live state; changes become live events.

The per-source part is in memory (``views``); what another daemon knows
(owners, failure counts) and filesystem use are refreshed in the background,
so a request never waits on a disk or a database.
"""
from __future__ import annotations

import asyncio
import datetime as dt

import structlog

from .. import views
from ..dbconn import redact
from ..replay import controls, daemons, reads
from .events import Hub

log = structlog.get_logger("synchrod.monitor")

TICK = 0.5            # seconds between checks for changes to send as events
SLOW_REFRESH = 5.0    # seconds between reads of the database and of the target filesystems


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Board:
    def __init__(self, daemon, hub: Hub):
        self.daemon = daemon
        self.hub = hub
        self.owners: dict[str, str] = {}        # source -> daemon name, from the database
        self.attempts: dict[str, tuple[int, int]] = {}
        self.targets: list[dict] = self._target_views({})
        self._last_bases: dict[str, dict] = {}
        self._last_daemon: dict | None = None
        self._alarmed: dict[str, str] = {}       # source -> kind of the last alarm

    # --- views ------------------------------------------------------------------
    def bases(self) -> dict[str, dict]:
        return self.daemon.source_bases()

    def source(self, sysname: str, base: dict, now: dt.datetime) -> dict:
        return views.source_view(sysname, base, now, self._owner(sysname, base),
                                 *self.attempts.get(sysname, (0, 0)))

    def sources(self) -> list[dict]:
        now = _now()
        return [self.source(name, base, now) for name, base in self.bases().items()]

    def jobs(self) -> list[dict]:
        return [views.job_view(name, base, self._owner(name, base))
                for name, base in self.bases().items()]

    def _owner(self, name: str, base: dict) -> str | None:
        return self.daemon.engine.daemon_name if base["owned"] else self.owners.get(name)

    def daemon_view(self) -> dict:
        view = {k: views.iso(v) for k, v in self.daemon.identity().items()}
        view["users_configured"] = bool(self.daemon.engine.config.monitor.users)
        return view

    def config_view(self) -> dict:
        c = self.daemon.engine.config
        s = c.synchro
        return {"enabled": s.enabled, "sleep_period": s.sleep_period,
                "calls_per_period": s.calls_per_period, "max_attempts": s.max_attempts,
                "mark_erroneous": s.mark_erroneous, "only_finished": s.only_finished,
                "only_processed": s.only_processed, "verify": s.verify,
                "copy_workers": s.copy_workers, "start_at": views.iso(s.start_at),
                "target_sysname": c.target.sysname, "sources": len(c.sources),
                "token_ttl": c.monitor.token_ttl, "history_days": c.monitor.history_days}

    def status(self) -> dict:
        now = _now()
        bases = self.bases()
        return {"daemon": self.daemon_view(),
                "sources": [self.source(n, b, now) for n, b in bases.items()],
                "jobs": [views.job_view(n, b, self._owner(n, b)) for n, b in bases.items()],
                "target_paths": self._target_views(self.daemon.engine.target_states),
                "config": self.config_view(),
                "generated_at": now.isoformat()}

    def gauges(self) -> tuple[list[dict], list[dict]]:
        return self.sources(), self._target_views(self.daemon.engine.target_states)

    # --- target paths ------------------------------------------------------------
    def _target_views(self, states: dict) -> list[dict]:
        t = self.daemon.engine.config.target
        out, seen = [], set()
        kinds = [("audio", p) for p in t.audio_paths] + [("video", p) for p in t.video_paths]
        for kind, p in kinds:
            if p.path in seen:  # without video_paths, video files share the audio paths
                continue
            seen.add(p.path)
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
        ready = self.daemon.engine.schema_ready
        async with db() as conn:
            live = await daemons.live(conn)
            names = [s.sysname for s in self.daemon.engine.config.sources]
            self.attempts = await reads.attempt_counts(conn, names) if ready else {}
            if ready:
                tokens.adopt_revoked(await controls.revoked(conn))
        self.owners = {name: d["name"] for name, d in daemons.owners(live).items()}

    # --- live events ---------------------------------------------------------------
    def on_cycle(self, rt, res) -> None:
        name = rt.cfg.sysname
        self.hub.publish("cycle", {
            "source": name, "run_id": res.run_id, "state": res.state,
            "generation": rt.generation, "seconds": round(res.seconds, 3),
            "counts": {k: getattr(res, k) for k in views.COUNT_KEYS}, "error": res.error})
        if rt.stalled_since is not None:
            self.alarm("source_stalled", name, res.error or "media I/O stalled")
        elif res.state in ("down", "error"):
            self.alarm("source_down", name, res.error or res.state)
        elif name in self._alarmed:
            self._alarmed.pop(name)
            self.hub.publish("alarm", {"kind": "source_recovered", "source": name,
                                       "message": f"{name} works again", "at": _now().isoformat()})

    def alarm(self, kind: str, source: str | None, message: str, key: str | None = None) -> None:
        """Raised once per episode: a source down for an hour is one alarm."""
        key = key or source or kind
        if self._alarmed.get(key) == kind and kind != "config_error":
            return
        self._alarmed[key] = kind
        self.hub.publish("alarm", {"kind": kind, "source": source, "message": message,
                                   "at": _now().isoformat()})

    def publish_changes(self) -> None:
        now = _now()
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
