"""`synchrod run`: the daemon around the cycle loop.

Signal handlers, the configuration watcher and "run now" notifications only
set flags (``runner.Control``, ``Daemon._reload``); the tasks here act on
them: reload and apply the configuration, stop gracefully (or at once on a
second signal), ping the systemd watchdog, publish the daemon's state.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import sys

import structlog

from .. import __version__, exits, logs
from ..config import Config, ConfigError, load
from ..control import views
from ..core import clock
from ..core.states import DaemonState, SourceState
from ..errors import SecretError
from ..monitor.server import Monitor
from ..pg.connect import redact
from ..replay import archiveruns, daemons, history, samples
from ..sync.engine import Engine
from .archivewatch import ArchiveWatch
from .deletionwatch import DeletionWatch
from .ownership import Ownership
from .runner import Control, run_forever
from .sampler import Sampler
from .sdnotify import Notifier
from .storagewatch import StorageWatch
from .watcher import ConfigWatcher, content_digest

log = structlog.get_logger("synchrod")

PUBLISH_POLL = 1.0        # seconds between checks of the state to publish
PUBLISH_HEARTBEAT = 30.0  # publish at least this often, changed or not
TARGET_MEASURE = 5.0      # seconds between measurements of the target paths
FORCED_EXIT = 128         # + signal number: the shell's convention for "killed by"

# Changing these needs a restart: a reload naming them is refused.
_RESTART_KEYS = (("target.database", lambda c: c.target.database),
                 ("target.sysname", lambda c: c.target.sysname),
                 ("monitor.enabled", lambda c: c.monitor.enabled),
                 ("monitor.listen", lambda c: c.monitor.listen),
                 ("monitor.jwt_secret_file", lambda c: c.monitor.jwt_secret_file))
PRUNE_EVERY = 3600.0      # seconds between prunings of the cycle history
HISTORY_DUTY = "history"  # the singleton that prunes it


class Daemon:
    def __init__(self, cfg: Config, engine: Engine, ready_file: str | None = None):
        self.path = cfg.path
        self.ready_file = ready_file
        self.engine = engine
        self.control = Control()
        self.notifier = Notifier()
        self.ownership = Ownership(cfg.target.database, engine.daemon_name, self._run_now)
        self.ownership.publish_args = lambda: daemons.publish_args(self.snapshot())
        self.watcher = ConfigWatcher(cfg.path)
        self.monitor = Monitor(self) if cfg.monitor.enabled else None
        self.storage = StorageWatch(engine, self.ownership, lambda: self.monitor)
        self.deletions = DeletionWatch(engine, self.ownership, self.storage.notify)
        self.archive = ArchiveWatch(engine, self.ownership)
        self.sampler = Sampler(engine, self.ownership, self.source_bases)
        self.host, self.pid, self.version = socket.gethostname(), os.getpid(), __version__
        self.state = DaemonState.STARTING
        self.started_at = clock.now()
        self.config_loaded_at = clock.now()
        self.config_error: str | None = None
        self.config_error_at: dt.datetime | None = None
        self.config_seen = content_digest(cfg.path)   # the content last loaded or refused
        self._reload = asyncio.Event()
        self._forced: int | None = None
        self._force = asyncio.Event()
        self._status_line = ""
        self._reloading = asyncio.Lock()

    # --- flags: signal handlers and notifications ---------------------------------------
    def _on_stop_signal(self, signum: int) -> None:
        if self.control.stop.is_set():
            self._forced = signum
            self._force.set()
        else:
            self.control.stop.set()

    def _run_now(self, source: str) -> None:
        group = None
        if source:
            src = self.engine.config.source(source)
            if src is None:
                return
            group = src.group
        self.control.run_now(group)

    # --- the daemon --------------------------------------------------------------------
    async def run(self, reload_first: bool = False) -> int:
        """Runs the daemon until it stops; returns the exit code: OK, UNAVAILABLE when the
        monitor cannot start, SOFTWARE when the cycle loop crashed.

        Steps: signal handlers; forget dead daemons' rows; the monitor, the watcher and the
        helper tasks; READY=1 and the ready file; the cycle loop until a stop; a graceful
        stop within ``stop_timeout``; unpublish, release every source, close. A thread stuck
        in a hung mount makes it leave with ``os._exit``. ``reload_first``: reload at once."""
        loop = asyncio.get_running_loop()
        if reload_first:  # a SIGHUP came while starting: the file may have changed since
            self._reload.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)

        await self.ownership.execute(daemons.FORGET_DEAD)
        if self.monitor is not None:
            try:
                await self.monitor.start()
            except (OSError, SecretError) as exc:
                log.error("monitor_failed", listen=self.engine.config.monitor.listen,
                          error=getattr(exc, "strerror", None) or str(exc))
                await self.monitor.stop()
                await self.ownership.close()
                await self.engine.close()
                return exits.UNAVAILABLE
        self.watcher.start()
        self.storage.start()
        helpers = [asyncio.create_task(c) for c in (
            self._reloader(), self._watch_file(), self._watchdog(), self._publisher(),
            self._forcer(), self._pruner(), self._target_measurer(), self.storage.run(),
            self.deletions.run(), self.archive.run(), self.sampler.run())]
        cfg = self.engine.config
        log.info("started", version=__version__, config=self.path, daemon=self.engine.daemon_name,
                 sources=[s.sysname for s in cfg.sources], target=cfg.target.sysname)
        self.state = DaemonState.RUNNING
        self.notifier.ready(self.status_line())
        self._write_ready_file()
        cycles = asyncio.create_task(run_forever(self.engine, self.control, self.ownership))
        stopping = asyncio.create_task(self.control.stop.wait())
        rc = exits.OK
        try:
            await asyncio.wait([cycles, stopping], return_when=asyncio.FIRST_COMPLETED)
            if cycles.done() and cycles.exception() is not None:
                log.error("cycle_loop_failed", error=repr(cycles.exception()))
                rc = exits.SOFTWARE
            self.control.stop.set()
            await self._stop(cycles)
        finally:
            stopping.cancel()
            for t in helpers:
                t.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.monitor is not None:
                await self.monitor.stop()
            await self.storage.close()
            await self.archive.close()
            self.watcher.stop()
            await self.ownership.execute(daemons.FORGET, self.engine.daemon_name)
            await self.ownership.close()
            self._remove_ready_file()
            hung = self.engine.busy_sources()
            await self.engine.close()
        log.info("stopped", hung_sources=hung or None)
        if hung:
            # a thread blocked in a hung mount cannot be joined: leave without it
            _flush()
            os._exit(rc)
        return rc

    async def _stop(self, cycles: asyncio.Task) -> None:
        """Lets the calls in hand commit, within ``stop_timeout``."""
        self.state = DaemonState.STOPPING
        self.notifier.stopping()
        timeout = self.engine.config.synchro.stop_timeout
        log.info("stopping", timeout=timeout)
        done, _ = await asyncio.wait([cycles], timeout=timeout)
        if not done:
            log.warning("stop_timeout", seconds=timeout,
                        running=[n for n, r in self.engine.sources.items()
                                 if r.state is SourceState.RUNNING])
            cycles.cancel()
            await asyncio.wait([cycles], timeout=10)

    async def _forcer(self) -> None:
        await self._force.wait()
        log.warning("forced_exit", signal=signal.Signals(self._forced).name)
        self._remove_ready_file()
        _flush()
        os._exit(FORCED_EXIT + self._forced)

    def _write_ready_file(self) -> None:
        if not self.ready_file:
            return
        tmp = f"{self.ready_file}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            os.replace(tmp, self.ready_file)
        except OSError as exc:
            log.error("ready_file_failed", path=self.ready_file, error=exc.strerror)

    def _remove_ready_file(self) -> None:
        if not self.ready_file:
            return
        try:
            with open(self.ready_file) as fh:
                if fh.read().strip() == str(os.getpid()):
                    os.unlink(self.ready_file)
        except OSError:
            pass

    # --- configuration ------------------------------------------------------------------
    async def _reloader(self) -> None:
        while True:
            await self._reload.wait()
            self._reload.clear()
            await self._reload_guarded("signal")

    async def _watch_file(self) -> None:
        async for _ in self.watcher.changes():
            digest = content_digest(self.path)
            if digest is not None and digest != self.config_seen:
                await self._reload_guarded("file changed")

    async def _reload_guarded(self, reason: str) -> None:
        try:
            await self.reload(reason)
        except Exception:  # noqa: BLE001 - a failed reload must not end reloading
            log.exception("config_reload_crashed", reason=reason)
            self.notifier.ready(self.status_line())

    async def reload(self, reason: str) -> bool:
        """Reloads the configuration file, one reload at a time; False when it was refused
        (the running configuration is kept)."""
        async with self._reloading:  # the API, a signal and the watcher may ask at once
            return await self._reload_now(reason)

    async def _reload_now(self, reason: str) -> bool:
        """Loads the file and applies it; False, with ``config_error`` set and the running
        configuration kept, when it is invalid or changes a key that needs a restart. On success:
        logging, sources and the loops follow it, and the locks of sources no longer enabled
        are released. The monitor and systemd (READY=1) hear of it either way."""
        self.notifier.reloading()
        self.config_seen = content_digest(self.path)
        old = self.engine.config
        try:
            new = load(self.path)
            for key, get in _RESTART_KEYS:
                if get(new) != get(old):
                    raise ConfigError(key, "changing it needs a restart (systemctl restart synchrod)")
        except ConfigError as exc:
            self.config_error, self.config_error_at = str(exc), clock.now()
            log.error("config_reload_failed", reason=reason, key=exc.path or None, error=str(exc),
                      kept="the running configuration")
            ok = False
        else:
            if (new.logging.level, new.logging.format) != (old.logging.level, old.logging.format):
                logs.setup(new.logging.level, new.logging.format)
            removed = self.engine.apply_config(new)
            self.storage.apply_config(new.storage)
            wanted = {s.sysname for s in new.sources if s.enabled}
            await self.ownership.release(self.ownership.held - wanted)
            self.control.config_changed()
            self.config_error = self.config_error_at = None
            self.config_loaded_at = clock.now()
            old_names = {s.sysname for s in old.sources}
            log.info("config_reloaded", reason=reason,
                     added=sorted({s.sysname for s in new.sources} - old_names) or None,
                     removed=removed or None,
                     disabled=sorted(s.sysname for s in new.sources if not s.enabled) or None,
                     sleep_period=new.synchro.sleep_period)
            ok = True
        if self.monitor is not None:
            self.monitor.config_applied(old, self.engine.config, ok)
        self.notifier.ready(self.status_line())
        return ok

    # --- systemd and published state ---------------------------------------------------
    async def _target_measurer(self) -> None:
        """Measures the target paths every TARGET_MEASURE seconds, whether or
        not calls come: a path that closes or opens again is logged, shown by
        the monitor and published for `synchrod status`."""
        while True:
            try:
                await self.engine.measure_targets()
            except Exception:  # noqa: BLE001 - measuring must not end; the next try may work
                log.exception("target_measure_failed")
            await asyncio.sleep(TARGET_MEASURE)

    async def _watchdog(self) -> None:
        interval = Notifier.watchdog_interval()
        while interval:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def source_bases(self) -> dict[str, dict]:
        """Each configured source as the monitor and `synchrod status` show it."""
        held = self.ownership.held
        engine = self.engine
        return {s.sysname: views.source_base(s, engine.sources[s.sysname],
                                             engine.disabled_by.get(s.sysname),
                                             s.sysname in held)
                for s in engine.config.sources if s.sysname in engine.sources}

    def deletion_queued(self) -> None:
        """The API queued a bulk delete job: look for it now."""
        self.deletions.queued()

    def identity(self) -> dict:
        """The daemon itself: what it publishes and the monitor shows besides sources."""
        return {"name": self.engine.daemon_name, "host": self.host, "pid": self.pid,
                "version": self.version, "config_path": self.path,
                "config_loaded_at": self.config_loaded_at, "config_error": self.config_error,
                "config_error_at": self.config_error_at, "state": self.state,
                "started_at": self.started_at}

    def snapshot(self) -> dict:
        """What the daemon publishes in the replay database: its identity, every source's base
        and the target paths' problems."""
        return {**self.identity(), "sources": self.source_bases(),
                "targets": dict(self.engine.target_problems),
                "storage": self.engine.storage.published()}

    def status_line(self) -> str:
        """One line for systemctl status (sd_notify STATUS=)."""
        counts = self.engine.source_state_counts()
        stalled, down = [], []
        for name, runtime in self.engine.sources.items():
            if runtime.stalled_since is not None:
                stalled.append(name)
            elif runtime.state is SourceState.DOWN:
                down.append(name)
        parts = [f"{sum(counts.values())} sources: "
                 + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))]
        if stalled:
            parts.append("stalled: " + ",".join(stalled))
        if down:
            parts.append("down: " + ",".join(down))
        if self.config_error:
            parts.append("config error: " + self.config_error)
        return "; ".join(parts)[:300]

    async def _pruner(self) -> None:
        """Keeps ``monitor.history_days`` of cycle and archive history and samples: one
        daemon does it (the "history" duty), whichever holds the duty."""
        while True:
            await asyncio.sleep(60 if self.engine.schema_ready else PRUNE_EVERY)
            if not await self.ownership.claim_duty(HISTORY_DUTY):
                continue
            try:
                async with self.engine.target_pool.acquire(timeout=10) as conn:
                    pruned = await history.prune(conn, self.engine.config.monitor.history_days)
                    pruned += await archiveruns.prune(conn, self.engine.config.monitor.history_days)
                    await samples.prune(conn, self.engine.config.monitor.history_days)
                if pruned:
                    log.info("history_pruned", runs=pruned,
                             older_than_days=self.engine.config.monitor.history_days)
            except Exception as exc:  # noqa: BLE001 - tried again at the next period
                log.warning("history_prune_failed", error=redact(f"{type(exc).__name__}: {exc}"))
            await asyncio.sleep(PRUNE_EVERY)

    async def _publisher(self) -> None:
        last, last_at = None, 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                last, last_at = await self._publish_if_changed(last, last_at, loop)
            except Exception:  # noqa: BLE001 - e.g. a statement time-out: try again later
                log.exception("publish_failed")
            line = self.status_line()
            if line != self._status_line:
                self.notifier.status(line)
                self._status_line = line
            await asyncio.sleep(PUBLISH_POLL)

    async def _publish_if_changed(self, last: dict | None, last_at: float, loop):
        """Writes the daemon's row when its state changed, or as a heartbeat."""
        if self.snapshot() == last and loop.time() - last_at < PUBLISH_HEARTBEAT:
            return last, last_at
        published = []

        def args():  # made on the live connection: ownership may just have been lost
            published.append(self.snapshot())
            return daemons.publish_args(published[0])
        await self.ownership.execute(daemons.PUBLISH, args)
        return (published[0] if published else None), loop.time()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
