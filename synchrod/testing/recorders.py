"""Build recorder and replay databases with calls and real media files.

Synchronous (psycopg 3, COPY for bulk loads): used by tests, the demo and
the benchmark, never by the daemon.
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


def callrec_schema() -> str:
    return resources.files(__package__).joinpath("callrec_schema.sql").read_text()


def create_database(admin_dsn: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name)))
        if template:
            conn.execute(psql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                psql.Identifier(name), psql.Identifier(template)))
        else:
            conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name)))


def create_template(admin_dsn: str, name: str, dsn_for) -> None:
    """A database holding the callrec schema, to clone per test."""
    create_database(admin_dsn, name)
    with psycopg.connect(dsn_for(name), autocommit=True) as conn:
        conn.execute(callrec_schema())


def write_wav(path: str | Path, seconds: float, freq: float = 440.0, rate: int = 8000) -> int:
    """A real mono 16-bit PCM WAV file; returns its size in bytes."""
    path = Path(path)
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
    cfpath: str                  # as the recorder stores it (absolute, below the mount)
    size: int | None = None      # None: the real file's size
    content: str = "wav"         # wav | bytes | none (no file on disk)
    seconds: float = 1.0
    digest: str | None = None


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
    voice_tags: list[tuple[str, int]] = field(default_factory=list)
    synchronized: str | None = None
    callingnr: str | None = "1001"
    description: str | None = None


def write_media(mount: str | Path, spec: FileSpec, seed: int = 0) -> int | None:
    if spec.content == "none":
        return None
    path = Path(str(mount).rstrip("/") + spec.cfpath)
    if spec.content == "wav":
        return write_wav(path, spec.seconds, 300 + seed % 500)
    return write_bytes(path, spec.size or 1024, seed)


def add_calls(dsn: str, mount: str | Path, calls: list[CallSpec]) -> dict[str, int]:
    """Inserts calls (and writes their media below ``mount``); returns sid -> couple id."""
    ids: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        call_ids: dict[str, int] = {}
        for i, c in enumerate(calls):
            key = c.call_key or c.sid
            if key not in call_ids:
                cur.execute("INSERT INTO callrec.calls (start_ts, stop_ts, length) VALUES (%s, %s, %s)"
                            " RETURNING id", (c.start, c.start + dt.timedelta(seconds=c.length), c.length))
                call_ids[key] = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO callrec.couples (callid, start_ts, stop_ts, length, callingnr, finalcallednr,"
                " problemstatus, description, sid, synchronized, mixed, state, cfcnt)"
                " VALUES (%s, %s, %s, %s, %s, '2002', %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (call_ids[key], c.start, c.start + dt.timedelta(seconds=c.length), c.length,
                 c.callingnr, c.problemstatus, c.description, c.sid, c.synchronized, c.mixed,
                 c.state, len(c.files)))
            cplid = cur.fetchone()[0]
            ids[c.sid] = cplid
            for j, f in enumerate(c.files):
                real = write_media(mount, f, seed=i * 7 + j)
                size = f.size if f.size is not None else (real or 0)
                cur.execute("INSERT INTO callrec.cfiles (cplid, cftype, cfsize, cfpath, digest, start_ts,"
                            " stop_ts) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            (cplid, f.cftype, size, f.cfpath, f.digest, c.start,
                             c.start + dt.timedelta(seconds=c.length)))
            for k, v in c.extdata:
                cur.execute("INSERT INTO callrec.couple_extdata VALUES (%s, %s, %s)", (cplid, k, v))
            for tag, pos in c.voice_tags:
                cur.execute("INSERT INTO callrec.voice_tags VALUES (%s, %s, %s)", (cplid, tag, pos))
    return ids


def bulk_calls(dsn: str, mount: str | Path, n: int, *, file_size: int, start: dt.datetime,
               write_files: bool = True, synchronized: str | None = None,
               prefix: str = "bulk") -> None:
    """``n`` one-file calls loaded with COPY (benchmark scale)."""
    mount = str(mount).rstrip("/")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM callrec.calls")
        base = cur.fetchone()[0]
        with cur.copy("COPY callrec.calls (id, start_ts, stop_ts, length) FROM STDIN") as cp:
            for i in range(n):
                ts = start + dt.timedelta(milliseconds=i)
                cp.write_row((base + i + 1, ts, ts + dt.timedelta(seconds=30), 30))
        cur.execute("SELECT setval(pg_get_serial_sequence('callrec.calls', 'id'), %s)", (base + n,))
        cur.execute("SELECT coalesce(max(id), 0) FROM callrec.couples")
        cbase = cur.fetchone()[0]
        with cur.copy("COPY callrec.couples (id, callid, start_ts, stop_ts, length, sid, synchronized,"
                      " mixed, state, cfcnt, problemstatus) FROM STDIN") as cp:
            for i in range(n):
                ts = start + dt.timedelta(milliseconds=i)
                cp.write_row((cbase + i + 1, base + i + 1, ts, ts + dt.timedelta(seconds=30), 30,
                              f"{prefix}-{cbase + i + 1}", synchronized, "M", "FINISHED", 1,
                              "NO_PROBLEM"))
        cur.execute("SELECT setval(pg_get_serial_sequence('callrec.couples', 'id'), %s)", (cbase + n,))
        with cur.copy("COPY callrec.cfiles (cplid, cftype, cfsize, cfpath) FROM STDIN") as cp:
            for i in range(n):
                cid = cbase + i + 1
                rel = f"/{prefix}/{cid // 1000:05d}/{cid}.wav"
                cp.write_row((cid, "AUDIO", file_size, rel))
                if write_files:
                    write_bytes(mount + rel, file_size, cid)
        cur.execute("ANALYZE callrec.couples")
        cur.execute("ANALYZE callrec.cfiles")
    if write_files:
        os.sync()
