"""What the monitor benchmark measures against: the replay and recorder
databases with their mounts, the configuration, a history of cycles,
outcomes and failure records written straight into synchrod's tables, and
the feeder that records new calls while the monitor is measured.
"""
from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg

from bench_monitor_env import CONFIG, GROUP_SIZE, NOW, REPLAY_DB, WORK
from synchrod.testing import recorders, stage
from synchrod.testing.pgserver import PgServer
from synchrod.testing.recorders import CallSpec, FileSpec
from synchrod.testing.stage import say


def sysname(i: int) -> str:
    """The source name of recorder ``i`` (from 0): rec01, rec02, ..."""
    return f"rec{i + 1:02d}"


# --- PostgreSQL and the databases -----------------------------------------------------

def build_databases(server: PgServer, args) -> list[dict]:
    """The replay database and --sources recorder databases (each holding --recorder-couples
    synchronized couples), a mount directory each; returns their source sections, in groups
    of GROUP_SIZE."""
    t0 = time.perf_counter()

    def old_calls(template_dsn: str) -> None:
        if args.recorder_couples:
            # already synchronized calls: what a recorder in service holds (not taken again)
            recorders.bulk_calls(template_dsn, WORK / "unused", args.recorder_couples,
                                 file_size=1024, start=NOW - dt.timedelta(days=3), write_files=False,
                                 synchronized="S", prefix="old")
    names = [sysname(i) for i in range(args.sources)]
    dsns = stage.callrec_databases(server, [REPLAY_DB, *names], fill=old_calls)
    sources = []
    for i, name in enumerate(names):
        mount = WORK / "mnt" / name
        mount.mkdir(parents=True)
        sources.append(stage.source(name, dsns[name], mount, group=f"g{i // GROUP_SIZE + 1}"))
    say(f"[setup] replay database and {args.sources} recorder databases "
        f"({args.recorder_couples:,} synchronized couples each) in {time.perf_counter() - t0:.1f} s")
    return sources


def write_config(server: PgServer, sources: list[dict], port: int) -> None:
    """Writes CONFIG: ``sources`` into one target path on the replay database, sleep_period 5,
    the monitor on 127.0.0.1:``port``."""
    target = WORK / "replay" / "calls"
    target.mkdir(parents=True)
    stage.write_config(CONFIG, stage.config(
        synchro={"sleep_period": 5, "calls_per_period": 200, "verify": "size"},
        target_dsn=server.dsn(REPLAY_DB), target_path=target, sources=sources,
        monitor=stage.monitor_section(f"127.0.0.1:{port}", WORK / "jwt.secret", {"admin": "bench-secret"}),
        log_level="info"))


def columns(conn, table: str) -> dict[str, tuple[bool, bool, str]]:
    """column -> (nullable, has a default, data type) of synchrod.<table>."""
    rows = conn.execute(
        "SELECT column_name, is_nullable = 'YES', column_default IS NOT NULL OR is_identity = 'YES',"
        " data_type FROM information_schema.columns"
        " WHERE table_schema = 'synchrod' AND table_name = %s ORDER BY ordinal_position",
        (table,)).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def filler(dtype: str) -> str:
    """A value for a NOT NULL column without a default this script does not know."""
    if "timestamp" in dtype:
        return "now()"
    if dtype in ("integer", "bigint", "smallint", "numeric", "real", "double precision"):
        return "0"
    if dtype == "boolean":
        return "false"
    if dtype == "jsonb" or dtype == "json":
        return "'{}'"
    return "''"


def insert_select(conn, table: str, known: dict[str, str], source_sql: str, params: dict) -> list[str]:
    """INSERT INTO synchrod.<table> (known columns that exist + unknown required ones)
    SELECT ... <source_sql>; returns the columns it had to invent."""
    cols = columns(conn, table)
    names, exprs, invented = [], [], []
    for name, (nullable, has_default, dtype) in cols.items():
        if name in known:
            names.append(name)
            exprs.append(known[name])
        elif not nullable and not has_default:
            names.append(name)
            exprs.append(filler(dtype))
            invented.append(name)
    conn.execute(f"INSERT INTO synchrod.{table} ({', '.join(names)}) SELECT {', '.join(exprs)} "
                 + source_sql, params)
    return invented


