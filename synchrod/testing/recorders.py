"""Build recorder and replay databases with calls and real media files.

Databases hold the reconstructed CallREC schema (``callrec_schema.sql``, and
``callrec_schema_upgrade.sql`` for the current version); rows are inserted
as CallREC itself does: ids from ``get_next_*id()``, counters left to the
triggers. Synchronous (psycopg 3, COPY for bulk loads): used by tests, the
demo and the benchmark, never by the daemon.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import struct
import wave
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql as psql

from ..core.catalog import PG_CODECS

VERSIONS = ("current", "legacy")


def callrec_schema(version: str = "current") -> str:
    """The CallREC schema of that version: ``legacy`` is the older base,
    ``current`` the base with the later migrations applied."""
    if version not in VERSIONS:
        raise ValueError(f"unknown CallREC version {version!r}")
    files = resources.files(__package__)
    text = files.joinpath("callrec_schema.sql").read_text()
    if version == "current":
        text += "\n" + files.joinpath("callrec_schema_upgrade.sql").read_text()
    return text


def create_database(admin_dsn: str, name: str, template: str | None = None,
                    encoding: str | None = None) -> None:
    """``encoding`` (a new database only): e.g. SQL_ASCII, as old installations run."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name)))
        if template:
            conn.execute(psql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                psql.Identifier(name), psql.Identifier(template)))
        elif encoding:
            conn.execute(psql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE 'C'"
                                  " LC_CTYPE 'C'").format(psql.Identifier(name), psql.Literal(encoding)))
        else:
            conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))


def drop_database(admin_dsn: str, name: str) -> None:
    """Drops the database, forcing its sessions off; a no-op when it does not exist."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name)))


def create_template(admin_dsn: str, name: str, dsn_for, version: str = "current",
                    encoding: str | None = None) -> None:
    """A database holding the callrec schema, to clone per test."""
    create_database(admin_dsn, name, encoding=encoding)
    with psycopg.connect(dsn_for(name), autocommit=True) as conn:
        conn.execute(callrec_schema(version))


def write_wav(path: str | Path, seconds: float, freq: float = 440.0, rate: int = 8000) -> int:
    """A real mono 16-bit PCM WAV file; returns its size in bytes."""
    path = Path(os.fsdecode(path) if isinstance(path, bytes) else path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate)))
                      for i in range(min(n, rate)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        full, rest = divmod(n, rate)
        for _ in range(full):
            w.writeframes(frames)
        w.writeframes(frames[: rest * 2])
    return path.stat().st_size


def write_bytes(path: str | Path, size: int, seed: int = 0) -> int:
    """Writes exactly ``size`` bytes (``seed`` repeated) to ``path``, creating its parents;
    returns ``size``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = (seed.to_bytes(8, "little") * 8192)[:65536]
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= min(left, len(block))
    return size


@dataclass
class FileSpec:
    cftype: str
    cfpath: str | None           # as the recorder stores it (absolute, below the mount)
    size: int | None = None      # None: the real file's size
    content: str = "wav"         # wav | bytes | none (no file on disk)
    seconds: float = 1.0
    digest: str | None = None
    stream: str | None = None    # files of a couple with the same stream share an sgid


@dataclass
class CallSpec:
    sid: str
    start: dt.datetime
    length: int = 10
    state: str | None = "FINISHED"
    mixed: str | None = "M"
    problemstatus: str = "NO_PROBLEM"
    call_key: str | None = None   # couples with the same key share one callrec.calls row
    files: list[FileSpec] = field(default_factory=list)
    extdata: list[tuple[str, str]] = field(default_factory=list)
    # (phrase text, from ms) or (phrase, from ms, to ms, confidence, channel)
    voice_tags: list[tuple] = field(default_factory=list)
    synchronized: str | None = None
    callingnr: str | None = "1001"
    description: str | None = None
    protected: bool | None = None
    cplcnt: int | None = None     # the call's, when its first couple creates it
    columns: dict = field(default_factory=dict)  # further couple columns (callingpartyname, ...)


