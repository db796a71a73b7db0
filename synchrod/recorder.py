"""Recorder (source) database I/O: load a batch, mark it, speech tags.

Thin by design: every decision lives in ``synchrod.core``; this module only
turns rows into domain records and lists of marks into one statement.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from . import sql
from .core.model import CFile, SourceCouple
from .dbconn import connect

__all__ = ["connect", "load_batch", "mark", "ensure_index", "identity", "MINUS_INFINITY",
           "SpeechTags", "read_speech_tags", "speech_tags_digest", "write_speech_tags"]

MINUS_INFINITY = dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)

_PENDING = "c.synchronized IS NULL"
# re-sync: marked calls once each past a cursor, plus failed ones due again
_PENDING_OR_RESYNC = ("(c.synchronized IS NULL OR (c.synchronized IN ('S', 'N', 'E') "
                      "AND ((c.start_ts, c.id) > ($7::timestamptz, $8::bigint) "
                      "OR c.id = ANY ($9::bigint[]))))")


def _query(resync: bool) -> str:
    return sql.load("source_load_batch.sql").replace(
        "{pending}", _PENDING_OR_RESYNC if resync else _PENDING)


async def load_batch(conn: asyncpg.Connection, *, earliest: dt.datetime | None,
                     only_finished: bool, only_processed: bool, without_streams: bool,
                     excluded: Sequence[int], limit: int,
                     resync_cursor: tuple[dt.datetime, int] | None = None,
                     retry_due: Sequence[int] = ()) -> list[SourceCouple]:
    """The oldest candidates of this source, at most ``limit``, in one query."""
    args = [earliest or MINUS_INFINITY, only_finished, only_processed, without_streams,
            list(excluded), limit]
    if resync_cursor is not None:
        args += [*resync_cursor, list(retry_due)]
    rows = await conn.fetch(_query(resync_cursor is not None), *args)
    return [_couple(r) for r in rows]


def _couple(r: asyncpg.Record) -> SourceCouple:
    return SourceCouple(
        id=r["id"], callid=r["callid"], start_ts=r["start_ts"], stop_ts=r["stop_ts"],
        length=r["length"], callingnr=r["callingnr"], originalcallednr=r["originalcallednr"],
        finalcallednr=r["finalcallednr"], callingpartyname=r["callingpartyname"],
        calledpartyname=r["calledpartyname"], problemstatus=r["problemstatus"],
        description=r["description"], protected=r["protected"], sid=r["sid"],
        synchronized=r["synchronized"], mixed=r["mixed"], state=r["state"],
        call_start_ts=r["call_start_ts"], call_stop_ts=r["call_stop_ts"],
        call_length=r["call_length"],
        files=tuple(CFile(int(f[0]), f[1], int(f[2] or 0), f[3], f[4], f[5], f[6])
                    for f in r["files"]),
        extdata=tuple((e[0], e[1]) for e in r["extdata"]),
        voice_tags=tuple((v[0], int(v[1])) for v in r["voice_tags"]),
    )


async def mark(conn: asyncpg.Connection, marks: dict[int, str]) -> None:
    """Writes every mark of a batch in one statement."""
    if not marks:
        return
    ids = list(marks)
    await conn.execute(sql.load("source_mark.sql"), ids, [marks[i] for i in ids])


async def clear_erroneous(conn: asyncpg.Connection, sids: Sequence[str] | None) -> int:
    """Clears E marks (of the given sids only, when given); returns how many."""
    status = await conn.execute(sql.load("source_clear_erroneous.sql"),
                                list(sids) if sids else None)
    return int(status.split()[-1])


async def ensure_index(conn: asyncpg.Connection) -> bool:
    """Creates the pending-couples index if missing; False when not allowed."""
    exists = await conn.fetchval(
        "SELECT true FROM pg_indexes WHERE schemaname = 'callrec' AND indexname = $1",
        "synchrod_couples_pending")
    if exists:
        return True
    try:
        await conn.execute(sql.load("source_index.sql"))
    except asyncpg.InsufficientPrivilegeError:
        return False
    return True


async def identity(conn: asyncpg.Connection) -> tuple[str, str]:
    """(server id, database name): equal for two DSNs naming one database."""
    row = await conn.fetchrow(sql.load("identity.sql"))
    return row["server_id"], row["dbname"]


# --- speech tags: the replay database is the master ----------------------

SpeechTags = tuple[dict[str, str | None], set[tuple[str, str]]]


async def speech_tags_digest(conn: asyncpg.Connection) -> str:
    return await conn.fetchval(sql.load("speech_tags_digest.sql"))


async def read_speech_tags(conn: asyncpg.Connection) -> SpeechTags:
    tags = {r["name"]: r["description"]
            for r in await conn.fetch("SELECT name, description FROM callrec.speech_tags")}
    phrases = {(r["tag"], r["phrase"])
               for r in await conn.fetch("SELECT tag, phrase FROM callrec.speech_phrases")}
    return tags, phrases


async def write_speech_tags(conn: asyncpg.Connection, master: SpeechTags) -> dict[str, int]:
    """Makes this database's speech tags identical to ``master``; returns counts."""
    want_tags, want_phrases = master
    async with conn.transaction():
        have_tags, have_phrases = await read_speech_tags(conn)
        drop_phrases = sorted(have_phrases - want_phrases)
        add_phrases = sorted(want_phrases - have_phrases)
        drop_tags = sorted(set(have_tags) - set(want_tags))
        add_tags = sorted(set(want_tags) - set(have_tags))
        upd_tags = sorted(t for t in set(want_tags) & set(have_tags) if want_tags[t] != have_tags[t])
        if drop_phrases:
            await conn.execute(
                "DELETE FROM callrec.speech_phrases p USING unnest($1::text[], $2::text[]) AS d(tag, phrase)"
                " WHERE p.tag = d.tag AND p.phrase = d.phrase",
                [t for t, _ in drop_phrases], [p for _, p in drop_phrases])
        if drop_tags:
            await conn.execute("DELETE FROM callrec.speech_tags WHERE name = ANY($1::text[])", drop_tags)
        if add_tags or upd_tags:
            names = add_tags + upd_tags
            await conn.execute(
                "INSERT INTO callrec.speech_tags (name, description)"
                " SELECT * FROM unnest($1::text[], $2::text[])"
                " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description",
                names, [want_tags[n] for n in names])
        if add_phrases:
            await conn.execute(
                "INSERT INTO callrec.speech_phrases (tag, phrase)"
                " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                [t for t, _ in add_phrases], [p for _, p in add_phrases])
    return {"inserted": len(add_tags) + len(add_phrases), "updated": len(upd_tags),
            "deleted": len(drop_tags) + len(drop_phrases)}


async def backlog(conn: asyncpg.Connection, *, earliest: dt.datetime | None, only_finished: bool,
                  only_processed: bool, without_streams: bool) -> tuple[int, dt.datetime | None]:
    """(eligible calls not yet synchronized, start of the oldest of them)."""
    row = await conn.fetchrow(sql.load("source_backlog.sql"), earliest or MINUS_INFINITY,
                              only_finished, only_processed, without_streams)
    return row["backlog"], row["oldest"]
