"""Speech-analytics definitions: the replay database is the master (SPEC §3).

Every enabled recorder's ``speech_tags``, ``speech_phrases`` and
``tag_to_phrases`` are made identical to the replay database's, matching
tags by ``tag_name`` (unique case-insensitively in CallREC) and phrases by
``phrase_text``: ids differ between databases and are never copied. Only the
columns both sides have are compared and written.

A digest of each side (every row of the three tables, as text) is taken each
cycle; when both digests are those of the last time this recorder was made
identical, nothing is read. Digests are compared with the remembered pair,
not with each other, because a recorder stored in another encoding never
has the master's bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ..core.catalog import Catalog
from ..pg.sql import ident
from .database import Recorder

DIGEST = """
SELECT md5(coalesce((SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM callrec.speech_tags t), '')
           || E'\\x1c' ||
           coalesce((SELECT string_agg(p::text, E'\\n' ORDER BY p::text) FROM callrec.speech_phrases p), '')
           || E'\\x1c' ||
           coalesce((SELECT string_agg(l::text, E'\\n' ORDER BY l::text) FROM callrec.tag_to_phrases l), ''))
"""
_LINKS = """
SELECT t.tag_name::text, p.phrase_text::text
  FROM callrec.tag_to_phrases l
  JOIN callrec.speech_tags t ON t.tagid = l.tagid
  JOIN callrec.speech_phrases p ON p.phraseid = l.phraseid
"""
_TAG_IDS = "SELECT tagid, tag_name::text FROM callrec.speech_tags"
_PHRASE_IDS = "SELECT phraseid, phrase_text FROM callrec.speech_phrases"
_LINK_IDS = "SELECT tagid, phraseid FROM callrec.tag_to_phrases"


def _data_columns(cat: Catalog, table: str, key: str, id_column: str) -> tuple[str, ...]:
    return (key,) + tuple(sorted(c for c in cat.columns(table) if c not in (key, id_column)))


@dataclass
class Definitions:
    """Tags by lower-cased name and phrases by text, each a row of column →
    value; links as (lower-cased tag name, phrase text)."""
    tag_columns: tuple[str, ...]
    phrase_columns: tuple[str, ...]
    tags: dict[str, dict]
    phrases: dict[str, dict]
    links: set[tuple[str, str]]


async def digest(conn: asyncpg.Connection) -> str:
    """md5 of every row of the database's speech_tags, speech_phrases and tag_to_phrases,
    as text (one query); unchanged while the definitions are."""
    return await conn.fetchval(DIGEST)


async def read_definitions(conn: asyncpg.Connection, cat: Catalog, tx=None) -> Definitions:
    """The three tables of one database; ``tx`` decodes a recorder's text."""
    tx = tx or (lambda v: v)
    tag_cols = _data_columns(cat, "speech_tags", "tag_name", "tagid")
    phrase_cols = _data_columns(cat, "speech_phrases", "phrase_text", "phraseid")
    tags = {}
    for r in await conn.fetch(f"SELECT {', '.join(map(ident, tag_cols))} FROM callrec.speech_tags"):
        row = {c: tx(r[c]) for c in tag_cols}
        tags[row["tag_name"].lower()] = row
    phrases = {}
    for r in await conn.fetch(f"SELECT {', '.join(map(ident, phrase_cols))} FROM callrec.speech_phrases"):
        row = {c: tx(r[c]) for c in phrase_cols}
        phrases[row["phrase_text"]] = row
    links = {(tx(t).lower(), tx(p)) for t, p in await conn.fetch(_LINKS)}
    return Definitions(tag_cols, phrase_cols, tags, phrases, links)


def _storable(rec: Recorder, row: dict) -> bool:
    """A recorder of another codepage cannot hold every master text."""
    if rec.wire is None:
        return True
    try:
        for v in row.values():
            if isinstance(v, str):
                v.encode(rec.wire.codec)
    except UnicodeEncodeError:
        return False
    return True