def write_media(mount: str | Path, spec: FileSpec, seed: int = 0,
                client_encoding: str | None = None) -> int | None:
    """Writes the spec's file below ``mount`` (a WAV, or ``size`` bytes, 1024 by default);
    returns its size, None when the spec has no file on disk."""
    if spec.content == "none" or spec.cfpath is None:
        return None
    cfpath = spec.cfpath
    if client_encoding:  # the bytes the database stores are the path's bytes on disk
        cfpath = os.fsdecode(cfpath.encode(PG_CODECS[client_encoding.upper()]))
    path = Path(str(mount).rstrip("/") + cfpath)
    if spec.content == "wav":
        return write_wav(path, spec.seconds, 300 + seed % 500)
    return write_bytes(path, spec.size or 1024, seed)


def _columns(cur, table: str) -> set[str]:
    cur.execute("SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = 'callrec' AND table_name = %s", (table,))
    return {r[0] for r in cur.fetchall()}


def phrase_id(cur, text: str) -> int:
    """The id of a speech phrase, created (without a tag) when missing."""
    cur.execute("SELECT phraseid FROM callrec.speech_phrases WHERE phrase_text = %s", (text,))
    row = cur.fetchone()
    if row:
        return row[0]
    cur.execute("INSERT INTO callrec.speech_phrases (phrase_text, state, enabled) VALUES (%s, 'READY', true)"
                " RETURNING phraseid", (text,))
    return cur.fetchone()[0]


def add_calls(dsn: str, mount: str | Path, calls: list[CallSpec],
              client_encoding: str | None = None) -> dict[str, int]:
    """Inserts calls as CallREC does (and writes their media below
    ``mount``); returns sid -> couple id. ``client_encoding``: how the text
    reaches a SQL_ASCII database (its bytes are stored as they come)."""
    ids: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        if client_encoding:
            cur.execute(f"SET client_encoding TO '{client_encoding}'")
        cfile_cols = _columns(cur, "cfiles")
        tags_on_couples = "cplid" in _columns(cur, "voice_tags")
        call_ids: dict[str, int] = {}
        for i, c in enumerate(calls):
            key = c.call_key or c.sid
            if key not in call_ids:
                cur.execute("SELECT callrec.add_call(%s)", (c.cplcnt,))
                call_ids[key] = cur.fetchone()[0]
            extra = dict(c.columns)
            stop = extra.pop("stop_ts") if "stop_ts" in extra else c.start + dt.timedelta(seconds=c.length)
            values = {"callid": call_ids[key], "start_ts": c.start, "stop_ts": stop,
                      "length": c.length, "callingnr": c.callingnr, "finalcallednr": "2002",
                      "problemstatus": c.problemstatus, "description": c.description,
                      "sid": c.sid, "synchronized": c.synchronized, "mixed": c.mixed,
                      "state": c.state, "protected": c.protected, **extra}
            names = list(values)
            cur.execute(psql.SQL("INSERT INTO callrec.couples (id, {}) VALUES (callrec.get_next_coupleid(), {})"
                                 " RETURNING id").format(
                psql.SQL(", ").join(map(psql.Identifier, names)),
                psql.SQL(", ").join(psql.Placeholder() * len(names))), [values[n] for n in names])
            cplid = cur.fetchone()[0]
            ids[c.sid] = cplid
            streams: dict[str | None, int] = {}
            file_ids = []
            for j, f in enumerate(c.files):
                real = write_media(mount, f, seed=i * 7 + j, client_encoding=client_encoding)
                size = f.size if f.size is not None else (real or 0)
                if f.stream not in streams:
                    cur.execute("SELECT callrec.get_next_sgrpid()")
                    streams[f.stream] = cur.fetchone()[0]
                row = {"sgid": streams[f.stream], "cplid": cplid, "cftype": f.cftype, "cfsize": size,
                       "cfpath": f.cfpath, "start_ts": c.start, "stop_ts": stop}
                if "digest" in cfile_cols:
                    row["digest"] = f.digest
                cur.execute(psql.SQL("INSERT INTO callrec.cfiles (id, {}) VALUES (callrec.get_next_cfileid(), {})"
                                     " RETURNING id").format(
                    psql.SQL(", ").join(map(psql.Identifier, row)),
                    psql.SQL(", ").join(psql.Placeholder() * len(row))), list(row.values()))
                file_ids.append(cur.fetchone()[0])
            for k, v in c.extdata:
                cur.execute("INSERT INTO callrec.couple_extdata (cplid, key, value) VALUES (%s, %s, %s)",
                            (cplid, k, v))
            for tag in c.voice_tags:
                phrase, start_ms, *rest = tag
                stop_ms, confidence, channel = (rest + [None, None, None])[:3]
                owner = cplid if tags_on_couples else file_ids[0]
                cur.execute("INSERT INTO callrec.voice_tags ({}, phraseid, from_time, to_time, confidence,"
                            " channel) VALUES (%s, %s, %s, %s, %s, %s)".format(
                                "cplid" if tags_on_couples else "cfileid"),
                            (owner, phrase_id(cur, phrase), start_ms,
                             stop_ms if stop_ms is not None else start_ms + 500, confidence, channel))
    return ids


