#!/usr/bin/env python3
"""synchrod monitor benchmark (``make bench-monitor``; ``make bench-monitor
BENCH_MONITOR_ARGS='--requests 100 --keep'``).

Target: with 50 sources and 10,000 cycles in the history, ``GET /api/v1/status``
and ``GET /monitor/`` answer in under 50 ms at the 95th percentile, and the
page paints its first content under 50 ms, on a 2-core machine.

What it builds, under .bench/monitor/ (removed at start and, unless --keep, at
the end), in one embedded PostgreSQL started with fsync on:

    replay DB    the callrec schema, synchrod's schema (`synchrod init-db`), a
                 history of --runs cycles over the sources (synchrod.runs), each
                 with --calls-per-run outcomes (synchrod.run_calls), and some
                 failure records (synchrod.attempts); ANALYZEd
    recorders    --sources databases (cloned from one template that already
                 holds --recorder-couples synchronized couples), one mount
                 directory each, in groups of 10
    daemon       `synchrod run` with the monitor on 127.0.0.1:<free port>,
                 sleep_period 5. While it is measured, a feeder thread records
                 new calls with real WAV files on five sources (one per group)
                 so the daemon copies, commits and writes history meanwhile.

Measured, after a warm-up, sequentially over one keep-alive connection
(endpoints interleaved): status, the page's HTML (it carries the status, so
the first paint needs no other request), history pages (newest, in the
middle, near the oldest, of one source, of a quiet source), one run with its
calls, the metrics, the jobs; then /api/v1/status from 4 threads at once;
then, when /usr/bin/chromium and playwright are there, 30 cold loads of
/monitor/ in headless Chromium (a fresh browser context each: empty cache):
first contentful paint and the time until the sources table shows every
source (tr[data-source]), with Chromium's own counters (DOM nodes, script,
style, layout); and the same for a static page with a table of as many rows
and no script or stylesheet, served from this script: the floor of this
browser on this machine, to read the page's figures against.

Statements of the replay database slower than 10 ms while measuring are
logged by PostgreSQL and summed up. The server's history statements are
EXPLAIN ANALYZEd as prepared statements with a custom and with a generic plan
(asyncpg prepares every statement; PostgreSQL may switch to the generic plan
after five executions), and the plan PostgreSQL settles on for the measured
mix of pages is reported.

The script exits 0 once it has measured, whatever the figures; 1 if the set-up
or the daemon failed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from synchrod.testing import recorders, stage  # noqa: E402
from synchrod.testing.pgserver import PgServer  # noqa: E402
from synchrod.testing.recorders import CallSpec, FileSpec  # noqa: E402
from synchrod.testing.stage import SYNCHROD, free_port, say  # noqa: E402

WORK = REPO / ".bench" / "monitor"
STAGE = stage.Stage(WORK)        # WORK/pg, and WORK/server.json to stop a server left by --keep
PG_ROOT = STAGE.pg_root
CONFIG = WORK / "synchrod.yaml"
REPLAY_DB = "replay"
CHROMIUM = "/usr/bin/chromium"
GROUP_SIZE = 10
LIMIT_MS = 50.0
SLOW_STATEMENT_MS = 10
NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def sysname(i: int) -> str:
    return f"rec{i + 1:02d}"


# --- PostgreSQL and the databases -----------------------------------------------------

def build_databases(server: PgServer, args) -> list[dict]:
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


def log_slow_statements(server: PgServer, on: bool) -> None:
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        value = f"{SLOW_STATEMENT_MS}ms" if on else "-1"
        conn.execute(f"ALTER DATABASE {REPLAY_DB} SET log_min_duration_statement = '{value}'")


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


# --- the daemon ---------------------------------------------------------------------------

class Daemon:
    """`synchrod run` as a subprocess; its JSON log lines are read by a thread."""

    def __init__(self):
        self.logfile = open(WORK / "daemon.log", "w")
        self.proc = subprocess.Popen([SYNCHROD, "run", "-c", str(CONFIG)], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1)
        self.url: str | None = None
        self.cycles: Counter = Counter()
        self.moved = Counter()       # synchronized + not_used per source
        self.problems: list[str] = []
        self.tail: list[str] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True, name="daemon-log")
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.logfile.write(line)
            with self.lock:
                self.tail = (self.tail + [line.rstrip()])[-40:]
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not isinstance(ev, dict):
                continue
            name = ev.get("event")
            with self.lock:
                if name == "monitor_listening":
                    self.url = ev.get("url")
                elif name == "cycle" and ev.get("source"):
                    self.cycles[ev["source"]] += 1
                    self.moved[ev["source"]] += (ev.get("synchronized") or 0) + (ev.get("not_used") or 0)
                if ev.get("level") in ("warning", "error", "critical") and len(self.problems) < 200:
                    self.problems.append(line.rstrip()[:400])
        self.logfile.flush()

    def wait(self, what: str, cond, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if cond():
                    return
            if self.proc.poll() is not None:
                self.reader.join(2)
                raise RuntimeError(f"synchrod run exited ({self.proc.returncode}) while waiting for "
                                   f"{what}; last lines:\n" + "\n".join(self.tail))
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; last lines:\n"
                                   + "\n".join(self.tail))
            time.sleep(0.1)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(5)
        self.logfile.close()
        return self.proc.returncode


# --- HTTP ---------------------------------------------------------------------------------

class Client:
    """One keep-alive connection; reconnects if the server closed it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def get(self, path: str) -> tuple[float, int, bytes]:
        for attempt in (0, 1):
            t0 = time.perf_counter()
            try:
                self.conn.request("GET", path, headers={"Accept-Encoding": "identity"})
                resp = self.conn.getresponse()
                body = resp.read()
                ms = (time.perf_counter() - t0) * 1000
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return ms, resp.status, body
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def endpoints(hist: dict, first: str) -> list[tuple[str, str]]:
    mid, src, q = hist["mid_id"], urllib.parse.quote(hist["mid_source"]), hist["quiet_source"]
    return [
        ("/api/v1/status", "/api/v1/status"),
        ("/monitor/ (HTML)", "/monitor/"),
        ("/api/v1/runs?limit=50", "/api/v1/runs?limit=50"),
        ("/api/v1/runs?before=<mid>&limit=50", f"/api/v1/runs?before={mid}&limit=50"),
        ("/api/v1/runs?before=<oldest+60>&limit=50", f"/api/v1/runs?before={hist['deep_id']}&limit=50"),
        ("/api/v1/runs?source=..&before=<mid>&limit=50", f"/api/v1/runs?source={src}&before={mid}&limit=50"),
        ("/api/v1/runs?source=..&limit=50", f"/api/v1/runs?source={urllib.parse.quote(first)}&limit=50"),
        ("/api/v1/runs?source=<quiet>&limit=50", f"/api/v1/runs?source={urllib.parse.quote(q)}&limit=50"),
        ("/api/v1/runs/<id>", f"/api/v1/runs/{mid}"),
        ("/metrics", "/metrics"),
        ("/api/v1/jobs", "/api/v1/jobs"),
    ]


