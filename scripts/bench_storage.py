#!/usr/bin/env python3
"""The storage benchmarks of ``make bench`` (SPEC §9), letters p and s:

    p  pruning speed: p_calls old synchronized target couples (one real
       1 KiB media file each, a few protected, younger ones beside them)
       removed by `synchrod purge --older-than N` (a subprocess, start-up
       included), then, each from a fresh load, by the automatic pruning
       path (storage.pruner.prune_round in this process, max_prune_calls
       10,000) by age and at critical; calls/s and files/s; >= 2,000 calls/s
    s  `GET /api/v1/storage` (its plan is a dry run of the next round) and
       pages of `GET /api/v1/recordings` (first page, a deep page by cursor,
       filtered by source, by deleted, by date) against a running daemon's
       monitor with s_couples couples on the replay database, the older
       half already pruned (the steady state of recording priority):
       p50/p95 over s_requests requests each; p95 < 50 ms. The statements
       behind them are EXPLAIN (ANALYZE, BUFFERS)ed.

Both run in bench.py's embedded PostgreSQL (fsync on) under .bench/p and
.bench/s, with ``make bench`` or alone: ``make bench-storage`` (that is
``make bench BENCH_ARGS='--only p,s'``; ``--quick`` for small sizes), or
``scripts/bench_storage.py [--quick]``. Their parts: bench_storage_data
(the loads), bench_storage_api (the daemon, the client, EXPLAIN).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse

import psycopg

from bench_env import BENCH, CHILD_ENV, REPO, Bench
from bench_storage_api import Client, Daemon, check, explain, explain_lines, iso, measure
from bench_storage_data import (RARE, files_below, load_target, say_loaded, storage_config,
                                write_media)
from synchrod.testing import stage
from synchrod.testing.stage import SYNCHROD, free_port, say

TARGETS = {"p": ">= 2,000 calls/s", "s": "p95 < 50 ms"}
PRUNE_AGE_DAYS = 20        # p: older than this is pruned (4/5 of the couples, spread over 100 days)
KEEP_DAYS = 180            # s: pruning age; every couple older is pruned already


# --- p: pruning speed -----------------------------------------------------------------------

def _stage_prune(b: Bench, n_old: int) -> tuple:
    """Fresh p databases and target path with n_old / 0.8 couples over the last 100 days
    (their files written and synced); returns (config, target, dsn, loaded)."""
    shutil.rmtree(BENCH / "p", ignore_errors=True)
    cfg, target = storage_config(b, "p", prune_after_days=PRUNE_AGE_DAYS)
    dsn = b.dsn("p_replay")
    now = dt.datetime.now(dt.timezone.utc)
    loaded = load_target(dsn, n_old * 5 // 4, root=target, start=now - dt.timedelta(days=100),
                         span=dt.timedelta(days=100) - dt.timedelta(hours=1))
    write_media(dsn)
    os.sync()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")      # the load's dirty pages written now, not while measured
    return cfg, target, dsn, loaded


def _pruned(dsn: str) -> tuple[int, int, int]:
    """(calls audited, files they had, protected couples older than PRUNE_AGE_DAYS)."""
    with psycopg.connect(dsn) as conn:
        calls, files = conn.execute("SELECT count(*), coalesce(sum(files), 0) FROM synchrod.deletions"
                                    ).fetchone()
        protected = conn.execute("SELECT count(*) FROM callrec.couples WHERE protected AND start_ts <"
                                 " now() - make_interval(days => %s)", (PRUNE_AGE_DAYS,)).fetchone()[0]
    return calls, files, protected


def _purge_cli(cfg, *args: str) -> tuple[float, str]:
    """`synchrod purge ARGS -c cfg` timed; (seconds, its last line)."""
    t0 = time.perf_counter()
    proc = subprocess.run([SYNCHROD, "purge", *args, "-c", str(cfg)], capture_output=True, text=True,
                          cwd=REPO, env=CHILD_ENV)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"synchrod purge failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, proc.stdout.strip().splitlines()[-1]


async def _rounds(cfg_path, dsn: str, target, critical: bool) -> tuple[float, int, int, dict]:
    """Automatic pruning rounds (prune_round) until one prunes nothing; at ``critical`` the
    target's filesystem is taken as critical with every staged byte to free. Returns
    (seconds, calls, files, calls per reason)."""
    from synchrod.config import from_dict
    from synchrod.core.levels import Level
    from synchrod.core.placement import FsUsage
    from synchrod.pg.connect import connect
    from synchrod.storage.levels import FilesystemLevel
    from synchrod.storage.pruner import prune_round

    config = from_dict(stage.read_config(cfg_path), str(cfg_path)).storage
    filesystems = []
    if critical:
        cap = 10 ** 12
        used = cap * config.thresholds.critical.exit // 100 + files_below(target) * 1024
        filesystems = [FilesystemLevel(1, str(target), (str(target),), FsUsage(1, cap, used),
                                       Level.CRITICAL)]
    conn = await connect(dsn)
    calls = files = 0
    reasons: dict[str, int] = {}
    position = None
    try:
        t0 = time.perf_counter()
        while True:
            r = await prune_round(conn, config, filesystems, daemon="bench", owned_roots=[str(target)],
                                  age_position=position)
            position = r.age_position or position
            if not r.lines:
                break
            calls += len(r.lines)
            files += sum(line.files for _, line in r.lines)
            for reason, n in r.calls.items():
                reasons[reason] = reasons.get(reason, 0) + n
        return time.perf_counter() - t0, calls, files, reasons
    finally:
        await conn.close()


def bench_prune(b: Bench, sz: dict, profile: bool = False) -> dict:
    """p: `synchrod purge --older-than` of ``p_calls`` old calls with their files, then the
    automatic rounds by age and at critical, and by age with the batches' plans fixed, each
    from a fresh load; returns calls/s and files/s of each (the CLI's with and without its
    start-up) and whether the target is met as synchrod is (``profile`` is not used)."""
    n = sz["p_calls"]
    out: dict = {"calls_staged": n * 5 // 4, "target": TARGETS["p"]}
    cfg, target, dsn, loaded = _stage_prune(b, n)
    say_loaded("p", loaded)
    startup, _ = _purge_cli(cfg, "--older-than", "36500")     # nothing that old: its fixed cost
    wall, last = _purge_cli(cfg, "--older-than", str(PRUNE_AGE_DAYS))
    calls, files, protected = _pruned(dsn)
    left = files_below(target)
    if calls < n * 0.99 or left != loaded["files"] - files:
        raise RuntimeError(f"[p] purge removed {calls} calls, {left} files left: {last}")
    out["cli"] = {"calls": calls, "files": files, "protected_skipped": protected, "wall_s": wall,
                  "startup_s": startup, "calls_per_s": calls / wall, "files_per_s": files / wall,
                  "calls_per_s_after_startup": calls / max(wall - startup, 1e-6), "summary": last}
    say(f"[p] synchrod purge --older-than {PRUNE_AGE_DAYS}: {calls:,} calls, {files:,} files in "
        f"{wall:.2f} s = {calls / wall:,.0f} calls/s (start-up {startup:.2f} s; "
        f"{calls / max(wall - startup, 1e-6):,.0f} calls/s without it); {last}")
    for kind in ("age", "critical"):
        cfg, target, dsn, loaded = _stage_prune(b, n)
        secs, calls, files, reasons = asyncio.run(_rounds(cfg, dsn, target, kind == "critical"))
        if files_below(target) != loaded["files"] - files or calls < n * 0.99:
            raise RuntimeError(f"[p] {kind} rounds removed {calls} calls, files left "
                               f"{files_below(target)}")
        out[kind] = {"calls": calls, "files": files, "seconds": secs, "reasons": reasons,
                     "calls_per_s": calls / secs, "files_per_s": files / secs}
        say(f"[p] prune_round ({kind}): {calls:,} calls, {files:,} files in {secs:.2f} s = "
            f"{calls / secs:,.0f} calls/s {reasons}")
    out["met"] = min(out[k]["calls_per_s"] for k in ("cli", "age", "critical")) >= 2000
    return out


# --- s: storage report and recordings pages ---------------------------------------------------

def _endpoints(dsn: str, n: int) -> list[tuple[str, str]]:
    """(label, path) of every endpoint measured."""
    from synchrod.replay.recordings import encode_cursor
    with psycopg.connect(dsn) as conn:
        deep_ts, deep_id = conn.execute("SELECT start_ts, id FROM callrec.couples WHERE id = %s",
                                        (n * 9 // 10,)).fetchone()
        mid_ts = conn.execute("SELECT start_ts FROM callrec.couples WHERE id = %s",
                              (n * 3 // 4,)).fetchone()[0]
    cursor = urllib.parse.quote(encode_cursor(deep_ts, deep_id))
    page = "/api/v1/recordings?limit=100"
    return [("storage", "/api/v1/storage"),
            ("recordings: first page", page),
            ("recordings: deep page (cursor at 90%)", f"{page}&cursor={cursor}"),
            ("recordings: source=rec03", f"{page}&source=rec03"),
            (f"recordings: source={RARE} (1 in 200)", f"{page}&source={RARE}"),
            ("recordings: deleted=false", f"{page}&deleted=false"),
            ("recordings: after=<75%>&source=rec03", f"{page}&after={iso(mid_ts)}&source=rec03")]


def _padded(text: str, params: list) -> list:
    """``params`` with NULL for the statement's further parameters (``$n`` it has beyond them)."""
    return params + [None] * (max(int(x) for x in re.findall(r"\$(\d+)", text)) - len(params))


