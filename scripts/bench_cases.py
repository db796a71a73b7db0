"""The four benchmarks, a to d: their sizes (FULL, QUICK) and targets, and
each one's loading, measuring and figures, returned as a dict with the
target and whether it was met.
"""
from __future__ import annotations

import asyncio
import shutil
import statistics
import time

import psycopg

from bench_env import GNU_TIME, MiB, Bench, cp_sync, engine_on, sync, timed_synchrod
from bench_profile import profile_drain
from synchrod.testing.stage import say


FULL = {"a_calls": 2000, "a_size": 256 * 1024, "a_repeat": 5, "b_calls": 20000, "c_couples": 1_000_000,
        "c_cycles": 30, "d_calls": 100_000, "repeat": 2,
        "p_calls": 20000, "s_couples": 1_000_000, "s_requests": 200,   # p, s: bench_storage
        "r_calls": 2000, "r_repeat": 5, "r_history": 1_000_000,        # r: bench_archive
        "n_calls": 500, "n_repeat": 3}                                 # n: bench_nfs
QUICK = {"a_calls": 200, "a_size": 256 * 1024, "a_repeat": 1, "b_calls": 2000, "c_couples": 50_000,
         "c_cycles": 10, "d_calls": 5000, "repeat": 1,
         "p_calls": 2000, "s_couples": 100_000, "s_requests": 30,
         "r_calls": 200, "r_repeat": 1, "r_history": 10_000,
         "n_calls": 100, "n_repeat": 1}

TARGETS = {
    "a": "copy: median <= 1.2x cp+sync, cold cache",
    "b": ">= 5,000 calls/s and <= 3x the COPY floor",
    "c": "<= 10 ms per source at 1M couples",
    "d": "<= 150 MiB peak RSS for 100k calls",
}


# --- a: copy mode ------------------------------------------------------------------------

def bench_copy(b: Bench, sz: dict, profile: bool = False) -> dict:
    """a: ``a_repeat`` times `cp -a` + sync and synchrod's copy-mode drain of the same calls,
    each from a fresh start, then the fixed start-up cost of a `synchrod once`; returns the
    times (best and median), the ratio to cp+sync, the rates and peak RSS, and whether the
    target is met. With ``profile``, one profiled drain more."""
    n, size = sz["a_calls"], sz["a_size"]
    name = "a"
    mount, target, cfg = b.prepare(name, n, size, f"calls x {size // 1024} KiB", copy_files=True,
                                   calls_per_period=500)
    cpdst = target.parent / "cp"
    total = n * size

    cp_runs, sd_runs = [], []
    time.sleep(2)  # let the disk settle after the load
    for r in range(sz["a_repeat"]):
        cp_runs.append(cp_sync(mount, cpdst, cold=True))
        say(f"[a] run {r + 1}: cp -a + sync      {cp_runs[-1]:7.2f} s")
        # synchrod, fresh replay database and target path, the page cache dropped as for cp
        res = b.drain(name, cfg, n, target, total, cold=True)
        sd_runs.append(res)
        say(f"[a] run {r + 1}: synchrod once      {res['wall_s']:7.2f} s  (cycles {res['cycles']}, "
            f"in cycles {res['cycle_seconds']:.2f} s, peak RSS {res['rss_mib']:.1f} MiB)")
    shutil.rmtree(cpdst, ignore_errors=True)
    # fixed cost of a `synchrod once` with nothing left to do: interpreter, imports,
    # connections, schema and index checks, one idle cycle
    idle = min(timed_synchrod(cfg)["wall_s"] for _ in range(3))
    say(f"[a] synchrod once with nothing to do: {idle:.2f} s (fixed start-up cost)")
    best = min(sd_runs, key=lambda r: r["wall_s"])
    cp_best = min(cp_runs)
    ratio = best["wall_s"] / cp_best
    median_ratio = statistics.median(r["wall_s"] for r in sd_runs) / statistics.median(cp_runs)
    if profile:
        b.reset_run(name, target)
        sync()
        profile_drain(cfg, "a")
    return {"startup_s": idle, "cp_sync_median_s": statistics.median(cp_runs),
            "synchrod_median_s": statistics.median(r["wall_s"] for r in sd_runs),
            "calls": n, "file_size": size, "bytes": total,
            "cp_sync_s": cp_runs, "synchrod_s": [r["wall_s"] for r in sd_runs],
            "synchrod_cycle_s": [r["cycle_seconds"] for r in sd_runs],
            "best_cp_sync_s": cp_best, "best_synchrod_s": best["wall_s"],
            "calls_per_s": n / best["wall_s"], "mib_per_s": total / MiB / best["wall_s"],
            "cp_mib_per_s": total / MiB / cp_best,
            "peak_rss_mib": max(r["rss_mib"] or 0 for r in sd_runs),
            "ratio_vs_cp": ratio, "median_ratio_vs_cp": median_ratio,
            "ratio_in_cycles_vs_cp": best["cycle_seconds"] / cp_best,
            "target": TARGETS["a"], "met": median_ratio <= 1.2}


