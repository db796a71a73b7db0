"""What the storage benchmarks (p, s) run against: a replay database filled
straight with synchronized target couples as synchrod leaves them (a call,
a couple, one AUDIO cfile below a target path and the synchrod.synced row
naming its source, for each), some of them protected, the oldest ones
already pruned (``deleted = 'D'``, no cfile), generated in SQL so a million
couples load in seconds; the media files themselves when asked for; and a
benchmark's configuration with space management on.
"""
from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import psycopg

from bench_env import BENCH, CHILD_ENV, REPO, Bench
from synchrod.testing import stage
from synchrod.testing.stage import say

#: synced sources: rec01..rec09 share the couples, rec10 holds one in 200 (a rare source)
SOURCES = [f"rec{i:02d}" for i in range(1, 11)]
RARE = "rec10"
PROTECTED_EVERY = 500      # one couple in 500 is protected
FILE_SIZE = 1024           # bytes of each media file (and cfsize)

# the couple g (1..n) starts at start + (g - 1) * step: ids grow with time, as on a replay server
_TS = "(%(start)s::timestamptz + (g - 1) * %(step)s::interval)"
_LOAD = [
    f"""INSERT INTO callrec.calls (id, cplcnt, realcplcnt, start_ts, stop_ts, length)
        SELECT g, 1, 1, {_TS}, {_TS} + interval '30 seconds', 30
          FROM generate_series(1, %(n)s) g""",
    f"""INSERT INTO callrec.couples (id, callid, start_ts, stop_ts, length, sid, mixed, state,
                                     problemstatus, cfcnt, cftypes, protected, deleted,
                                     callingnr, originalcallednr, finalcallednr)
        SELECT g, g, {_TS}, {_TS} + interval '30 seconds', 30, 'bench-' || g, 'M', 'FINISHED',
               'NO_PROBLEM', CASE WHEN g <= %(pruned)s THEN 0 ELSE 1 END,
               CASE WHEN g <= %(pruned)s THEN 0::bit(32) ELSE 1::bit(32) END,
               CASE WHEN g %% {PROTECTED_EVERY} = 7 THEN true END,
               CASE WHEN g <= %(pruned)s AND g %% {PROTECTED_EVERY} <> 7 THEN 'D' END,
               '1' || lpad((g %% 10000)::text, 4, '0'), '2002', '2' || lpad((g %% 1000)::text, 3, '0')
          FROM generate_series(1, %(n)s) g""",
    # pruned couples have no file; protected ones keep theirs
    f"""INSERT INTO callrec.cfiles (id, sgid, cplid, cftype, cfsize, cfpath, start_ts, stop_ts)
        SELECT g, g, g, 'AUDIO', {FILE_SIZE}, %(root)s || '/'
                   || to_char({_TS} AT TIME ZONE 'UTC', 'YYYY/MM/DD/HH24') || '/bench-' || g || '.wav',
               {_TS}, {_TS} + interval '30 seconds'
          FROM generate_series(1, %(n)s) g
         WHERE g > %(pruned)s OR g %% {PROTECTED_EVERY} = 7""",
]
_SYNCED = f"""
INSERT INTO synchrod.synced (source, source_cplid, source_callid, sid, target_cplid, mark, synced_at)
SELECT CASE WHEN g %% 200 = 0 THEN '{RARE}' ELSE 'rec0' || (1 + g %% 9) END, g, g, 'bench-' || g, g,
       'S', {_TS} + interval '1 minute'
  FROM generate_series(1, %(n)s) g
"""
_AUDIT_PRUNED = f"""
INSERT INTO synchrod.deletions (sid, target_cplid, deleted_at, reason, requested_by, files, bytes,
                                metadata)
SELECT 'bench-' || g, g, {_TS} + interval '1 day', 'age', 'bench', 1, {FILE_SIZE}, false
  FROM generate_series(1, %(pruned)s) g WHERE g %% {PROTECTED_EVERY} <> 7;
INSERT INTO synchrod.tombstones (sid, deleted_at)
SELECT 'bench-' || g, {_TS} + interval '1 day'
  FROM generate_series(1, %(pruned)s) g WHERE g %% {PROTECTED_EVERY} <> 7
"""
_INDEXES = """
SELECT i.schemaname, i.indexname, i.indexdef FROM pg_indexes i
 WHERE (i.schemaname, i.tablename) IN (('callrec', 'calls'), ('callrec', 'couples'),
                                       ('callrec', 'cfiles'), ('synchrod', 'synced'))
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conname = i.indexname)
"""
_SEQUENCES = [("seq_calls", "calls", "id"), ("seq_couples", "couples", "id"),
              ("seq_cfiles", "cfiles", "id"), ("seq_streamgroups", "cfiles", "sgid")]