def _statements(dsn: str, n: int) -> list[tuple[str, str, list]]:
    """The replay-database statements behind the endpoints, with their parameters, and the
    source filter rewritten (its fix) when the statement still has it."""
    from synchrod.core.clock import KEYSET_START
    from synchrod.replay.deletions import _CANDIDATES
    from synchrod.replay.recordings import _PAGE, _PAGE_FEW
    with psycopg.connect(dsn) as conn:
        deep = conn.execute("SELECT start_ts, id FROM callrec.couples WHERE id = %s",
                            (n * 9 // 10,)).fetchone()
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=KEEP_DAYS)
    start = list(KEYSET_START)
    page = [None, None, None, None, None]
    out = [("plan: age candidates (deletions._CANDIDATES)", _CANDIDATES,
            _padded(_CANDIDATES, [before, None, False, 500, *start, None])),
           ("recordings: first page", _PAGE, _padded(_PAGE, start + page + [100])),
           ("recordings: deep page", _PAGE, _padded(_PAGE, list(deep) + page + [100]))]
    for source, statement in (("rec03", _PAGE), (RARE, _PAGE_FEW)):   # as recordings.page picks
        params = _padded(statement, start + [None, None, source, None, None, 100])
        out.append((f"recordings: source={source}", statement, params))
    out.append(("recordings: deleted=false", _PAGE,
                _padded(_PAGE, start + [None, None, None, None, False, 100])))
    return out


def bench_api(b: Bench, sz: dict, profile: bool = False) -> dict:
    """s: ``s_couples`` couples on the replay database, a daemon with its monitor, then
    ``s_requests`` requests per endpoint (interleaved, one keep-alive connection, logged in);
    the statements EXPLAINed. Returns the percentiles and whether the target is met
    (``profile`` is not used)."""
    n, requests = sz["s_couples"], sz["s_requests"]
    port = free_port()
    monitor = stage.monitor_section(f"127.0.0.1:{port}", BENCH / "s" / "jwt.secret",
                                    {"admin": "bench-secret"})
    (BENCH / "s").mkdir(parents=True, exist_ok=True)
    cfg, target = storage_config(b, "s", prune_after_days=KEEP_DAYS, monitor=monitor)
    dsn = b.dsn("s_replay")
    now = dt.datetime.now(dt.timezone.utc)
    # 365 days up to an hour ago; the oldest 51 % (every couple older than KEEP_DAYS) pruned
    loaded = load_target(dsn, n, root=target, start=now - dt.timedelta(days=365),
                         span=dt.timedelta(days=365) - dt.timedelta(hours=1), pruned=n * 51 // 100)
    say_loaded("s", loaded)
    out: dict = {"couples": n, "pruned": loaded["pruned"], "requests": requests,
                 "target": TARGETS["s"]}
    daemon = Daemon(cfg, BENCH / "s" / "daemon.log")
    try:
        daemon.wait("the monitor", lambda: daemon.url is not None, 120)
        daemon.wait("a cycle", lambda: daemon.events["cycle"] >= 1, 120)
        client = Client(daemon.url)
        client.login()
        eps = _endpoints(dsn, n)
        notes, seen = check(client, eps)
        for label, what in seen.items():
            say(f"[s] {label}: {what}")
        for note in notes:
            say(f"[s] PROBLEM: {note}")
        out["checks"] = notes
        say(f"[s] measuring {requests} requests x {len(eps)} endpoints ...")
        out["http"] = measure(client, eps, requests, warmup=10)
        out["explain"] = explain(dsn, _statements(dsn, n))
        client.close()
    finally:
        out["daemon_exit"] = daemon.stop()
    for label, s in out["http"].items():
        say(f"[s] {label}: p50 {s['p50']:.1f} ms, p95 {s['p95']:.1f} ms, max {s['max']:.1f} ms "
            f"({s['bytes']:,} bytes, {s['errors']} errors)")
    for line in ["[s] EXPLAIN (ANALYZE, BUFFERS):"] + explain_lines(out["explain"]):
        say(line)
    out["worst_p95_ms"] = max(s["p95"] for s in out["http"].values())
    out["met"] = out["worst_p95_ms"] < 50 and not notes
    return out


# --- the figures in bench.py's table ------------------------------------------------------------

def table_rows(results: dict) -> list[tuple[str, str, str, bool]]:
    """bench.py's table rows of p and s: (bench, figure, target, met)."""
    rows = []
    if "p" in results:
        x = results["p"]
        rows.append(("p pruning", f"purge {x['cli']['calls_per_s']:,.0f} calls/s "
                                  f"({x['cli']['calls']:,} calls, {x['cli']['files_per_s']:,.0f} files/s, "
                                  f"{x['cli']['calls_per_s_after_startup']:,.0f}/s after start-up); "
                                  f"rounds: age {x['age']['calls_per_s']:,.0f}, critical "
                                  f"{x['critical']['calls_per_s']:,.0f} calls/s", x["target"],
                     x["met"]))
    if "s" in results:
        x = results["s"]
        worst = max(x["http"], key=lambda k: x["http"][k]["p95"])
        store = x["http"]["storage"]
        rows.append(("s storage API", f"{x['couples']:,} couples: storage p95 {store['p95']:.1f} ms; "
                                      f"worst {worst} p95 {x['http'][worst]['p95']:.1f} ms",
                     x["target"], x["met"]))
    return rows


if __name__ == "__main__":
    sys.argv[1:] = ["--only", "p,s"] + [a for a in sys.argv[1:] if a in ("--quick",)]
    import bench
    sys.exit(bench.main())
