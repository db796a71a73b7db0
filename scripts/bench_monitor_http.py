"""The daemon under measurement and the HTTP side of the benchmark:
`synchrod run` as a subprocess with its log followed, a keep-alive
client, the endpoints measured and the check of what they answer, and the
sequential and concurrent measurements with their summaries.
"""
from __future__ import annotations

import http.client
import json
import signal
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections import Counter, defaultdict

from bench_monitor_env import CONFIG, REPO, WORK, pct
from synchrod.testing.stage import SYNCHROD, say


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
        """Returns once ``cond()`` holds (checked under the lock); raises RuntimeError with the
        log's last lines if the daemon exits or ``timeout`` seconds pass first."""
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
        """SIGTERM (killed after 90 s), then the log read to its end; returns the exit status."""
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
        """GET ``path``: (milliseconds, status, body); reconnects and tries once more if the
        server had closed the connection."""
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
        """Closes the connection."""
        self.conn.close()


def endpoints(hist: dict, first: str) -> list[tuple[str, str]]:
    """(label, path) of every endpoint measured, in the order asked: the status, the page,
    history pages of ``hist`` (newest, middle, near the oldest, of a source, of ``first``,
    of the quiet source), one run, the metrics, the jobs."""
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
    """After ``warmup`` unmeasured rounds, ``n`` rounds over ``eps`` (interleaved) on
    ``client``; returns label -> summary."""
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
    """``threads`` clients, one connection each, GET ``path`` ``n`` times at once (after 5
    unmeasured); returns the summary of all their times, with req_per_s."""
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
    """Percentiles (p50, p95, p99), max and mean of ``times`` in ms, with ``errors`` and the
    body ``size``."""
    return {"n": len(times), "p50": pct(times, 50), "p95": pct(times, 95), "p99": pct(times, 99),
            "max": max(times), "mean": statistics.fmean(times), "errors": errors, "bytes": size}