async def make_identical(rec: Recorder, master: Definitions) -> dict[str, int]:
    """Inserts, updates and deletes on the recorder until its definitions
    equal ``master``; returns the counts (``unstorable``: master rows the
    recorder's encoding cannot hold, left out)."""
    conn, cat = rec.conn, rec.catalog
    tag_cols = tuple(c for c in master.tag_columns if cat.has("speech_tags", c))
    phrase_cols = tuple(c for c in master.phrase_columns if cat.has("speech_phrases", c))
    want_tags = {k: {c: row[c] for c in tag_cols} for k, row in master.tags.items() if _storable(rec, row)}
    want_phrases = {k: {c: row[c] for c in phrase_cols} for k, row in master.phrases.items()
                    if _storable(rec, row)}
    unstorable = len(master.tags) - len(want_tags) + len(master.phrases) - len(want_phrases)
    out = rec._out
    counts = {"inserted": 0, "updated": 0, "deleted": 0, "unstorable": unstorable}
    async with conn.transaction():
        have = await read_definitions(conn, cat, rec._in)
        tag_ids = {rec._in(name).lower(): i for i, name in await conn.fetch(_TAG_IDS)}
        phrase_ids = {rec._in(text): i for i, text in await conn.fetch(_PHRASE_IDS)}

        gone_tags = [tag_ids[k] for k in have.tags if k not in want_tags]
        gone_phrases = [phrase_ids[k] for k in have.phrases if k not in want_phrases]
        if gone_tags:
            await conn.execute("DELETE FROM callrec.speech_tags WHERE tagid = ANY($1::int[])", gone_tags)
        if gone_phrases:
            # cascades to the recorder's voice tags of those phrases: the master dropped them
            await conn.execute("DELETE FROM callrec.speech_phrases WHERE phraseid = ANY($1::int[])",
                               gone_phrases)
        counts["deleted"] += len(gone_tags) + len(gone_phrases)
        for table, cols, want, has, ids, id_col in (
                ("speech_tags", tag_cols, want_tags, have.tags, tag_ids, "tagid"),
                ("speech_phrases", phrase_cols, want_phrases, have.phrases, phrase_ids, "phraseid")):
            counts["updated"] += await _update(conn, table, cols, id_col, out,
                                               [(ids[k], row) for k, row in want.items()
                                                if k in has and _differs(has[k], row)])
            counts["inserted"] += await _insert(conn, table, cols, out,
                                                [row for k, row in want.items() if k not in has])

        tag_ids = {rec._in(name).lower(): i for i, name in await conn.fetch(_TAG_IDS)}
        phrase_ids = {rec._in(text): i for i, text in await conn.fetch(_PHRASE_IDS)}
        want_links = {(tag_ids[t], phrase_ids[p]) for t, p in master.links
                      if t in tag_ids and p in phrase_ids}
        have_links = {(t, p) for t, p in await conn.fetch(_LINK_IDS)}
        drop, add = sorted(have_links - want_links), sorted(want_links - have_links)
        if drop:
            await conn.execute("DELETE FROM callrec.tag_to_phrases l USING unnest($1::int[], $2::int[])"
                               " AS d(tagid, phraseid) WHERE l.tagid = d.tagid AND l.phraseid = d.phraseid",
                               [t for t, _ in drop], [p for _, p in drop])
        if add:
            await conn.execute("INSERT INTO callrec.tag_to_phrases (tagid, phraseid)"
                               " SELECT * FROM unnest($1::int[], $2::int[])",
                               [t for t, _ in add], [p for _, p in add])
        counts["inserted"] += len(add)
        counts["deleted"] += len(drop)
    return counts


def _differs(have: dict, want: dict) -> bool:
    return any(have.get(c) != v for c, v in want.items())


def _param(out, value):
    return out([value])[0] if isinstance(value, str) else value


async def _update(conn, table: str, cols, id_col: str, out, rows) -> int:
    if not rows:
        return 0
    sets = ", ".join(f"{ident(c)} = ${i + 2}" for i, c in enumerate(cols))
    await conn.executemany(f"UPDATE callrec.{table} SET {sets} WHERE {id_col} = $1",
                           [(i, *(_param(out, row[c]) for c in cols)) for i, row in rows])
    return len(rows)


async def _insert(conn, table: str, cols, out, rows) -> int:
    if not rows:
        return 0
    marks = ", ".join(f"${i + 1}" for i in range(len(cols)))
    await conn.executemany(f"INSERT INTO callrec.{table} ({', '.join(map(ident, cols))}) VALUES ({marks})",
                           [tuple(_param(out, row[c]) for c in cols) for row in rows])
    return len(rows)