# --- b: link mode ---------------------------------------------------------------------------

def bench_link(b: Bench, sz: dict, profile: bool = False) -> dict:
    """b: ``repeat`` link-mode drains of ``b_calls`` calls; returns calls/s (wall and inside
    cycles), peak RSS, and whether the target is met. With ``profile``, one profiled drain
    more."""
    n = sz["b_calls"]
    name = "b"
    _, _, cfg = b.prepare(name, n, 1024, "calls x 1 KiB", copy_files=False, calls_per_period=1000)
    runs = []
    for r in range(sz["repeat"]):
        res = b.drain(name, cfg, n, None)
        runs.append(res)
        say(f"[b] run {r + 1}: synchrod once      {res['wall_s']:7.2f} s  (cycles {res['cycles']}, "
            f"in cycles {res['cycle_seconds']:.2f} s, peak RSS {res['rss_mib']:.1f} MiB)")
    best = min(runs, key=lambda r: r["wall_s"])
    rate = n / best["wall_s"]
    floors = [link_floor(b, name) for _ in range(sz["repeat"])]
    say(f"[b] the floor (COPY of the calls, couples and files into an empty replay database, "
        f"one set-based mark): {', '.join(f'{f:.2f} s' for f in floors)}")
    if profile:
        b.reset_run(name, None)
        profile_drain(cfg, "b")
    ratio = best["wall_s"] / min(floors)
    return {"calls": n, "calls_per_period": 1000, "synchrod_s": [r["wall_s"] for r in runs],
            "synchrod_cycle_s": [r["cycle_seconds"] for r in runs],
            "calls_per_s": rate, "calls_per_s_in_cycles": n / best["cycle_seconds"],
            "floor_s": floors, "ratio_vs_floor": ratio,
            "peak_rss_mib": max(r["rss_mib"] or 0 for r in runs),
            "target": TARGETS["b"], "met": rate >= 5000 and ratio <= 3}


_FLOOR_TABLES = ("calls", "couples", "cfiles")


def link_floor(b: Bench, name: str) -> float:
    """Seconds of the least a link-mode drain must do: the recorder's calls,
    couples and files copied with COPY into an empty replay database (its
    triggers on, as synchrod's writes meet them), committed, then every
    couple marked in one statement on the recorder; the marks are undone after."""
    rec, replay = b.dsn(f"{name}_rec"), b.fresh_db(f"{name}_floor")
    with psycopg.connect(rec) as src, psycopg.connect(replay) as dst:
        t0 = time.perf_counter()
        with dst.transaction():
            for table in _FLOOR_TABLES:
                cols = [r[0] for r in src.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema ="
                    " 'callrec' AND table_name = %s AND is_generated = 'NEVER'"
                    " ORDER BY ordinal_position", (table,))]
                names = ", ".join(f'"{c}"' for c in cols)
                with src.cursor().copy(f"COPY callrec.{table} ({names}) TO STDOUT") as out, \
                        dst.cursor().copy(f"COPY callrec.{table} ({names}) FROM STDIN") as into:
                    for data in out:
                        into.write(data)
        with src.transaction():
            src.execute("UPDATE callrec.couples SET synchronized = 'S' WHERE synchronized IS NULL")
        seconds = time.perf_counter() - t0
        with src.transaction():
            src.execute("UPDATE callrec.couples SET synchronized = NULL")
    return seconds


