"""What a CallREC database holds, and what synchrod can do with it (SPEC §2).

Installations differ by version: columns come and go, ids come from
``get_next_*id()`` functions or a column default, triggers keep some
columns. :class:`Catalog` is what ``synchrod.introspect`` read from a
database's catalog when synchrod connected; the functions here decide, with
no I/O, what is missing (named exactly) and how rows are written.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .model import CORE_COUPLE_COLUMNS, COUPLE_COLUMNS, FILE_COLUMNS

# tables synchrod reads or writes, and the id function of each id column
TABLES = ("calls", "couples", "cfiles", "couple_extdata", "voice_tags", "speech_tags",
          "speech_phrases", "tag_to_phrases")
ID_FUNCTIONS = {("calls", "id"): "get_next_callid", ("couples", "id"): "get_next_coupleid",
                ("cfiles", "id"): "get_next_cfileid", ("cfiles", "sgid"): "get_next_sgrpid"}
INT4_MAX = 2**31 - 1
# PostgreSQL encodings and the Python codec that says what text they can hold
PG_CODECS = {"UTF8": "utf-8", "LATIN1": "latin-1", "LATIN2": "iso8859-2", "LATIN9": "iso8859-15",
             "WIN1250": "cp1250", "WIN1251": "cp1251", "WIN1252": "cp1252", "WIN1253": "cp1253",
             "WIN1254": "cp1254", "WIN1257": "cp1257", "KOI8R": "koi8-r", "ISO_8859_5": "iso8859-5",
             "ISO_8859_7": "iso8859-7", "EUC_JP": "euc-jp", "SJIS": "shift_jis", "GBK": "gbk",
             "BIG5": "big5", "UHC": "cp949"}


class Needs(Protocol):
    """The settings that decide what synchrod needs of a database (``synchro``)."""
    synchronize_voice_tags: bool
    synchronize_speech_tags: bool
    only_finished: bool
    only_processed: bool


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str            # the base type (a domain resolved), as format_type() spells it
    not_null: bool = False
    default: str | None = None   # the default expression, when there is one


@dataclass(frozen=True)
class Catalog:
    encoding: str = "UTF8"                                   # server_encoding
    tables: Mapping[str, Mapping[str, Column]] = field(default_factory=dict)
    functions: frozenset[str] = frozenset()                 # callrec functions, lower case
    trigger_kept: frozenset[str] = frozenset()              # "couples.cfcnt", "calls.realcplcnt", ...
    cftypes: frozenset[str] | None = None                   # the cftype CHECK (None: none)
    mask_types: frozenset[str] | None = None                # types the cftypes trigger accepts

    def has(self, table: str, column: str | None = None) -> bool:
        """True when the table exists and, if ``column`` is given, has that column."""
        cols = self.tables.get(table)
        return cols is not None and (column is None or column in cols)

    def columns(self, table: str) -> Mapping[str, Column]:
        """The table's columns by name; empty when the table is absent."""
        return self.tables.get(table, {})

    def kept(self, table: str, column: str) -> bool:
        """Written by a trigger: synchrod must leave it alone (writing it too double-counts)."""
        return f"{table}.{column}" in self.trigger_kept

    def accepts_type(self, cftype: str) -> bool:
        """True when both the cftype CHECK and the cftypes trigger (where present)
        admit ``cftype``."""
        return (self.cftypes is None or cftype in self.cftypes) and \
            (self.mask_types is None or cftype in self.mask_types)

    @property
    def text_codec(self) -> str:
        """The Python codec of what this database's text can hold (SQL_ASCII
        holds any bytes; synchrod writes UTF-8 there)."""
        return PG_CODECS.get(self.encoding, "utf-8")

    def id_source(self, table: str, column: str = "id") -> str | None:
        """SQL giving one new id: CallREC's function where it exists, else the
        column default; None when neither (the column must then be absent or
        nullable)."""
        function = ID_FUNCTIONS.get((table, column))
        if function and function in self.functions:
            return f"callrec.{function}()"
        col = self.columns(table).get(column)
        if col is not None and col.default is not None:
            return col.default
        return None


def copied_couple_columns(source: Catalog, target: Catalog) -> tuple[str, ...]:
    """The couple columns a delivery writes: on both sides, not kept by a trigger."""
    return tuple(c for c in COUPLE_COLUMNS
                 if source.has("couples", c) and target.has("couples", c) and not target.kept("couples", c))


