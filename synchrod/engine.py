"""Long-lived state shared by cycles: the target pool, one runtime per source
(its connection, its media pool), the balance ledger of target paths."""
from __future__ import annotations

import asyncio
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import asyncpg

from . import recorder
from .config import Config, SourceConfig
from .dbconn import UNREACHABLE, connect, create_pool, redact
from .replay import reads, schema


class SameDatabaseError(Exception):
    """A source DSN names the replay database itself."""


@dataclass
class SourceRuntime:
    cfg: SourceConfig
    pool: ThreadPoolExecutor
    workers: int
    conn: asyncpg.Connection | None = None
    verified: bool = False        # identity compared with the target's
    index_ready: bool = False
    state: str = "waiting"        # waiting | running | down | disabled
    last_error: str | None = None

    async def connection(self, target_identity: tuple[str, str]) -> asyncpg.Connection:
        if self.conn is not None and not self.conn.is_closed():
            return self.conn
        self.conn = await connect(self.cfg.database, application_name=f"synchrod:{self.cfg.sysname}")
        if not self.verified:
            ident = await recorder.identity(self.conn)
            if ident == target_identity:
                await self.drop()
                raise SameDatabaseError(f"source {self.cfg.sysname} is the replay database itself")
            self.verified = True
        return self.conn

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()


@dataclass
class Engine:
    config: Config
    target_pool: asyncpg.Pool | None = None
    target_identity: tuple[str, str] | None = None
    schema_ready: bool = False    # synchrod's tables exist in the replay database
    sources: dict[str, SourceRuntime] = field(default_factory=dict)
    balance_ledger: dict[str, int] = field(default_factory=dict)
    daemon_name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    async def open(self, migrate: bool = True) -> None:
        groups = {s.group for s in self.config.sources} or {"default"}
        self.target_pool = await create_pool(self.config.target.database,
                                             application_name="synchrod:target",
                                             max_size=2 * len(groups) + 2)
        async with self.target_pool.acquire() as conn:
            if migrate:
                await schema.migrate(conn)
            self.schema_ready = await reads.schema_ready(conn)
            self.target_identity = await recorder.identity(conn)
        self.apply_config(self.config)

    def apply_config(self, config: Config) -> None:
        """Adopts a (re)loaded configuration; sources keep their runtime."""
        self.config = config
        workers = config.synchro.copy_workers
        for src in config.sources:
            rt = self.sources.get(src.sysname)
            if rt is None:
                self.sources[src.sysname] = SourceRuntime(
                    src, ThreadPoolExecutor(workers, thread_name_prefix=f"media-{src.sysname}"),
                    workers)
            else:
                if rt.cfg.database != src.database:
                    rt.verified = False
                    rt.index_ready = False
                    asyncio.get_event_loop().create_task(rt.drop())
                rt.cfg = src

    async def verify_sources(self) -> list[str]:
        """Refuses sources that are the target database; returns those that
        could not be reached (checked again at their first cycle)."""
        unreachable = []
        for rt in self.sources.values():
            if not rt.cfg.enabled:
                continue
            try:
                await rt.connection(self.target_identity)
            except SameDatabaseError:
                raise
            except UNREACHABLE as exc:
                unreachable.append(f"{rt.cfg.sysname}: {redact(str(exc))}")
        return unreachable

    async def close(self) -> None:
        for rt in self.sources.values():
            await rt.drop()
            rt.pool.shutdown(wait=False, cancel_futures=True)
        if self.target_pool is not None:
            await self.target_pool.close()
            self.target_pool = None

    def owned_roots(self) -> tuple[str, ...]:
        t = self.config.target
        return tuple(sorted({p.path for p in t.audio_paths + t.video_paths}))
