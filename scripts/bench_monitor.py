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

Its parts live beside it in scripts/: bench_monitor_env (places and
limits), bench_monitor_data (the databases, the history, the feeder),
bench_monitor_http (the daemon, the client, the measurements),
bench_monitor_browser (the Chromium loads, the baseline page),
bench_monitor_explain (EXPLAIN and the slow statements); this script
runs them and reports.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import urllib.parse
from collections import defaultdict
from pathlib import Path

from bench_monitor_browser import measure_browser
from bench_monitor_data import Feeder, build_databases, fill_history, write_config
from bench_monitor_env import (CONFIG, GROUP_SIZE, LIMIT_MS, PG_ROOT, REPO, SLOW_STATEMENT_MS,
                               STAGE, WORK)
from bench_monitor_explain import explain, log_slow_statements, slow_statements
from bench_monitor_http import (Client, Daemon, check_responses, endpoints, measure_concurrent,
                                measure_sequential)
from synchrod.testing import stage
from synchrod.testing.stage import free_port, say


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or '?'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


# --- report -------------------------------------------------------------------------------------

def report(res: dict) -> list[str]:
    """The figures of ``res`` as an aligned table: each endpoint's percentiles (the status and
    the page judged against LIMIT_MS), the concurrent status, the browser's timings and the
    baseline page's, then Chromium's counters per load."""
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
    """Builds the databases and history, starts the daemon, measures while the feeder records,
    stops everything and prints the report (and writes --json); returns 0 once it has
    measured, whatever the figures, 1 if the set-up or the daemon failed."""
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