def storage_config(b: Bench, name: str, *, prune_after_days: int, monitor: dict | None = None,
                   max_prune_calls: int = 10000, sleep_period: int = 60) -> tuple[Path, Path]:
    """Fresh databases ``<name>_replay`` and ``<name>_rec`` (an empty recorder, the
    configuration needs a source), the target path .bench/<name>/replay/calls, and
    .bench/<name>/synchrod.yaml with space management on in recording priority, then
    synchrod's schema (`synchrod init-db`); returns (config path, target path)."""
    base = BENCH / name
    target, mount = base / "replay" / "calls", base / "mnt"
    target.mkdir(parents=True, exist_ok=True)
    mount.mkdir(parents=True, exist_ok=True)
    b.fresh_db(f"{name}_replay")
    b.fresh_db(f"{name}_rec")
    raw = stage.config(synchro={"sleep_period": sleep_period, "calls_per_period": 200,
                                "synchronize_voice_tags": b.schema != "legacy"},
                       target_dsn=b.dsn(f"{name}_replay"), target_path=target,
                       sources=[stage.source("rec01", b.dsn(f"{name}_rec"), mount)],
                       monitor=monitor, log_level="info")
    raw["storage"] = {"enabled": True, "mode": "recording_priority",
                      "prune_after_days": prune_after_days, "check_interval": 30,
                      "max_prune_calls": max_prune_calls}
    cfg = stage.write_config(base / "synchrod.yaml", raw)
    stage.init_db(cfg, cwd=REPO, env=CHILD_ENV)
    return cfg, target


def load_target(dsn: str, n: int, *, root: Path, start: dt.datetime, span: dt.timedelta,
                pruned: int = 0) -> dict:
    """``n`` synchronized couples on the replay database ``dsn`` (its synchrod schema
    created), starting at ``start`` and spread evenly over ``span``, oldest first; the
    oldest ``pruned`` already pruned (audited and tombstoned) but for the protected ones
    (one in PROTECTED_EVERY); every other couple with one cfile below ``root`` (no file
    written: see :func:`write_media`). CallREC's triggers are set aside for the load and
    the columns they keep written as they would; ANALYZEd. Returns what was loaded."""
    t0 = time.perf_counter()
    params = {"n": n, "pruned": pruned, "start": start, "step": span / n,
              "root": str(root).rstrip("/")}
    with psycopg.connect(dsn) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET maintenance_work_mem = '256MB'")
        # the tables' indexes (but their keys) built once after the load, as they were
        indexes = conn.execute(_INDEXES).fetchall()
        for schema, name, _ in indexes:
            conn.execute(f'DROP INDEX "{schema}"."{name}"')
        for statement in _LOAD + [_SYNCED]:
            conn.execute(statement, params)
        for _, _, definition in indexes:
            conn.execute(definition)
        if pruned:
            for statement in _AUDIT_PRUNED.split(";"):
                conn.execute(statement, params)
        for seq, table, column in _SEQUENCES:
            conn.execute(f"SELECT setval('callrec.{seq}', greatest((SELECT max({column})"
                         f" FROM callrec.{table}), 1))")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("callrec.calls", "callrec.couples", "callrec.cfiles", "synchrod.synced",
                      "synchrod.deletions", "synchrod.tombstones"):
            conn.execute(f"VACUUM ANALYZE {table}")
        files = conn.execute("SELECT count(*) FROM callrec.cfiles").fetchone()[0]
    return {"couples": n, "pruned": pruned - len(range(7, pruned + 1, PROTECTED_EVERY)) if pruned else 0,
            "files": files, "load_s": time.perf_counter() - t0}


def write_media(dsn: str) -> int:
    """Writes every cfile of the replay database ``dsn`` (FILE_SIZE bytes each, its
    directories created); returns how many."""
    with psycopg.connect(dsn) as conn:
        paths = [p for p, in conn.execute("SELECT cfpath FROM callrec.cfiles")]
    block = b"\x55" * FILE_SIZE
    made: set[str] = set()
    for path in paths:
        head = os.path.dirname(path)
        if head not in made:
            os.makedirs(head, exist_ok=True)
            made.add(head)
        with open(path, "wb") as fh:
            fh.write(block)
    return len(paths)


def files_below(root: Path) -> int:
    """How many files there are below ``root``."""
    return sum(len(files) for _, _, files in os.walk(root))


def say_loaded(tag: str, what: dict) -> None:
    """One line on what a load put in the replay database."""
    say(f"[{tag}] loaded {what['couples']:,} couples ({what['pruned']:,} already pruned, "
        f"{what['files']:,} cfiles) in {what['load_s']:.1f} s")
