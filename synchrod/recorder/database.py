"""Recorder (source) database I/O: load a batch, mark it, speech tags.

Thin by design: every decision lives in ``synchrod.core``; this module only
turns rows into domain records and lists of marks into one statement. Its
statements are built once per connection from the recorder's catalog
(``synchrod.introspect``), so they name only columns this CallREC version
has.

Two kinds of ugly data must fail only their own call, never the batch
query: text that is not valid in the database's encoding (old ``SQL_ASCII``
installations store raw bytes of some codepage) and timestamps Python cannot
represent (the year 10000). So a ``SQL_ASCII`` recorder is read with
``client_encoding = LATIN1`` (every byte one character, nothing refused on
the wire) and its text decoded here with the source's ``text_encoding``;
undecodable bytes become surrogates that the row check turns into a failure
of that call. Timestamps go through a codec that returns
:class:`~synchrod.core.model.OutOfRange` instead of raising.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

import asyncpg

from ..core import clock
from ..core.catalog import Catalog
from ..core.model import (
    COUPLE_COLUMNS,
    FILE_COLUMNS,
    CFile,
    Extdata,
    OutOfRange,
    SourceCouple,
    VoiceTag,
)
from ..pg import connect as dbconn
from ..pg import sql
from ..pg.introspect import read_catalog
from . import statements

__all__ = ["Recorder", "open_recorder", "MINUS_INFINITY", "install_timestamp_codec"]

MINUS_INFINITY = clock.BEGINNING
_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)

def _decode_timestamp(value: tuple[int]) -> dt.datetime | OutOfRange:
    try:
        return _PG_EPOCH + value[0] * _MICROSECOND
    except OverflowError:
        return OutOfRange(value[0])


def _encode_timestamp(value: dt.datetime) -> tuple[int]:
    return ((value - _PG_EPOCH) // _MICROSECOND,)


async def install_timestamp_codec(conn: asyncpg.Connection) -> None:
    """Makes ``conn`` read timestamptz as a UTC datetime, or OutOfRange where Python
    cannot hold it, so one bad value never fails a batch query."""
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=_encode_timestamp,
                              decoder=_decode_timestamp, format="tuple")


class Wire:
    """Text of a ``SQL_ASCII`` database: LATIN1 on the wire (byte-transparent),
    decoded with the source's codec; paths keep their raw bytes."""

    def __init__(self, codec: str | None):
        self.codec = codec or "utf-8"

    def inbound(self, value: Any) -> Any:
        """Text from the wire decoded with the source's codec (undecodable bytes as lone
        surrogates); anything but text unchanged."""
        if isinstance(value, str):
            return value.encode("latin-1").decode(self.codec, "surrogateescape")
        return value

    def outbound(self, value: str) -> str:
        """Text in the source's codec, spelt as the LATIN1 the wire carries (surrogates
        back to their raw bytes)."""
        return value.encode(self.codec, "surrogateescape").decode("latin-1")

    def path(self, value: str | None) -> str | None:
        """A cfpath as the raw bytes on disk, whatever the recorder's codepage; None stays None."""
        # a path is the bytes on disk, whatever codepage the recorder meant
        return None if value is None else os.fsdecode(value.encode("latin-1"))


