"""Values of a recorder row the replay database could not take (SPEC §3.8).

Checked per call right after the batch is loaded, so such a call fails
alone with a clear reason while the rest of the batch goes through:

- ``bad_text``: text with bytes the recorder's codec could not decode (they
  arrive as lone surrogates, see ``synchrod.recorder``), or text the replay
  database's encoding cannot hold;
- ``out_of_range``: a timestamp Python cannot represent (the year 10000),
  or an integer beyond the target column.

What slips through (a domain value the target's CallREC version lacks) is
refused by the database itself and isolated by the batch writer.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from .model import COUPLE_COLUMNS, FILE_COLUMNS, OutOfRange, SourceCouple


def storable(text: str, codec: str) -> bool:
    """True when ``text`` encodes in ``codec`` and has no NUL (which PostgreSQL text
    cannot hold)."""
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def printable(text: str, codec: str = "utf-8") -> str:
    """Text safe to store in a database of ``codec``: undecodable bytes shown
    as ``\\xNN``, characters it cannot hold as ``\\uNNNN``."""
    try:
        text.encode(codec)
        return text
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return text.encode(codec, "backslashreplace").decode(codec)


def _values(c: SourceCouple, link_paths: bool) -> Iterator[tuple[str, object]]:
    for column in COUPLE_COLUMNS:
        yield column, getattr(c, column)
    yield "calls.start_ts", c.call_start_ts
    yield "calls.stop_ts", c.call_stop_ts
    for f in c.files:
        yield f"cfiles[{f.id}].cftype", f.cftype
        if link_paths:  # copies get a name of synchrod's; a path read in place is stored
            yield f"cfiles[{f.id}].cfpath", f.cfpath
        for column in FILE_COLUMNS:
            yield f"cfiles[{f.id}].{column}", getattr(f, column)
    for e in c.extdata:
        yield f"couple_extdata[{e.key!r}].key", e.key
        yield f"couple_extdata[{e.key!r}].value", e.value
        yield f"couple_extdata[{e.key!r}].created_ts", e.created_ts
    for v in c.voice_tags:
        yield "voice_tags.phrase", v.phrase
        yield "voice_tags.channel", v.channel


def problem(c: SourceCouple, *, source_codec: str, target_codec: str, target_encoding: str,
            link_paths: bool, limits: Mapping[str, int]) -> tuple[str, str] | None:
    """(reason, detail) of the first value of this call the target cannot
    take, or None. ``limits``: couple column → largest integer it holds."""
    for where, value in _values(c, link_paths):
        if isinstance(value, OutOfRange):
            return "out_of_range", f"{where}: {value}"
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "bad_text", f"{where}: {printable(value)!r} is not valid {source_codec} text"
            if not storable(value, target_codec):
                return "bad_text", (f"{where}: {value!r} cannot be stored in the replay database's "
                                    f"encoding {target_encoding}")
        elif isinstance(value, int) and not isinstance(value, bool):
            limit = limits.get(where)
            if limit is not None and not -limit - 1 <= value <= limit:
                return "out_of_range", f"{where}: {value} is beyond the replay database's column"
    return None