# --- c: idle cycle ------------------------------------------------------------------------------

def bench_idle(b: Bench, sz: dict, profile: bool = False) -> dict:
    """c: in-process idle cycles over ``c_couples`` couples, all synchronized: the first cycle,
    then ``c_cycles`` run_cycle and as many run_round; returns ms per cycle (median, p90,
    min) and per round, and whether the target is met (``profile`` is not used)."""
    from synchrod import logs
    from synchrod.sync.cycle import run_cycle
    from synchrod.sync.rounds import run_round

    n, cycles = sz["c_couples"], sz["c_cycles"]
    name = "c"
    _, _, cfg_path = b.prepare(name, n, 1024, "synchronized couples (no files)", copy_files=True,
                               calls_per_period=200, write_files=False, synchronized="S")
    b.fresh_db(f"{name}_replay")
    with psycopg.connect(b.dsn(f"{name}_rec"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE callrec.couples")
    logs.setup("warning", "json")

    async def go():
        async with engine_on(cfg_path) as engine:
            runtime = engine.sources["rec"]
            t = time.perf_counter()
            r = await run_cycle(engine, runtime)
            first = time.perf_counter() - t
            assert r.state == "idle", (r.state, r.error)
            per_cycle, per_round = [], []
            for _ in range(cycles):
                t = time.perf_counter()
                r = await run_cycle(engine, runtime)
                per_cycle.append(time.perf_counter() - t)
                assert r.state == "idle", (r.state, r.error)
            for _ in range(cycles):
                t = time.perf_counter()
                await run_round(engine)
                per_round.append(time.perf_counter() - t)
            return first, per_cycle, per_round

    first, per_cycle, per_round = asyncio.run(go())
    med = statistics.median(per_cycle) * 1000
    say(f"[c] first cycle {first * 1000:.1f} ms (creates the pending index), then median "
        f"{med:.2f} ms per run_cycle, {statistics.median(per_round) * 1000:.2f} ms per run_round")
    return {"couples": n, "cycles": cycles, "first_cycle_ms": first * 1000,
            "median_ms": med, "p90_ms": sorted(per_cycle)[int(0.9 * (len(per_cycle) - 1))] * 1000,
            "min_ms": min(per_cycle) * 1000, "round_median_ms": statistics.median(per_round) * 1000,
            "target": TARGETS["c"], "met": med <= 10}


# --- d: peak memory ----------------------------------------------------------------------------------

def bench_memory(b: Bench, sz: dict, profile: bool = False) -> dict:
    """d: one copy-mode drain of ``d_calls`` small calls; returns its peak RSS and rate, and
    whether the target is met (``profile`` is not used)."""
    n = sz["d_calls"]
    name = "d"
    _, target, cfg = b.prepare(name, n, 1024, "calls x 1 KiB", copy_files=True, calls_per_period=1000)
    res = b.drain(name, cfg, n, target)
    say(f"[d] synchrod once {res['wall_s']:.1f} s (cycles {res['cycles']}), peak RSS {res['rss_mib']:.1f} MiB")
    return {"calls": n, "calls_per_period": 1000, "synchrod_s": res["wall_s"],
            "calls_per_s": n / res["wall_s"], "peak_rss_mib": res["rss_mib"],
            "rss_source": "GNU time -v" if GNU_TIME else "getrusage(RUSAGE_CHILDREN)",
            "target": TARGETS["d"], "met": (res["rss_mib"] or 1e9) <= 150}
