"""Pages of the target's recordings for operators (``GET /api/v1/recordings``,
SPEC §9): couples oldest first with their numbers, source, files and bytes,
pruned ones included (``deleted``). Keyset pages on (start_ts, id), so a
page costs the same at the end of a million couples as at the start."""
from __future__ import annotations

import base64
import binascii
import datetime as dt

import asyncpg

from ..core import clock

#: the page's couples are chosen first (ids only), their files and source
#: looked up for those alone
_COLUMNS = """
SELECT c.id, c.callid, c.sid::text AS sid, c.start_ts, c.length,
       c.callingnr::text AS callingnr, c.originalcallednr::text AS originalcallednr,
       c.finalcallednr::text AS finalcallednr,
       coalesce(c.protected, false) AS protected, coalesce(c.deleted::text = 'D', false) AS deleted,
       (SELECT s.source FROM synchrod.synced s WHERE s.target_cplid = c.id
         ORDER BY s.synced_at LIMIT 1) AS source,
       f.files, f.bytes
  FROM ({ids}) p
  JOIN callrec.couples c ON c.id = p.id
 CROSS JOIN LATERAL (SELECT count(*)::int AS files, coalesce(sum(cf.cfsize), 0)::bigint AS bytes
                       FROM callrec.cfiles cf WHERE cf.cplid = c.id) f
 ORDER BY c.start_ts, c.id
"""
#: $1/$2 keyset position, $3 before, $4 at or after, $5 source, $6 protected, $7 deleted
#: (written so that a custom plan of deleted=false can use the unpruned couples' index)
_CONDITIONS = """
       (c.start_ts, c.id) > ($1::timestamptz, $2::bigint)
   AND ($3::timestamptz IS NULL OR c.start_ts < $3)
   AND ($4::timestamptz IS NULL OR c.start_ts >= $4)
   AND ($6::bool IS NULL OR coalesce(c.protected, false) = $6)
   AND ($7::bool IS NULL OR ($7 AND c.deleted::text = 'D') OR (NOT $7 AND c.deleted IS DISTINCT FROM 'D'))"""
_FILTERS = "\n WHERE" + _CONDITIONS
_ORDER = """
 ORDER BY c.start_ts, c.id
 LIMIT $8"""
#: every couple, or those of a source holding many: couples in keyset order,
#: each probed for the source (OFFSET 0 keeps the probe a per-row index lookup)
_PAGE = _COLUMNS.format(ids="SELECT c.id FROM callrec.couples c" + _FILTERS + """
   AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM synchrod.synced s
                                     WHERE s.target_cplid = c.id AND s.source = $5 OFFSET 0))"""
                        + _ORDER)
#: a source holding some: its couples hashed once, then couples in keyset
#: order checked against the hash (IS TRUE keeps it a hashed filter, not a join)
_PAGE_HASHED = _COLUMNS.format(ids="SELECT c.id FROM callrec.couples c" + _FILTERS + """
   AND (c.id IN (SELECT s.target_cplid FROM synchrod.synced s WHERE s.source = $5)) IS TRUE"""
                               + _ORDER)
#: a source holding few couples: all of its couples that pass the filters
#: first, each looked up by id (LATERAL and OFFSET 0: never a scan of every
#: couple, nor a walk in keyset order), then the page of them
_PAGE_FEW = _COLUMNS.format(ids="""SELECT x.id FROM (SELECT c.id, c.start_ts
  FROM (SELECT DISTINCT s.target_cplid FROM synchrod.synced s WHERE s.source = $5) m
 CROSS JOIN LATERAL (SELECT c.id, c.start_ts FROM callrec.couples c
                      WHERE c.id = m.target_cplid AND""" + _CONDITIONS + """ OFFSET 0) c
  OFFSET 0) x
 ORDER BY x.start_ts, x.id
 LIMIT $8""")
#: how many couples a source holds, counted up to where it stops mattering,
#: and the two thresholds for a page of $2 among all couples (N): below
#: sqrt(N x limit / 8) looking all of them up is cheapest (~10 us each), below
#: sqrt(1.2 x N x limit) hashing them and walking the couples (~2 us per row
#: hashed, ~1 us per couple walked), above it walking and probing (~2.4 us a
#: couple); measured at 1M couples, where the worst is ~35 ms
_SOURCE_SIZE = """
WITH t AS (SELECT greatest(reltuples, 0)::float8 * $2 AS ln
             FROM pg_class WHERE oid = 'callrec.couples'::regclass)
SELECT count(*) AS held, (SELECT sqrt(ln / 8) FROM t) AS few,
       (SELECT sqrt(1.2 * ln) FROM t) AS some
  FROM (SELECT 1 FROM synchrod.synced WHERE source = $1
         LIMIT (SELECT greatest(sqrt(1.2 * ln), $2)::bigint + 1 FROM t)) x
"""


async def _statement(conn: asyncpg.Connection, source: str | None, limit: int) -> str:
    """The page statement that reads a source's page cheapest."""
    if source is None:
        return _PAGE
    r = await conn.fetchrow(_SOURCE_SIZE, source, limit)
    if r["held"] < max(r["few"], 10 * limit):   # (a table never analysed counts as empty)
        return _PAGE_FEW
    # (counted up to one past the threshold: a source at the cap holds many)
    return _PAGE_HASHED if r["held"] < int(r["some"]) else _PAGE


class BadCursor(ValueError):
    """A ``cursor`` this API did not hand out."""


def encode_cursor(start_ts: dt.datetime, couple_id: int) -> str:
    """The opaque position after a recording."""
    return base64.urlsafe_b64encode(f"{start_ts.isoformat()}|{couple_id}".encode()).decode()


def decode_cursor(cursor: str | None) -> tuple[dt.datetime, int]:
    """The position a cursor names (the start for None); BadCursor when it is not one of ours."""
    if not cursor:
        return clock.KEYSET_START
    try:
        ts, _, cid = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        start = dt.datetime.fromisoformat(ts)
        if start.tzinfo is None:
            raise ValueError(ts)
        return start, int(cid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("cursor is not one this API handed out") from None


async def page(conn: asyncpg.Connection, *, before: dt.datetime | None, after: dt.datetime | None,
               source: str | None, protected: bool | None, deleted: bool | None, limit: int,
               cursor: str | None) -> dict:
    """``{"recordings": [...], "next_cursor"}``: up to ``limit`` recordings
    past ``cursor`` matching every filter given; ``next_cursor`` None at the end."""
    rows = await conn.fetch(await _statement(conn, source, limit), *decode_cursor(cursor), before, after, source, protected,
                            deleted, limit)
    recordings = [{"sid": r["sid"], "couple_id": r["id"], "call_id": r["callid"],
                   "start_ts": clock.iso(r["start_ts"]), "length": r["length"],
                   "numbers": {"calling": r["callingnr"], "original_called": r["originalcallednr"],
                               "final_called": r["finalcallednr"]},
                   "source": r["source"], "files": r["files"], "bytes": r["bytes"],
                   "protected": r["protected"], "deleted": r["deleted"]} for r in rows]
    last = rows[-1] if len(rows) == limit else None
    return {"recordings": recordings,
            "next_cursor": encode_cursor(last["start_ts"], last["id"]) if last else None}
