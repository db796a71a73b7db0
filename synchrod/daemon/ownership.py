"""Which daemon works which source: the balanced assignment over the live
daemons (``core.assignment``, SPEC §11) says which sources a daemon should
own; session advisory locks in the replay database, held on one dedicated
connection per daemon, make sure no source ever has two.

A lock is released by PostgreSQL the moment its connection ends, so the
sources of a daemon killed with SIGKILL are free for another daemon at its
next claim. The same connection carries the "run now" notifications and the
daemon's published state (see ``replay.daemons``).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import asyncpg
import structlog

from ..core import assignment
from ..pg.connect import UNREACHABLE, connect, redact
from ..replay import daemons

log = structlog.get_logger("synchrod.ownership")

PEERS_TTL = 1.0   # seconds the other daemons' published sources are reused (one read for all groups)

class Ownership:
    """This daemon's claims on sources, its notifications and its published
    state, on one dedicated connection to the replay database."""

    def __init__(self, dsn: str, daemon_name: str,
                 on_run_now: Callable[[str], None] | None = None, role: str = "owner"):
        """``role`` "owner" for a daemon (it is what `run-now` counts as
        listening), anything else for a one-shot command such as `once`."""
        self.dsn = dsn
        self.daemon_name = daemon_name
        self.on_run_now = on_run_now
        self.role = role
        self.conn: asyncpg.Connection | None = None
        self.held: set[str] = set()
        self.duties: set[str] = set()   # singleton jobs this daemon runs (storage, ...)
        self.on_lost: Callable[[], None] | None = None
        self.lock = asyncio.Lock()   # one statement at a time on the connection
        self.lost = 0                # times the connection (and every lock) was lost
        # the daemon's row as it should be published: written before a release unlocks,
        # so no published row says a source is owned once another daemon may own it
        self.publish_args: Callable[[], tuple] | None = None
        self._peers: tuple[float, dict[str, set[str]]] | None = None

    @property
    def connected(self) -> bool:
        """Whether the owner connection is open (every lock held lives on it)."""
        return self.conn is not None and not self.conn.is_closed()

    async def _connection(self) -> asyncpg.Connection:
        if self.connected:
            return self.conn
        if self.conn is not None or self.held:
            self._forget("connection closed")
        conn = await connect(self.dsn, application_name=f"synchrod:{self.role}:{self.daemon_name}")
        # a connection that ends takes every lock with it: know it at once, so
        # cycles in progress stop taking calls of sources no longer owned
        conn.add_termination_listener(self._terminated)
        if self.on_run_now is not None:
            await conn.add_listener(daemons.RUN_NOW_CHANNEL, self._notified)
        self.conn = conn
        return conn

    def _terminated(self, conn) -> None:
        if conn is self.conn:
            self._forget("owner connection ended")

    def owns(self, name: str) -> bool:
        """Whether this daemon holds the source's lock now (False once the connection is lost)."""
        return name in self.held

    def _notified(self, _conn, _pid, _channel, payload: str) -> None:
        self.on_run_now(payload)

    def _forget(self, why: str) -> None:
        if self.held:
            log.warning("ownership_lost", sources=sorted(self.held), reason=why)
        self.held = set()
        self.duties = set()
        self.lost += 1
        conn, self.conn = self.conn, None
        if self.on_lost is not None:
            self.on_lost()
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def assigned(self, enabled: Iterable[str]) -> set[str]:
        """Of this daemon's ``enabled`` sources, those the balanced assignment
        over the live daemons gives it (the others' published sources read at
        most every PEERS_TTL seconds); none when the replay database cannot be
        reached (nothing could be committed)."""
        enabled = set(enabled)
        loop = asyncio.get_running_loop()
        async with self.lock:
            if self._peers is None or loop.time() - self._peers[0] > PEERS_TTL:
                try:
                    conn = await self._connection()
                    self._peers = (loop.time(), await daemons.peer_sources(conn, self.daemon_name))
                except UNREACHABLE as exc:
                    self._forget(redact(str(exc)))
                    return set()
            peers = self._peers[1]
        candidates: dict[str, set[str]] = {s: {self.daemon_name} for s in enabled}
        for name, sources in peers.items():
            for s in sources:
                candidates.setdefault(s, set()).add(name)
        return assignment.mine(candidates, self.daemon_name)

    async def claim(self, wanted: Iterable[str]) -> set[str]:
        """Tries to own every wanted source; returns those this daemon owns.
        An unreachable replay database owns nothing (it could commit nothing)."""
        wanted = set(wanted)
        async with self.lock:
            try:
                conn = await self._connection()
                missing = sorted(wanted - self.held)
                if missing:
                    got = {r["n"] for r in await conn.fetch(daemons.CLAIM_SOURCES, daemons.OWNER_CLASS, missing)}
                    if got:
                        log.info("sources_claimed", sources=sorted(got))
                    self.held |= got
            except UNREACHABLE as exc:
                self._forget(redact(str(exc)))
                return set()
        return self.held & wanted

    async def claim_duty(self, duty: str) -> bool:
        """Whether this daemon runs the singleton job ``duty`` (space management,
        ...): held until the owner connection ends, so exactly one live daemon
        runs it; False when the replay database cannot be reached."""
        async with self.lock:
            if duty in self.duties and self.connected:
                return True
            try:
                conn = await self._connection()
                if await conn.fetchval(daemons.CLAIM_DUTY, daemons.DUTY_CLASS, duty):
                    self.duties.add(duty)
                    log.info("duty_claimed", duty=duty)
            except UNREACHABLE as exc:
                self._forget(redact(str(exc)))
                return False
        return duty in self.duties

    async def release(self, names: Iterable[str]) -> None:
        """Gives up the locks of the named sources this daemon holds (others are ignored); they
        leave ``held`` at once, even when the replay database cannot be reached."""
        names = sorted(set(names) & self.held)
        if not names:
            return
        async with self.lock:
            self.held -= set(names)
            if not self.connected:
                return
            try:
                if self.publish_args is not None:
                    await self.conn.execute(daemons.PUBLISH, *self.publish_args())
                await self.conn.fetchval(daemons.RELEASE_SOURCES, daemons.OWNER_CLASS, names)
                log.info("sources_released", sources=names)
            except UNREACHABLE as exc:
                self._forget(redact(str(exc)))

    async def execute(self, query: str, *args_or_maker) -> None:
        """Runs a statement on the owner connection (the daemon's published
        state). A single callable argument makes the arguments once the
        connection is up: a reconnection forgets every lock, and what is
        published must say so."""
        async with self.lock:
            try:
                conn = await self._connection()
                args = args_or_maker
                if len(args) == 1 and callable(args[0]):
                    args = args[0]()
                await conn.execute(query, *args)
            except UNREACHABLE as exc:
                self._forget(redact(str(exc)))

    async def close(self) -> None:
        """Closes the owner connection (terminated after 5 s), so every lock goes; never raises."""
        async with self.lock:
            conn, self.conn, self.held = self.conn, None, set()
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), 5)
                except Exception:  # noqa: BLE001 - closing: the server ends the locks anyway
                    conn.terminate()