class Recorder:
    """One recorder connection with the statements its catalog allows."""

    def __init__(self, conn: asyncpg.Connection, catalog: Catalog, wire: Wire | None):
        self.conn = conn
        self.catalog = catalog
        self.wire = wire
        self._couple_columns = tuple(c for c in COUPLE_COLUMNS if catalog.has("couples", c))
        self._file_columns = tuple(c for c in FILE_COLUMNS if catalog.has("cfiles", c))
        self._has_protected = catalog.has("couples", "protected")
        # (resync, voice tags) -> the batch query; voice tags follow a live reload
        self._queries = {(resync, tags): statements.load_query(catalog, self._couple_columns, self._file_columns,
                                                     resync, tags)
                         for resync in (False, True) for tags in (False, True)}
        self._backlog = statements.backlog_query(catalog)

    # --- text crossing the wire ---------------------------------------------------
    def _out(self, values: Sequence[str]) -> list[str]:
        return [self.wire.outbound(v) for v in values] if self.wire else list(values)

    def _in(self, value):
        return self.wire.inbound(value) if self.wire else value

    # --- batches -----------------------------------------------------------------------
    async def load_batch(self, *, earliest: dt.datetime | None, only_finished: bool,
                         only_processed: bool, without_streams: bool,
                         excluded: Sequence[tuple[int, str]], limit: int, voice_tags: bool,
                         resync_cursor: tuple[dt.datetime, int] | None = None,
                         retry_due: Sequence[int] = ()) -> list[SourceCouple]:
        """The oldest candidates of this source, at most ``limit``, in one
        query. ``excluded``: (couple id, sid) in back-off; a couple whose id
        is listed under another sid (a recorder restored from a backup reuses
        ids) is not excluded."""
        args = [earliest or MINUS_INFINITY, only_finished, only_processed, without_streams,
                [i for i, _ in excluded], self._out([s for _, s in excluded]), limit]
        if resync_cursor is not None:
            args += [*resync_cursor, list(retry_due)]
        rows = await self.conn.fetch(self._queries[resync_cursor is not None, voice_tags], *args)
        return [self._couple(r) for r in rows]

    def _couple(self, r: asyncpg.Record) -> SourceCouple:
        tx, wire = self._in, self.wire
        columns = {c: tx(r[c]) for c in self._couple_columns}
        files = []
        for f in r["files"]:
            extra = dict(zip(self._file_columns, (tx(v) for v in f[5:])))
            files.append(CFile(int(f[0]), tx(f[2]), int(f[3] or 0),
                               wire.path(f[4]) if wire else f[4], sgid=f[1], **extra))
        return SourceCouple(
            id=r["id"], callid=r["callid"], synchronized=r["synchronized"],
            protected=r["protected"] if self._has_protected else None, **columns,
            call_start_ts=r["call_start_ts"], call_stop_ts=r["call_stop_ts"],
            call_length=r["call_length"], call_cplcnt=r["call_cplcnt"],
            call_sids=tuple(tx(s[0]) for s in r["call_sids"]),
            files=tuple(files),
            extdata=tuple(Extdata(tx(e[0]), tx(e[1]), e[2]) for e in r["extdata"]),
            voice_tags=tuple(VoiceTag(tx(v[0]), v[1], v[2], v[3], tx(v[4])) for v in r["voice_tags"]),
        )

    async def mark(self, marks: dict[int, tuple[str, str]]) -> None:
        """Writes every mark of a batch in one statement: couple id → (sid,
        mark); a couple whose sid changed meanwhile is left alone."""
        if not marks:
            return
        ids = list(marks)
        async with self.conn.transaction():  # the couples' update triggers fire per row
            await self.conn.execute(dbconn.WRITE_PLANS)
            await self.conn.execute(sql.load(__package__, "mark.sql"), ids,
                                    self._out([marks[i][0] for i in ids]), [marks[i][1] for i in ids])

    async def clear_erroneous(self, sids: Sequence[str] | None) -> int:
        """Clears E marks (of the given sids only, when given); returns how many."""
        status = await self.conn.execute(sql.load(__package__, "clear_erroneous.sql"),
                                         self._out(sids) if sids else None)
        return int(status.split()[-1])

    async def backlog(self, *, earliest: dt.datetime | None, only_finished: bool,
                      only_processed: bool, without_streams: bool) -> tuple[int, dt.datetime | None]:
        """(eligible calls not yet synchronized, start of the oldest of them)."""
        row = await self.conn.fetchrow(self._backlog, earliest or MINUS_INFINITY, only_finished,
                                       only_processed, without_streams)
        oldest = row["oldest"]
        return row["backlog"], None if isinstance(oldest, OutOfRange) else oldest

    async def ensure_index(self) -> bool:
        """Creates the pending-couples index if missing; False when not allowed."""
        exists = await self.conn.fetchval(
            "SELECT true FROM pg_indexes WHERE schemaname = 'callrec' AND indexname = $1",
            "synchrod_couples_pending")
        if exists:
            return True
        try:
            await self.conn.execute(sql.load(__package__, "index.sql"))
        except asyncpg.InsufficientPrivilegeError:
            return False
        return True

    async def close(self) -> None:
        """Closes the connection within 5 s; one that will not close cleanly is terminated."""
        try:
            await self.conn.close(timeout=5)
        except Exception:  # noqa: BLE001 - a dead connection closes by terminating
            self.conn.terminate()

    def is_closed(self) -> bool:
        """True once the recorder connection is closed or lost."""
        return self.conn.is_closed()


async def open_recorder(dsn: str, *, text_encoding: str | None, application_name: str) -> Recorder:
    """Connects, reads the catalog and sets the connection up for this
    recorder's encoding."""
    conn = await dbconn.connect(dsn, application_name=application_name)
    try:
        await install_timestamp_codec(conn)
        catalog = await read_catalog(conn)
        wire = None
        if catalog.encoding == "SQL_ASCII":
            await conn.execute("SET client_encoding = 'LATIN1'")
            wire = Wire(text_encoding)
        return Recorder(conn, catalog, wire)
    except BaseException:
        conn.terminate()
        raise
