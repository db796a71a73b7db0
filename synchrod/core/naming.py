"""Deterministic, sanitised names of media copies on the target (SPEC §3.6).

``YYYY/MM/DD/HH/<sid>+<source>+<cfile id><ext>`` from the couple's start in
UTC. ``+`` never survives sanitising, so the three parts cannot run into
each other. The same source file always lands at the same name, so a copy repeated
after a crash overwrites itself instead of leaving a twin; a copy of the same
call from another source or another file gets another name, so replacing
media never overwrites a file that committed rows still reference.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import posixpath
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_EXT = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
MAX_SID_CHARS = 96
TMP_PREFIX = ".synchrod-tmp."
SEP = "+"  # between sid, source and cfile id; never produced by sanitise()


def sanitise(token: str, limit: int = MAX_SID_CHARS) -> str:
    """``token`` cut down to ``[A-Za-z0-9._-]``, no leading dot, never empty, at most
    ``limit`` chars; a changed or cut token gets a ``~<digest>`` tail, so distinct sids
    stay distinct."""
    clean = _UNSAFE.sub("_", token).lstrip(".") or "_"
    if clean != token or len(clean) > limit:
        # keep names distinct when sanitising folds different sids together
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        clean = f"{clean[:limit - 11]}~{digest}"
    return clean


def extension(cfpath: str) -> str:
    """The lower-cased extension of ``cfpath`` (``.wav``); "" when it has none or it
    is not 1-10 letters and digits."""
    ext = posixpath.splitext(posixpath.basename(cfpath))[1].lower()
    return ext if _EXT.match(ext) else ""


def relpath(start_ts: dt.datetime, sid: str, source: str, cfile_id: int, cfpath: str) -> str:
    """``YYYY/MM/DD/HH/<sid>+<source>+<cfile id><ext>``, the hour of the start in UTC (a
    naive ``start_ts`` taken as UTC); the same source file always gets the same name."""
    utc = start_ts.astimezone(dt.timezone.utc) if start_ts.tzinfo else start_ts
    return (f"{utc:%Y/%m/%d/%H}/{sanitise(sid)}{SEP}{sanitise(source, 63)}{SEP}{cfile_id}"
            f"{extension(cfpath)}")


def temp_name(final_path: str) -> str:
    """The temporary sibling a copy is written to before its rename."""
    head, tail = posixpath.split(final_path)
    return posixpath.join(head, TMP_PREFIX + tail)


def variant(rel: str, n: int) -> str:
    """The n-th alternative of a relative name: ``…+12.r1.wav``."""
    head, ext = posixpath.splitext(rel)
    return f"{head}.r{n}{ext}"