def bulk_calls(dsn: str, mount: str | Path, n: int, *, file_size: int, start: dt.datetime,
               write_files: bool = True, synchronized: str | None = None,
               prefix: str = "bulk") -> None:
    """``n`` one-file calls loaded with COPY (benchmark scale). The triggers
    are set aside for the load and the columns they keep written with the
    values they would give (a call per couple, one AUDIO file each)."""
    mount = str(mount).rstrip("/")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no triggers during the load
        cur.execute("SELECT coalesce(max(id), 0) FROM callrec.calls")
        base = cur.fetchone()[0]
        with cur.copy("COPY callrec.calls (id, cplcnt, realcplcnt, start_ts, stop_ts, length)"
                      " FROM STDIN") as cp:
            for i in range(n):
                ts = start + dt.timedelta(milliseconds=i)
                cp.write_row((base + i + 1, 1, 1, ts, ts + dt.timedelta(seconds=30), 30))
        cur.execute("SELECT coalesce(max(id), 0) FROM callrec.couples")
        cbase = cur.fetchone()[0]
        with cur.copy("COPY callrec.couples (id, callid, start_ts, stop_ts, length, sid, synchronized,"
                      " mixed, state, cfcnt, cftypes, problemstatus) FROM STDIN") as cp:
            for i in range(n):
                ts = start + dt.timedelta(milliseconds=i)
                cp.write_row((cbase + i + 1, base + i + 1, ts, ts + dt.timedelta(seconds=30), 30,
                              f"{prefix}-{cbase + i + 1}", synchronized, "M", "FINISHED", 1,
                              "0" * 31 + "1", "NO_PROBLEM"))
        cur.execute("SELECT coalesce(max(id), 0) FROM callrec.cfiles")
        fbase = cur.fetchone()[0]
        with cur.copy("COPY callrec.cfiles (id, sgid, cplid, cftype, cfsize, cfpath) FROM STDIN") as cp:
            for i in range(n):
                cid = cbase + i + 1
                rel = f"/{prefix}/{cid // 1000:05d}/{cid}.wav"
                cp.write_row((fbase + i + 1, fbase + i + 1, cid, "AUDIO", file_size, rel))
                if write_files:
                    write_bytes(mount + rel, file_size, cid)
        for seq, table in (("seq_calls", "calls"), ("seq_couples", "couples"),
                           ("seq_cfiles", "cfiles"), ("seq_streamgroups", "cfiles")):
            column = "sgid" if seq == "seq_streamgroups" else "id"
            cur.execute(psql.SQL("SELECT setval({}, greatest((SELECT max({}) FROM callrec.{}), 1))").format(
                psql.Literal(f"callrec.{seq}"), psql.Identifier(column), psql.Identifier(table)))
        cur.execute("ANALYZE callrec.couples")
        cur.execute("ANALYZE callrec.cfiles")
    if write_files:
        os.sync()