def check_responses(client: Client, eps: list[tuple[str, str]], hist: dict, nsources: int) -> list[str]:
    """What the endpoints answer is what the benchmark means to measure."""
    notes = []
    for label, path in eps:
        _, status, body = client.get(path)
        info = f"{status}, {len(body):,} bytes"
        if status != 200:
            notes.append(f"{label}: HTTP {status}: {body[:200]!r}")
        elif path.startswith("/api/"):
            try:
                doc = json.loads(body)
            except ValueError:
                notes.append(f"{label}: not JSON")
                continue
            if path == "/api/v1/status":
                n = len(doc.get("sources", []))
                info += f", {n} sources"
                if n != nsources:
                    notes.append(f"{label}: {n} sources, expected {nsources}")
            elif path.startswith("/api/v1/runs/"):
                info += f", {len(doc.get('calls', []))} calls"
                if not doc.get("calls"):
                    notes.append(f"{label}: no calls in run {hist['mid_id']}")
            elif path.startswith("/api/v1/runs"):
                runs = doc.get("runs", [])
                info += f", {len(runs)} runs, next_before={doc.get('next_before')}"
                want = 10 if f"source={hist['quiet_source']}&" in path else 50
                if len(runs) != want:
                    notes.append(f"{label}: {len(runs)} runs, expected {want}")
                if "before=" in path and any(r.get("id", 0) >= hist["mid_id"] for r in runs):
                    notes.append(f"{label}: a run with id >= before")
                if "source=" in path and any(r.get("source") != runs[0].get("source") for r in runs):
                    notes.append(f"{label}: runs of another source")
            elif path == "/api/v1/jobs":
                info += f", {len(doc.get('jobs', []))} jobs"
        say(f"[check] GET {path}: {info}")
    return notes