def copied_file_columns(source: Catalog, target: Catalog) -> tuple[str, ...]:
    """The cfile columns a delivery carries besides cftype, cfsize and cfpath:
    those of FILE_COLUMNS both sides have."""
    return tuple(c for c in FILE_COLUMNS if source.has("cfiles", c) and target.has("cfiles", c))


def _missing(cat: Catalog, table: str, columns: Iterable[str]) -> list[str]:
    if not cat.has(table):
        return [f"table callrec.{table} is missing"]
    return [f"column callrec.{table}.{c} is missing" for c in columns if not cat.has(table, c)]


def _voice_tag_problems(cat: Catalog, writes: bool) -> list[str]:
    out = _missing(cat, "speech_phrases", ("phraseid", "phrase_text"))
    if not cat.has("voice_tags"):
        return out + ["table callrec.voice_tags is missing"]
    out += _missing(cat, "voice_tags", ("phraseid", "from_time", "to_time"))
    if not cat.has("voice_tags", "cplid"):
        if writes or not cat.has("voice_tags", "cfileid"):
            out.append("column callrec.voice_tags.cplid is missing (voice tags on cfiles: a CallREC "
                       "version before the voice-tag migration); set synchro.synchronize_voice_tags: false")
    return out


def _speech_problems(cat: Catalog) -> list[str]:
    return (_missing(cat, "speech_tags", ("tagid", "tag_name"))
            + _missing(cat, "speech_phrases", ("phraseid", "phrase_text"))
            + _missing(cat, "tag_to_phrases", ("tagid", "phraseid")))


def source_problems(cat: Catalog, needs: Needs) -> list[str]:
    """What a recorder lacks for synchrod, each named; empty when it is fit."""
    out = _missing(cat, "calls", ("id",))
    couples = set(CORE_COUPLE_COLUMNS)
    if needs.only_finished:
        couples.add("state")
    if needs.only_processed:
        couples.add("mixed")
    out += _missing(cat, "couples", sorted(couples))
    out += _missing(cat, "cfiles", ("id", "cplid", "cftype", "cfsize", "cfpath"))
    out += _missing(cat, "couple_extdata", ("cplid", "key", "value"))
    if needs.synchronize_voice_tags:
        out += _voice_tag_problems(cat, writes=False)
    if needs.synchronize_speech_tags:
        out += _speech_problems(cat)
    return _unique(out)


def target_problems(cat: Catalog, needs: Needs) -> list[str]:
    """What the replay database lacks for synchrod, each named."""
    out = _missing(cat, "calls", ("id",))
    out += _missing(cat, "couples", ("id", "callid", "sid", "start_ts", "stop_ts"))
    out += _missing(cat, "cfiles", ("cplid", "cftype", "cfsize", "cfpath"))
    out += _missing(cat, "couple_extdata", ("cplid", "key", "value"))
    for table, column in (("calls", "id"), ("couples", "id"), ("cfiles", "id"), ("cfiles", "sgid")):
        col = cat.columns(table).get(column)
        if col is not None and col.not_null and cat.id_source(table, column) is None:
            out.append(f"callrec.{table}.{column} has no default and "
                       f"callrec.{ID_FUNCTIONS[table, column]}() is missing")
    if needs.synchronize_voice_tags:
        out += _voice_tag_problems(cat, writes=True)
    if needs.synchronize_speech_tags:
        out += _speech_problems(cat)
    return _unique(out)


def type_problems(source: Catalog, target: Catalog, taken: Iterable[str]) -> list[str]:
    """File types this source would take that the replay database cannot hold.
    ``taken``: the types the source's switches and extra_file_types take."""
    possible = [t for t in taken if source.cftypes is None or t in source.cftypes]
    return [f"the replay database does not accept cftype {t}" for t in possible
            if not target.accepts_type(t)]


def int_limit(cat: Catalog, table: str, column: str) -> int | None:
    """Largest value an integer column holds (None: not a bounded integer)."""
    col = cat.columns(table).get(column)
    if col is None:
        return None
    return {"integer": INT4_MAX, "smallint": 2**15 - 1, "bigint": 2**63 - 1}.get(col.type)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
