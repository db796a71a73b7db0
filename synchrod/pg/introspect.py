"""Reads a CallREC database's catalog into a :class:`core.catalog.Catalog`.

Run once per connection (a reconnect re-reads it, so a recorder upgraded
while synchrod runs is seen). A few catalog queries; nothing is written.
"""
from __future__ import annotations

import re

import asyncpg

from ..core.catalog import ID_FUNCTIONS, TABLES, Catalog, Column
from . import sql

_COLUMNS = """
SELECT c.relname AS tbl, a.attname AS col,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END AS type,
       a.attnotnull AS not_null,
       CASE WHEN a.attidentity <> '' THEN format('nextval(%L::regclass)',
                 pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname))
            ELSE pg_get_expr(d.adbin, d.adrelid) END AS default
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'callrec' AND c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[])
   AND a.attnum > 0 AND NOT a.attisdropped
"""
_FUNCTIONS = """
SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'callrec' AND p.proname = ANY($1::text[])
"""
# enabled row-level INSERT triggers of the tables whose counters triggers keep
_TRIGGERS = """
SELECT c.relname AS tbl, p.prosrc AS src
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE n.nspname = 'callrec' AND c.relname IN ('cfiles', 'couples') AND NOT t.tgisinternal
   AND t.tgenabled <> 'D' AND (t.tgtype & 1) = 1 AND (t.tgtype & 4) = 4
"""
_CFTYPE_CHECKS = """
SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k
  JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'callrec' AND c.relname = 'cfiles' AND k.contype = 'c'
"""
_MASK = "SELECT callrec.get_cftypemask($1)"

# which trigger-kept column a trigger body's words reveal
_KEPT_BY = {"cfiles": {"cfcnt": ("couples.cfcnt",), "cftypes": ("couples.cftypes",)},
            "couples": {"realcplcnt": ("calls.realcplcnt",),
                        "start_ts": ("calls.start_ts", "calls.stop_ts"),
                        "length": ("calls.length",)}}
_WORD = re.compile(r"[a-z_][a-z0-9_]*")
_LITERAL = re.compile(r"'((?:[^']|'')*)'")


async def read_catalog(conn: asyncpg.Connection, *, probe_types: bool = False) -> Catalog:
    """The catalog of the ``callrec`` schema. ``probe_types``: also ask
    ``get_cftypemask`` which file types it knows (the replay side, where an
    unknown type makes the cfiles trigger raise)."""
    encoding = await conn.fetchval("SHOW server_encoding")
    tables: dict[str, dict[str, Column]] = {}
    for r in await conn.fetch(_COLUMNS, list(TABLES)):
        tables.setdefault(r["tbl"], {})[r["col"]] = Column(r["col"], r["type"], r["not_null"],
                                                            r["default"])
    wanted = sorted(set(ID_FUNCTIONS.values()) | {"get_cftypemask"})
    functions = frozenset(r["proname"] for r in await conn.fetch(_FUNCTIONS, wanted))
    kept: set[str] = set()
    uses_mask = False
    for r in await conn.fetch(_TRIGGERS):
        words = set(_WORD.findall((r["src"] or "").lower()))
        if r["tbl"] == "couples" and "calls" not in words:
            continue
        for word, columns in _KEPT_BY[r["tbl"]].items():
            if word in words:
                kept.update(columns)
        uses_mask |= r["tbl"] == "cfiles" and "get_cftypemask" in words
    cftypes = None
    for (definition,) in await conn.fetch(_CFTYPE_CHECKS):
        if re.search(r"\bcftype\b", definition):
            cftypes = frozenset(v.replace("''", "'") for v in _LITERAL.findall(definition))
    mask_types = None
    if probe_types and uses_mask and "get_cftypemask" in functions:
        mask_types = frozenset([t for t in sorted(cftypes or ()) if await _mask_knows(conn, t)])
    return Catalog(encoding, tables, functions, frozenset(kept), cftypes, mask_types)


async def _mask_knows(conn: asyncpg.Connection, cftype: str) -> bool:
    try:
        await conn.fetchval(_MASK, cftype)
    except asyncpg.PostgresError:
        return False
    return True

async def database_identity(conn: asyncpg.Connection) -> tuple[str, str]:
    """(server id, database name): equal for two DSNs naming one database."""
    row = await conn.fetchrow(sql.load(__package__, "identity.sql"))
    return row["server_id"], row["dbname"]


async def has_callrec(conn: asyncpg.Connection) -> bool:
    """The database holds a CallREC schema (its couples table at least)."""
    return await conn.fetchval("SELECT to_regclass('callrec.couples') IS NOT NULL")