def measure_sequential(client: Client, eps: list[tuple[str, str]], n: int, warmup: int) -> dict:
    times: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    sizes: dict[str, int] = {}
    for i in range(warmup + n):
        for label, path in eps:  # interleaved: the daemon's activity hits every endpoint alike
            ms, status, body = client.get(path)
            if i < warmup:
                continue
            if status != 200:
                errors[label] += 1
            times[label].append(ms)
            sizes[label] = len(body)
    return {label: summary(times[label], errors[label], sizes.get(label)) for label, _ in eps}


def measure_concurrent(host: str, port: int, path: str, threads: int, n: int) -> dict:
    times: list[float] = []
    errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker():
        nonlocal errors
        c = Client(host, port)
        mine, bad = [], 0
        for _ in range(5):
            c.get(path)
        barrier.wait()
        for _ in range(n):
            ms, status, _ = c.get(path)
            mine.append(ms)
            bad += status != 200
        c.close()
        with lock:
            times.extend(mine)
            errors += bad

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    out = summary(times, errors, None)
    out["req_per_s"] = len(times) / wall
    return out


def summary(times: list[float], errors: int, size: int | None) -> dict:
    return {"n": len(times), "p50": pct(times, 50), "p95": pct(times, 95), "p99": pct(times, 99),
            "max": max(times), "mean": statistics.fmean(times), "errors": errors, "bytes": size}


# --- the browser ------------------------------------------------------------------------------

INIT_SCRIPT = """
(() => {
  const want = %d;
  const check = () => {
    if (window.__rowsDom === undefined &&
        document.querySelectorAll('tr[data-source]').length >= want) {
      window.__rowsDom = performance.now();
      // the frame that shows them
      requestAnimationFrame(() => { window.__rowsFrame = performance.now(); });
    }
  };
  new MutationObserver(check).observe(document, {childList: true, subtree: true});
})();
"""


