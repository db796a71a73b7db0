"""The HTTP side of the storage benchmark (s): `synchrod run` with its
monitor as a subprocess, a keep-alive client that logs in and sends the
Bearer token, the endpoints measured (``GET /api/v1/storage`` and pages of
``GET /api/v1/recordings``), and the replay-database statements behind
them EXPLAINed (ANALYZE, BUFFERS) as the server runs them: prepared, with
a custom and with a generic plan.
"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql as psql

from bench_env import CHILD_ENV, REPO
from bench_monitor_explain import plan_summary
from bench_monitor_http import summary
from synchrod.testing.stage import SYNCHROD

USER, PASSWORD = "admin", "bench-secret"


class Daemon:
    """`synchrod run -c CONFIG` as a subprocess; its JSON log read by a thread."""

    def __init__(self, config: Path, log_path: Path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([SYNCHROD, "run", "-c", str(config)], cwd=REPO, env=CHILD_ENV,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1)
        self.events: Counter = Counter()
        self.url: str | None = None
        self.tail: list[str] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {}
            with self.lock:
                self.tail = (self.tail + [line.rstrip()[:300]])[-30:]
                if isinstance(ev, dict):
                    self.events[ev.get("event")] += 1
                    if ev.get("event") == "monitor_listening":
                        self.url = ev.get("url")

    def wait(self, what: str, cond, timeout: float) -> None:
        """Returns once ``cond()`` holds; RuntimeError with the log's tail if the daemon exits
        or ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if cond():
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"waiting for {what}: daemon "
                                   + (f"exited {self.proc.returncode}" if self.proc.poll() is not None
                                      else f"still not there after {timeout:.0f} s")
                                   + "\n" + "\n".join(self.tail))
            time.sleep(0.1)

    def stop(self) -> int | None:
        """SIGTERM (a kill after 60 s); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(5)
        self.log.close()
        return self.proc.returncode


class Client:
    """One keep-alive HTTP connection to the monitor, with a Bearer token once logged in."""

    def __init__(self, url: str):
        parsed = urlsplit(url)
        self.conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        self.token: str | None = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[float, int, bytes]:
        """(milliseconds, status, body) of one request."""
        headers = {"Accept-Encoding": "identity"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return (time.perf_counter() - t0) * 1000, resp.status, raw

    def login(self) -> None:
        """Logs in as the benchmark's user; the token goes with every later request."""
        _, status, raw = self.request("POST", "/api/v1/login", {"username": USER, "password": PASSWORD})
        if status != 200:
            raise RuntimeError(f"login failed: {status} {raw[:200]!r}")
        self.token = json.loads(raw)["token"]

    def close(self) -> None:
        """Closes the connection."""
        self.conn.close()


def measure(client: Client, eps: list[tuple[str, str]], n: int, warmup: int) -> dict:
    """``warmup`` unmeasured rounds, then ``n`` rounds over ``eps`` (interleaved);
    returns label -> summary (p50, p95, p99, max, mean in ms, errors, bytes)."""
    times: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    sizes: dict[str, int] = {}
    for i in range(warmup + n):
        for label, path in eps:
            ms, status, body = client.request("GET", path)
            if i < warmup:
                continue
            errors[label] += status != 200
            times[label].append(ms)
            sizes[label] = len(body)
    return {label: summary(times[label], errors[label], sizes.get(label)) for label, _ in eps}


def check(client: Client, eps: list[tuple[str, str]]) -> tuple[list[str], dict]:
    """What each endpoint answers once: problems found, and a short description each."""
    notes, seen = [], {}
    for label, path in eps:
        _, status, raw = client.request("GET", path)
        if status != 200:
            notes.append(f"{label}: HTTP {status} {raw[:200]!r}")
            continue
        doc = json.loads(raw)
        if "recordings" in doc:
            recs = doc["recordings"]
            seen[label] = f"{len(recs)} recordings" + (f", first {recs[0]['sid']} {recs[0]['start_ts']}"
                                                       if recs else "")
            if not recs:
                notes.append(f"{label}: an empty page")
        else:
            plan = doc["plan"]
            seen[label] = (f"{len(doc['filesystems'])} filesystem(s), plan: {len(plan['next'])} next, "
                           f"held back {plan['held_back']}")
    return notes, seen


# --- EXPLAIN ------------------------------------------------------------------------------

def explain(dsn: str, statements: list[tuple[str, str, list]]) -> list[dict]:
    """Each (label, SQL, parameters) prepared and EXPLAIN (ANALYZE, BUFFERS)ed with a custom
    and with a generic plan (asyncpg prepares every statement; PostgreSQL may switch to the
    generic plan after five executions): ms, the plan's outline and its buffers."""
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, (label, text, params) in enumerate(statements):
            entry: dict = {"label": label}
            name = psql.Identifier(f"bench_s{i}")
            args = psql.SQL("({})").format(psql.SQL(", ").join(psql.Literal(p) for p in params))
            try:
                conn.execute(psql.SQL("PREPARE {} AS ").format(name) + psql.SQL(text))
                for mode in ("custom", "generic"):
                    conn.execute(f"SET plan_cache_mode = force_{mode}_plan")
                    conn.execute(psql.SQL("EXECUTE {}{}").format(name, args))   # warm
                    plan = conn.execute(psql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {}{}")
                                        .format(name, args)).fetchone()[0]
                    root = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
                    top = root["Plan"]
                    entry[mode] = {"ms": root["Execution Time"], "plan": plan_summary(top),
                                   "shared_hit": top.get("Shared Hit Blocks", 0),
                                   "shared_read": top.get("Shared Read Blocks", 0)}
                conn.execute(psql.SQL("DEALLOCATE {}").format(name))
            except psycopg.Error as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            out.append(entry)
        conn.execute("RESET plan_cache_mode")
    return out


def explain_lines(results: list[dict]) -> list[str]:
    """The EXPLAIN results as report lines."""
    lines = []
    for e in results:
        if "error" in e:
            lines.append(f"  {e['label']}: {e['error']}")
            continue
        lines.append(f"  {e['label']}:")
        for mode in ("custom", "generic"):
            m = e[mode]
            lines.append(f"    {mode:<7} {m['ms']:8.2f} ms  buffers hit {m['shared_hit']:,} read "
                         f"{m['shared_read']:,}  {m['plan'][:400]}")
    return lines


def iso(ts: dt.datetime) -> str:
    """An ISO 8601 timestamp for a query string (UTC, no microseconds, 'Z')."""
    return ts.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
