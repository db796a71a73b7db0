"""What an operator can ask of the daemon: pause, resume, disable, enable,
run or retry a source, reload the configuration, stop (the monitor API's
actions). ``retry_calls`` is shared with ``synchrod retry``."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import asyncpg
import structlog

from .. import recorder
from ..config import SourceConfig
from ..core.states import SourceEvent
from .handle import DaemonHandle

if TYPE_CHECKING:
    from ..sync.engine import Engine
from ..errors import ActionRefused, SourceUnreachable
from ..pg.connect import UNREACHABLE, redact
from ..replay import controls, daemons, reads

log = structlog.get_logger("synchrod.actions")


async def retry_calls(replay_conn: asyncpg.Connection, src: SourceConfig,
                      sids: Sequence[str] | None) -> tuple[int, int]:
    """Forgets the failure records, then clears the E marks (in that order: an
    E call cleared while its exhausted attempt count remained would fail
    straight back to E). Returns (records reset, marks cleared)."""
    reset = await controls.forget_attempts(replay_conn, src.sysname, sids) if await reads.schema_ready(replay_conn) else 0
    try:
        rec = await recorder.open_recorder(src.database, text_encoding=src.text_encoding,
                                           application_name="synchrod:retry")
    except UNREACHABLE as exc:
        raise SourceUnreachable(f"source {src.sysname} unreachable: {redact(str(exc))}") from None
    try:
        cleared = await rec.clear_erroneous(sids)
    finally:
        await rec.close()
    return reset, cleared


class Actions:
    """The operators' actions on a running daemon (the monitor API's POSTs)."""

    def __init__(self, daemon: DaemonHandle, db: Callable[[], AbstractAsyncContextManager]):
        self.daemon = daemon
        self.db = db        # async context manager: a connection to the replay database

    @property
    def engine(self) -> Engine:
        """The daemon's engine: the sources' runtimes."""
        return self.daemon.engine

    async def source(self, action: str, sysname: str, user: str) -> str:
        """Does ``action`` (pause, resume, disable, enable, run, retry) to the source for ``user``;
        returns what happened, in words. Raises ActionRefused: 404 for an unknown source,
        409 or 503 when the action cannot be done now."""
        src = self.engine.config.source(sysname)
        runtime = self.engine.sources.get(sysname)
        if src is None or runtime is None:
            raise ActionRefused(404, "no such source")
        return await getattr(self, f"_{action}")(src, runtime, user)

    async def _pause(self, src, runtime, user: str) -> str:
        if runtime.paused_by is not None:
            return f"{src.sysname} was already paused by {runtime.paused_by}"
        runtime.paused_by = user
        return (f"{src.sysname} paused: the calls in hand finish, no new ones are taken "
                "until resume (or a restart of the daemon)")

    async def _resume(self, src, runtime, user: str) -> str:
        if runtime.paused_by is None:
            return f"{src.sysname} was not paused"
        runtime.paused_by = None
        runtime.on(SourceEvent.RESUMED)
        self.daemon.control.run_now(src.group)
        return f"{src.sysname} resumed"

    async def _disable(self, src, runtime, user: str) -> str:
        if not src.enabled:
            return f"{src.sysname} is already disabled in the configuration file"
        async with self.db() as conn:
            await controls.disable(conn, src.sysname, user)
        self.engine.disabled_by[src.sysname] = user
        await self.daemon.ownership.release({src.sysname})
        runtime.on(SourceEvent.DISABLED_BY_API)
        return f"{src.sysname} disabled for every daemon until enabled again"

    async def _enable(self, src, runtime, user: str) -> str:
        if not src.enabled:
            raise ActionRefused(409, f"{src.sysname} is disabled in the configuration file "
                                     f"({self.daemon.path}): set enabled: true there")
        async with self.db() as conn:
            await controls.enable(conn, src.sysname)
        was = self.engine.disabled_by.pop(src.sysname, None)
        runtime.on(SourceEvent.ENABLED)
        await self._wake(src)
        return f"{src.sysname} enabled" if was else f"{src.sysname} was not disabled"

    async def _run(self, src, runtime, user: str) -> str:
        self._runnable(src, runtime)
        return await self._wake(src)

    async def _retry(self, src, runtime, user: str) -> str:
        async with self.db() as conn:
            try:
                reset, cleared = await retry_calls(conn, src, None)
            except SourceUnreachable as exc:
                raise ActionRefused(503, str(exc)) from None
        log.info("retry", source=src.sysname, user=user, cleared=cleared, reset=reset)
        woke = ""
        if self.engine.enabled(src) and runtime.paused_by is None:
            woke = "; " + await self._wake(src)
        return f"{src.sysname}: cleared {cleared} E mark(s), reset {reset} failure record(s){woke}"

    def _runnable(self, src, runtime) -> None:
        if not self.engine.enabled(src):
            raise ActionRefused(409, f"{src.sysname} is disabled: enable it first")
        if runtime.paused_by is not None:
            raise ActionRefused(409, f"{src.sysname} is paused: resume it first")

    async def _wake(self, src) -> str:
        if src.sysname in self.daemon.ownership.held:
            self.daemon.control.run_now(src.group)
            return f"{src.sysname} runs now"
        async with self.db() as conn:  # worked by another daemon: ask it
            listening = await daemons.notify_run_now(conn, src.sysname)
        return (f"asked {listening} daemon(s) to run {src.sysname} now" if listening
                else f"no daemon works {src.sysname} now")

    async def reload(self) -> tuple[bool, str | None]:
        """Reloads the configuration file now: (True, None), or (False, why it was refused)."""
        ok = await self.daemon.reload("api")
        return ok, None if ok else self.daemon.config_error

    def shutdown(self) -> None:
        """Asks the daemon to stop gracefully (the calls in hand finish); returns at once."""
        self.daemon.control.stop.set()