def poll(page, expression: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


BROWSER_KEYS = (("ttfb", "ttfb"), ("dom_content_loaded", "dcl"), ("load", "load"),
                ("first_contentful_paint", "fcp"), ("sources_table_dom", "rowsDom"),
                ("sources_table_painted", "rowsFrame"))
CDP_KEYS = ("Nodes", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")


def baseline_server(nsources: int):
    """A trivial static page (no script, no stylesheet, a table of as many rows)
    served from a thread: what this browser on this machine needs at the least."""
    import http.server

    rows = "".join(f'<tr data-source="s{i}"><td>s{i}</td><td>waiting</td></tr>' for i in range(nsources))
    body = (f"<!doctype html><html><head><meta charset=utf-8><title>baseline</title>"
            f'<link rel="icon" href="data:,"></head><body>'
            f"<h1>baseline</h1><table>{rows}</table></body></html>").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser closed a connection it did not need

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass

    httpd = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True, name="baseline").start()
    return httpd


def browser_loads(browser, url: str, nsources: int, loads: int, warmup: int, notes: list[str]) -> dict:
    """``loads`` cold loads of ``url`` (a fresh context each: empty cache)."""
    got: dict[str, list[float]] = defaultdict(list)
    for i in range(warmup + loads):
        ctx = browser.new_context()
        ctx.add_init_script(INIT_SCRIPT % nsources)
        page = ctx.new_page()
        cdp = ctx.new_cdp_session(page)
        cdp.send("Performance.enable")
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        try:
            page.goto(url, wait_until="load", timeout=30000)
            # polled from here: the page's CSP (script-src 'self') forbids the eval
            # page.wait_for_function needs; the times themselves are taken in the page
            if not poll(page, "performance.getEntriesByType('paint')"
                              ".some(e => e.name === 'first-contentful-paint')", 10):
                notes.append(f"{url} load {i + 1}: no first-contentful-paint entry after 10 s")
            if not poll(page, "window.__rowsFrame !== undefined", 15):
                n = page.evaluate("document.querySelectorAll('tr[data-source]').length")
                notes.append(f"{url} load {i + 1}: the table showed {n} rows tr[data-source] "
                             f"after 15 s, expected {nsources}")
            m = page.evaluate("""() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const p = performance.getEntriesByType('paint')
                          .find(e => e.name === 'first-contentful-paint');
                return {fcp: p ? p.startTime : null, rowsFrame: window.__rowsFrame ?? null,
                        rowsDom: window.__rowsDom ?? null, ttfb: nav.responseStart,
                        dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd};
            }""")
            perf = {x["name"]: x["value"] for x in cdp.send("Performance.getMetrics")["metrics"]}
        finally:
            ctx.close()
        if errors:
            notes.append(f"{url} load {i + 1}: page errors: {errors[:3]}")
        if i < warmup:
            continue
        for _, key in BROWSER_KEYS:
            if m[key] is not None:
                got[key].append(m[key])
        for key in CDP_KEYS:
            if key in perf:
                got[key].append(perf[key] * 1000 if key.endswith("Duration") else perf[key])
    out: dict = {}
    for name, key in BROWSER_KEYS:
        lst = got.get(key)
        out[name] = {"n": len(lst), "p50": pct(lst, 50), "p95": pct(lst, 95), "max": max(lst)} \
            if lst else None
    out["chromium"] = {key: statistics.median(got[key]) for key in CDP_KEYS if got.get(key)}
    return out


def measure_browser(url: str, nsources: int, loads: int, warmup: int) -> dict:
    if not os.access(CHROMIUM, os.X_OK):
        return {"skipped": f"{CHROMIUM} not found"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    notes: list[str] = []
    base = baseline_server(nsources)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            try:
                out = browser_loads(browser, url, nsources, loads, warmup, notes)
                out["baseline"] = browser_loads(browser, f"http://127.0.0.1:{base.server_address[1]}/",
                                                nsources, max(10, loads // 2), warmup, notes)
            finally:
                browser.close()
    finally:
        base.shutdown()
    out["loads"] = loads
    out["notes"] = notes[:10]
    return out


# --- EXPLAIN ------------------------------------------------------------------------------------

def server_queries(hist: dict) -> list[tuple[str, str, list]]:
    """The server's own history reads (synchrod.replay.history, .reads), with
    the parameters the measured requests give them."""
    from synchrod.replay import history as h, reads
    mid, src, quiet, deep = hist["mid_id"], hist["mid_source"], hist["quiet_source"], hist["deep_id"]
    return [  # the pages in the order the measurement asks for them
        ("runs: newest page", h._RUNS, [h._NO_BEFORE, 51]),
        ("runs: before <mid>", h._RUNS, [mid, 51]),
        ("runs: before <oldest+60>", h._RUNS, [deep, 51]),
        ("runs: a source, before <mid>", h._SOURCE_RUNS, [mid, 51, src]),
        ("runs: a source, newest page", h._SOURCE_RUNS, [h._NO_BEFORE, 51, hist["first_source"]]),
        ("runs: the quiet source", h._SOURCE_RUNS, [h._NO_BEFORE, 51, quiet]),
        ("one run", h._RUN, [mid]),
        ("calls of a run, a page", h._RUN_CALLS, [mid, 0, 1001]),
        ("board: attempts per source (every 5 s)", reads._ATTEMPT_COUNTS,
         [hist["sources"]]),
    ]


def explain(server: PgServer, hist: dict) -> list[dict]:
    """EXPLAIN ANALYZE of each server statement as a prepared statement, with a
    custom plan (its first executions) and the generic plan PostgreSQL may switch
    to after five (asyncpg prepares every statement)."""
    from psycopg import sql as psql
    try:
        queries = server_queries(hist)
    except (ImportError, AttributeError) as exc:
        return [{"label": "server SQL", "error": f"not found: {exc}"}]
    out = []
    with psycopg.connect(server.dsn(REPLAY_DB), autocommit=True) as conn:
        for i, (label, text, params) in enumerate(queries):
            entry = {"label": label, "sql": " ".join(text.split())}
            try:
                conn.execute(f"PREPARE bench_q{i} AS {text}")
                args = psql.SQL("({})").format(psql.SQL(", ").join(psql.Literal(p) for p in params)) \
                    if params else psql.SQL("")
                for mode in ("custom", "generic"):
                    conn.execute(f"SET plan_cache_mode = force_{mode}_plan")
                    conn.execute(psql.SQL("EXECUTE {}{}").format(psql.Identifier(f"bench_q{i}"), args))
                    plan = conn.execute(psql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {}{}").format(
                        psql.Identifier(f"bench_q{i}"), args)).fetchone()[0]
                    root = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
                    entry[mode] = {"ms": root["Execution Time"], "plan": plan_summary(root["Plan"])}
            except Exception as exc:  # noqa: BLE001
                entry["error"] = f"{type(exc).__name__}: {exc}"[:200]
            out.append(entry)
        conn.execute("RESET plan_cache_mode")
    return out


def plan_summary(node: dict) -> str:
    """Node types with their index or table and the rows they filtered out, depth
    first: 'Limit > Index Scan Backward(runs_pkey, 9,950 removed)'."""
    parts = []

    def walk(n):
        what = n["Node Type"]
        if n.get("Scan Direction") == "Backward":
            what += " Backward"
        target = n.get("Index Name") or n.get("Relation Name")
        detail = [target] if target else []
        if n.get("Index Cond"):
            detail.append("cond " + n["Index Cond"])
        removed = n.get("Rows Removed by Filter")
        if removed:
            detail.append(f"{removed:,} rows removed by filter")
        if detail:
            what += "(" + "; ".join(detail) + ")"
        parts.append(what)
        for child in n.get("Plans", []):
            walk(child)
    walk(node)
    return " > ".join(parts)


def slow_statements(since: int) -> list[tuple[float, str]]:
    """Statements PostgreSQL logged as slower than SLOW_STATEMENT_MS since byte ``since``."""
    out = []
    log = PG_ROOT / "postgres.log"
    try:
        with open(log, errors="replace") as fh:
            fh.seek(since)
            text = fh.read()
    except OSError:
        return out
    for m in re.finditer(r"duration: ([\d.]+) ms\s+(?:statement|execute [^:]*|parse [^:]*|bind [^:]*):"
                         r"\s*(.*)", text):
        out.append((float(m.group(1)), " ".join(m.group(2).split())[:160]))
    return out


# --- report -------------------------------------------------------------------------------------

def report(res: dict) -> list[str]:
    lines = []
    rows = [("endpoint", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "bytes|rate", "err", "target")]
    for label, s in res["sequential"].items():
        target = ""
        if label in ("/api/v1/status", "/monitor/ (HTML)"):
            target = f"p95<{LIMIT_MS:.0f}: " + ("PASS" if s["p95"] < LIMIT_MS else "FAIL")
        rows.append((label, str(s["n"]), f"{s['p50']:.2f}", f"{s['p95']:.2f}", f"{s['p99']:.2f}",
                     f"{s['max']:.2f}", f"{s['bytes']:,}" if s["bytes"] is not None else "-",
                     str(s["errors"]), target))
    c = res["concurrent"]
    rows.append((f"/api/v1/status x{res['threads']} threads", str(c["n"]), f"{c['p50']:.2f}",
                 f"{c['p95']:.2f}", f"{c['p99']:.2f}", f"{c['max']:.2f}", f"{c['req_per_s']:.0f}/s",
                 str(c["errors"]), f"p95<{LIMIT_MS:.0f}: " + ("PASS" if c["p95"] < LIMIT_MS else "FAIL")))
    b = res["browser"]
    if "skipped" not in b:
        base = b.get("baseline", {})
        for key, label, judged in (("ttfb", "browser: time to first byte", False),
                                   ("dom_content_loaded", "browser: DOMContentLoaded", False),
                                   ("first_contentful_paint", "browser: first contentful paint", True),
                                   ("sources_table_painted",
                                    f"browser: {res['sources']} source rows shown", False),
                                   ("load", "browser: load event", False)):
            s = b.get(key)
            if not s:
                rows.append((label, "0", "-", "-", "-", "-", "-", "-", "FAIL (never)" if judged else ""))
                continue
            target = (f"p95<{LIMIT_MS:.0f}: " + ("PASS" if s["p95"] < LIMIT_MS else "FAIL")) if judged else ""
            rows.append((label, str(s["n"]), f"{s['p50']:.1f}", f"{s['p95']:.1f}", "-",
                         f"{s['max']:.1f}", "-", "-", target))
        for key, label in (("first_contentful_paint", "baseline page: first contentful paint"),
                           ("sources_table_painted", f"baseline page: {res['sources']} rows shown")):
            s = base.get(key)
            if s:
                rows.append((label, str(s["n"]), f"{s['p50']:.1f}", f"{s['p95']:.1f}", "-",
                             f"{s['max']:.1f}", "-", "-", "(floor: static HTML, no JS/CSS)"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        lines.append("  ".join(f"{v:<{w[i]}}" if i == 0 else f"{v:>{w[i]}}" if i < 8 else v
                               for i, v in enumerate(r)).rstrip())
        if j == 0:
            lines.append("-" * len(lines[0]))
    if "skipped" in b:
        lines.append(f"browser: skipped ({b['skipped']})")
    else:
        for name, key in (("/monitor/", None), ("baseline", "baseline")):
            c = (b.get(key) or {} if key else b).get("chromium") or {}
            if c:
                lines.append(f"chromium per load (median), {name}: {c.get('Nodes', 0):.0f} DOM nodes, script "
                             f"{c.get('ScriptDuration', 0):.0f} ms, style {c.get('RecalcStyleDuration', 0):.0f} ms, "
                             f"layout {c.get('LayoutDuration', 0):.0f} ms, main-thread tasks "
                             f"{c.get('TaskDuration', 0):.0f} ms")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=50, help="recorders (default 50)")
    ap.add_argument("--runs", type=int, default=10000, help="cycles in the history (default 10,000)")
    ap.add_argument("--calls-per-run", type=int, default=20, help="outcomes per cycle (default 20)")
    ap.add_argument("--requests", type=int, default=300, help="measured requests per endpoint (default 300)")
    ap.add_argument("--warmup", type=int, default=20, help="unmeasured requests per endpoint first")
    ap.add_argument("--threads", type=int, default=4, help="concurrent clients of /api/v1/status")
    ap.add_argument("--loads", type=int, default=30, help="measured browser loads of /monitor/")
    ap.add_argument("--recorder-couples", type=int, default=5000,
                    help="synchronized couples already on every recorder (default 5,000)")
    ap.add_argument("--attempts-per-source", type=int, default=40,
                    help="failure records per source (half given up)")
    ap.add_argument("--feed-rate", type=float, default=10.0,
                    help="new calls per second recorded while measuring (0: none)")
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium first-paint part")
    ap.add_argument("--keep", action="store_true",
                    help="leave the daemon's databases and files under .bench/monitor")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args()
    if args.sources < 1 or args.runs < 2 or args.requests < 1:
        ap.error("--sources, --runs and --requests must be positive (--runs at least 2)")

    t_all = time.perf_counter()
    STAGE.clear("immediate", lambda: say("stopping the server of a previous --keep run"))
    server = STAGE.start(fast=False)
    say(f"embedded PostgreSQL (fsync on) in {server.root}; {os.cpu_count()} CPUs ({cpu_model()})")
    daemon = feeder = None
    rc = 0
    res: dict = {"sources": args.sources, "threads": args.threads}
    try:
        sources = build_databases(server, args)
        port = free_port()
        write_config(server, sources, port)
        stage.init_db(CONFIG, cwd=REPO)
        hist = fill_history(server, args)
        res["history"] = hist
        names = [s["sysname"] for s in sources]
        busy = names[::GROUP_SIZE][:5]
        feeder = Feeder(server, busy, args.feed_rate)
        for name in busy:  # work for the first cycles
            feeder.batch(name, 40)
        log_slow_statements(server, True)

        t0 = time.perf_counter()
        daemon = Daemon()
        daemon.wait("monitor_listening", lambda: daemon.url is not None, 120)
        url = daemon.url
        say(f"[daemon] monitor at {url} after {time.perf_counter() - t0:.1f} s")
        daemon.wait("two cycles of every source",
                    lambda: len(daemon.cycles) >= len(names) and min(daemon.cycles.values()) >= 2, 180)
        say(f"[daemon] every source has cycled twice after {time.perf_counter() - t0:.1f} s; "
            f"{sum(daemon.moved.values())} calls synchronized so far")
        parsed = urllib.parse.urlsplit(url)
        host, hport = parsed.hostname or "127.0.0.1", parsed.port or port
        base = f"{parsed.scheme}://{parsed.netloc}"

        client = Client(host, hport)
        eps = endpoints(hist, names[0])
        res["checks"] = check_responses(client, eps, hist, args.sources)
        for note in res["checks"]:
            say(f"[check] PROBLEM: {note}")

        feeder.start()
        with open(PG_ROOT / "postgres.log", "rb") as fh:
            log_pos = fh.seek(0, 2)
        try:
            import psutil
            dproc = psutil.Process(daemon.proc.pid)
            cpu0 = dproc.cpu_times()
        except Exception:  # noqa: BLE001
            dproc = cpu0 = None
        cycles0, moved0 = sum(daemon.cycles.values()), sum(daemon.moved.values())
        t_meas = time.perf_counter()
        load_before = os.getloadavg()
        say(f"[measure] {args.requests} requests x {len(eps)} endpoints, interleaved, one keep-alive "
            f"connection ({args.warmup} warm-up each) ...")
        res["sequential"] = measure_sequential(client, eps, args.requests, args.warmup)
        client.close()
        say(f"[measure] /api/v1/status from {args.threads} threads x {args.requests} ...")
        res["concurrent"] = measure_concurrent(host, hport, "/api/v1/status", args.threads, args.requests)
        if args.no_browser:
            res["browser"] = {"skipped": "--no-browser"}
        else:
            say(f"[measure] {args.loads} cold loads of {base}/monitor/ in headless Chromium ...")
            try:
                res["browser"] = measure_browser(f"{base}/monitor/", args.sources, args.loads, 3)
            except Exception as exc:  # noqa: BLE001 - the HTTP figures still stand
                res["browser"] = {"skipped": f"failed: {type(exc).__name__}: {str(exc)[:300]}"}
        meas_s = time.perf_counter() - t_meas
        feeder.stop.set()
        feeder.join(10)
        with daemon.lock:
            cycles_during = sum(daemon.cycles.values()) - cycles0
            moved_during = sum(daemon.moved.values()) - moved0
        res["loadavg"] = {"before": load_before, "after": os.getloadavg()}
        res["daemon_activity"] = {"seconds": meas_s, "cycles": cycles_during, "calls_synchronized": moved_during,
                                  "calls_recorded_by_feeder": feeder.added, "feeder_error": feeder.error}
        if dproc is not None:
            cpu1 = dproc.cpu_times()
            res["daemon_activity"]["cpu_s"] = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
            res["daemon_activity"]["rss_mib"] = dproc.memory_info().rss / (1 << 20)
        res["slow_statements"] = slow_statements(log_pos)
        log_slow_statements(server, False)
        res["explain"] = explain(server, hist)
    except Exception as exc:  # noqa: BLE001
        say(f"\nFAILED: {exc}")
        rc = 1
    finally:
        if feeder is not None:
            feeder.stop.set()
        if daemon is not None:
            drc = daemon.stop()
            res["daemon_exit"] = drc
            with daemon.lock:
                res["daemon_problems"] = list(daemon.problems)
        if not args.keep:
            STAGE.destroy(server, remove_root=True)
    if args.keep:
        say(f"kept: {WORK.relative_to(REPO)} (PostgreSQL still running, socket {server.socket_dir}, port "
            f"{server.port}); `synchrod run -c {CONFIG.relative_to(REPO)}` starts the daemon again; "
            "the next run of this script stops and removes it")
    if rc:
        return rc

    total = time.perf_counter() - t_all
    hist = res["history"]
    say()
    say(f"== monitor benchmark: {args.sources} sources, {hist['runs']:,} runs / {hist['run_calls']:,} "
        f"run_calls in the history, {os.cpu_count()} CPUs ({cpu_model()}) ==")
    lines = report(res)
    for line in lines:
        say(line)
    act = res["daemon_activity"]
    say()
    say(f"while measuring ({act['seconds']:.0f} s) the daemon ran {act['cycles']} cycles and synchronized "
        f"{act['calls_synchronized']} calls ({act['calls_recorded_by_feeder']} recorded meanwhile)"
        + (f", used {act['cpu_s']:.1f} CPU s, RSS {act['rss_mib']:.0f} MiB" if "cpu_s" in act else ""))
    la = res["loadavg"]
    say(f"load average (1 min) {la['before'][0]:.2f} before measuring, {la['after'][0]:.2f} after "
        f"(anything above ~1 is other work on this machine competing with daemon and benchmark)")
    if act.get("feeder_error"):
        say(f"feeder failed: {act['feeder_error']}")
    for note in res.get("checks", []):
        say(f"PROBLEM: {note}")
    for note in res["browser"].get("notes", []):
        say(f"browser: {note}")
    slow = res["slow_statements"]
    if slow:
        agg: dict[str, list[float]] = defaultdict(list)
        for ms, stmt in slow:
            agg[stmt].append(ms)
        say(f"\nreplay-database statements slower than {SLOW_STATEMENT_MS} ms while measuring: {len(slow)}")
        for stmt, v in sorted(agg.items(), key=lambda kv: -sum(kv[1]))[:8]:
            say(f"  x{len(v):<4} max {max(v):7.1f} ms  {stmt}")
    else:
        say(f"\nno replay-database statement took {SLOW_STATEMENT_MS} ms or more while measuring")
    say("\nthe server's history statements, EXPLAIN ANALYZE (warm), custom plan / generic plan:")
    for e in res["explain"]:
        if "error" in e:
            say(f"  {e['label']}: {e['error']}")
            continue
        if "auto" in e:
            say(f"  {e['label']}: {e['auto']['custom']} custom plans, then {e['auto']['generic']} generic"
                + (": PostgreSQL switched this session to the generic plan, and the server's pooled "
                   "connections may do the same" if e["auto"]["generic"] else ""))
            continue
        say(f"  {e['label']}:")
        for mode in ("custom", "generic"):
            m = e[mode]
            seq = "  <- SEQ SCAN" if "Seq Scan(runs" in m["plan"] or "Seq Scan(run_calls" in m["plan"] else ""
            say(f"    {mode:<7} {m['ms']:7.2f} ms  {m['plan']}{seq}")
    if res.get("daemon_exit") not in (0, None):
        say(f"\nthe daemon exited {res['daemon_exit']} on SIGTERM")
    if res.get("daemon_problems"):
        say(f"\ndaemon warnings/errors ({len(res['daemon_problems'])}), first ones:")
        for line in res["daemon_problems"][:5]:
            say(f"  {line}")
    verdict = [("/api/v1/status p95", res["sequential"]["/api/v1/status"]["p95"]),
               ("/monitor/ (HTML) p95", res["sequential"]["/monitor/ (HTML)"]["p95"])]
    fcp = res["browser"].get("first_contentful_paint")
    if fcp:
        verdict.append(("first contentful paint p95", fcp["p95"]))
    say()
    say("target < 50 ms p95: " + ", ".join(f"{k} {v:.1f} ms {'PASS' if v < LIMIT_MS else 'FAIL'}"
                                           for k, v in verdict)
        + ("" if fcp else " (first paint not measured)"))
    say(f"benchmark run time {total:.0f} s")
    if args.json:
        meta = {"cpus": os.cpu_count(), "cpu": cpu_model(), "kernel": os.uname().release,
                "total_seconds": total, "args": vars(args),
                "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": res, "table": lines},
                                              indent=2, default=str))
        say(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