def fill_history(server: PgServer, args) -> dict:
    """--runs cycles spread over the sources, --calls-per-run outcomes each."""
    t0 = time.perf_counter()
    names = [sysname(i) for i in range(args.sources)]
    with psycopg.connect(server.dsn(REPLAY_DB), autocommit=True) as conn:
        has_state = "state" in columns(conn, "runs")
        n, per = args.runs, args.calls_per_run
        # g: 1..n in time order. 2% of the cycles found their source down, 0.5% failed (only
        # recorded when runs has a state column); a fifth of the others had one failed call.
        kind = ("CASE WHEN %(has_state)s AND g %% 50 = 7 THEN 'down'"
                " WHEN %(has_state)s AND g %% 200 = 13 THEN 'error' ELSE 'ok' END")
        # the last source is quiet: 10 runs at the very start of the history (what a
        # source that has had nothing to do for a week looks like); the others share the rest
        known = {
            "source": "CASE WHEN %(nsrc)s > 1 AND g <= 20 AND g %% 2 = 0 THEN (%(names)s::text[])[%(nsrc)s]"
                      " ELSE (%(names)s::text[])[1 + (hashint4(g) & 2147483647) %% greatest(%(nsrc)s - 1, 1)]"
                      " END",
            "daemon": "'benchhost:4242'",
            "started_at": "%(now)s::timestamptz - make_interval(secs => (%(n)s - g) * 60)",
            "finished_at": "%(now)s::timestamptz - make_interval(secs => (%(n)s - g) * 60)"
                           " + make_interval(secs => 1 + g %% 20)",
            "taken": f"CASE WHEN {kind} = 'ok' THEN %(per)s ELSE 0 END",
            "synchronized": f"CASE WHEN {kind} = 'ok' THEN %(per)s - 1 - (g %% 5 = 0)::int ELSE 0 END",
            "not_used": f"CASE WHEN {kind} = 'ok' THEN 1 ELSE 0 END",
            "erroneous": "0",
            "failed": f"CASE WHEN {kind} = 'ok' THEN (g %% 5 = 0)::int ELSE 0 END",
            "skipped": "0",
            "files": f"CASE WHEN {kind} = 'ok' THEN 2 * (%(per)s - 1 - (g %% 5 = 0)::int) ELSE 0 END",
            "bytes": f"CASE WHEN {kind} = 'ok' THEN 65536::bigint * (%(per)s - 1 - (g %% 5 = 0)::int)"
                     " ELSE 0 END",
            "error": f"CASE {kind} WHEN 'down' THEN 'database unreachable: connection refused'"
                     " WHEN 'error' THEN 'TargetError: no target path below its watermark' END",
            "state": kind,
        }
        params = {"names": names, "nsrc": len(names), "now": NOW, "n": n, "per": per,
                  "has_state": has_state}
        invented = insert_select(conn, "runs", known, "FROM generate_series(1, %(n)s) g ORDER BY g",
                                 params)
        say(f"[setup] {n:,} runs inserted" + (f" (columns filled with defaults: {invented})"
                                              if invented else ""))
        # k = 1..taken: the first `failed` calls failed, the next `not_used` were not used
        known_calls = {
            "run_id": "r.id",
            "source_cplid": "r.id * 1000 + k",
            "sid": "r.source || '-' || (r.id * 1000 + k)",
            "outcome": "CASE WHEN k <= r.failed THEN 'failed' WHEN k <= r.failed + r.not_used"
                       " THEN 'not_used' ELSE 'synchronized' END",
            "reason": "CASE WHEN k <= r.failed THEN 'source_file_missing' END",
            "detail": "CASE WHEN k <= r.failed THEN '/calls/' || r.source || '/' || (r.id * 1000 + k)"
                      " || '/stream0.wav: No such file or directory' END",
        }
        invented = insert_select(conn, "run_calls", known_calls,
                                 "FROM synchrod.runs r, generate_series(1, r.taken) k"
                                 " ORDER BY r.id, k", {})
        ncalls = conn.execute("SELECT count(*) FROM synchrod.run_calls").fetchone()[0]
        say(f"[setup] {ncalls:,} run_calls inserted" + (f" (columns filled with defaults: {invented})"
                                                        if invented else ""))
        # calls waiting for their next try, and calls given up on
        conn.execute(
            "INSERT INTO synchrod.attempts (source, source_cplid, sid, attempts, next_try_at,"
            " last_reason, last_detail)"
            " SELECT s, 900000000 + i, s || '-lost-' || i, 1 + i %% 3,"
            " CASE WHEN i %% 2 = 0 THEN 'infinity'::timestamptz ELSE now() + interval '1 hour' END,"
            " 'source_file_missing', '/calls/' || s || '/' || i || '.wav: No such file or directory'"
            " FROM unnest(%(names)s::text[]) s, generate_series(1, %(per)s) i",
            {"names": names, "per": args.attempts_per_source})
        for table in ("runs", "run_calls", "attempts"):
            conn.execute(f"VACUUM ANALYZE synchrod.{table}")
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('synchrod.runs')"
                            " + pg_total_relation_size('synchrod.run_calls'))").fetchone()[0]
        ids = conn.execute("SELECT min(id), max(id) FROM synchrod.runs").fetchone()
        pick = conn.execute(
            "SELECT id, source FROM synchrod.runs WHERE taken > 0 AND id >= %s ORDER BY id LIMIT 1",
            ((ids[0] + ids[1]) // 2,)).fetchone()
    quiet = names[-1]
    say(f"[setup] history: {n:,} runs, {ncalls:,} run_calls ({size}), "
        f"{args.attempts_per_source * len(names):,} attempts, in {time.perf_counter() - t0:.1f} s")
    return {"runs": n, "run_calls": ncalls, "size": size, "has_state": has_state,
            "min_id": ids[0], "max_id": ids[1], "mid_id": pick[0], "mid_source": pick[1],
            "deep_id": ids[0] + 60, "quiet_source": quiet, "first_source": names[0],
            "sources": names}


# --- live calls while measuring --------------------------------------------------------

class Feeder(threading.Thread):
    """Records new calls (one or two real WAV files each) on a few sources, so the
    daemon copies, commits and writes history while the monitor is measured."""

    def __init__(self, server: PgServer, names: list[str], rate: float):
        super().__init__(daemon=True, name="feeder")
        self.server, self.names, self.rate = server, names, rate
        self.stop = threading.Event()
        self.added = 0
        self.error: str | None = None

    def batch(self, name: str, count: int) -> None:
        """Records ``count`` new calls on source ``name``, with their WAV files on its mount."""
        calls = []
        for _ in range(count):
            self.added += 1
            sid = f"live-{name}-{self.added:06d}"
            start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
            files = [FileSpec("AUDIO", f"/calls/{start:%Y%m%d}/{sid}/stream{n}.wav", seconds=1.0)
                     for n in range(1 + self.added % 2)]
            calls.append(CallSpec(sid=sid, start=start, length=12, files=files,
                                  extdata=[("agent", f"agent{self.added % 9}")]))
        recorders.add_calls(self.server.dsn(name), WORK / "mnt" / name, calls)

    def run(self) -> None:
        """Until ``stop`` is set, records about ``rate`` calls a second, on one source after
        the other; an error ends it, kept in ``error``."""
        if self.rate <= 0:
            return
        i = 0
        period = 1.0
        per_tick = max(1, round(self.rate * period))
        try:
            while not self.stop.wait(period):
                self.batch(self.names[i % len(self.names)], per_tick)
                i += 1
        except Exception as exc:  # noqa: BLE001 - reported, the measurement goes on
            self.error = repr(exc)
