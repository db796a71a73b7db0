"""Benchmark r of ``make bench``: archive export (SPEC §10).

    r  an archive run of ``r_calls`` files x 256 KiB (``synchrod archive run``:
       media and sidecars, verification, syncfs, manifest) against `cp -a` +
       `sync` of the same files, sidecars included (the tree a first run
       wrote, copied aside), on the same filesystem: alternated ``r_repeat``
       times, the page cache dropped before each side, medians compared (the
       media alone copied the same way is shown too); and the scheduler's
       idle tick with a short history and with ``r_history`` runs and
       manifest rows. The run is timed as its history row records it (what a
       scheduled run costs the daemon); the command's wall time, which adds
       the interpreter's start-up, the connection and the catalog, is shown
       beside it

Target: the run at most 1.5x cp+sync; the idle tick not growing with history.
"""
from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import time

import psycopg
import yaml

from bench_env import BENCH, CHILD_ENV, REPO, SYNCHROD, Bench, cp_sync, drop_caches
from synchrod.testing.stage import say

TARGET = "run <= 1.5x cp+sync; idle tick flat with history"


def _with_archive(cfg_path, dest) -> None:
    raw = yaml.safe_load(cfg_path.read_text())
    raw["archive"] = {"enabled": True, "timezone": "Europe/Prague", "tasks": [
        {"name": "bench", "destination": str(dest), "schedule": "daily", "at": "02:00",
         "lookback_days": 30, "min_age_minutes": 0}]}
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _archive_run(cfg) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([SYNCHROD, "archive", "run", "bench", "-c", str(cfg)], cwd=REPO,
                          env=CHILD_ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"archive run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    return wall, proc.stdout.strip().splitlines()[-1]


def _forget_runs(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE synchrod.archive_files, synchrod.archive_runs CASCADE")
        conn.execute("UPDATE callrec.couples SET archived = NULL, b_method = NULL, b_location = NULL")


def _fill_history(dsn: str, runs: int) -> None:
    """``runs`` old runs of the task and as many manifest rows of files that are gone."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO synchrod.archive_runs (task, slot_at, state, message, started_at,"
                     " finished_at) SELECT 'bench', now() - make_interval(hours => g), 'completed',"
                     " 'Task ''bench'' completed.', now() - make_interval(hours => g), now()"
                     " FROM generate_series(1, %s) g", (runs,))
        conn.execute("INSERT INTO synchrod.archive_files (task, cfile_id, cplid, sid, destination,"
                     " sha256, bytes, run_id) SELECT 'bench', 1000000000 + g, 1000000000 + g, 'x' || g,"
                     " '/gone/' || g, repeat('0', 64), 1, 1 FROM generate_series(1, %s) g", (runs,))
        conn.execute("ANALYZE synchrod.archive_runs")
        conn.execute("ANALYZE synchrod.archive_files")


def _tick_ms(cfg, ticks: int) -> float:
    """The median of ``ticks`` scheduler ticks with nothing due, in-process."""
    from synchrod.config import load
    from synchrod.core import clock
    from synchrod.daemon.archivewatch import ArchiveWatch
    from synchrod.sync.engine import Engine

    async def main() -> list[float]:
        engine = Engine(load(str(cfg)))
        await engine.open()
        try:
            watch = ArchiveWatch(engine, ownership=None)
            watch.active_since = clock.now()
            out = []
            for _ in range(ticks):
                t0 = time.perf_counter()
                await watch.tick(clock.now())
                out.append((time.perf_counter() - t0) * 1000)
            return out
        finally:
            await engine.close()
    return statistics.median(asyncio.run(main()))


def _timed_run(cfg, dest, dsn) -> tuple[float, float, str]:
    """A run into an empty destination with an empty manifest, the page cache
    dropped: the command's wall time (with the interpreter's start-up), the
    run's own duration as its history row records it, its summary."""
    shutil.rmtree(dest, ignore_errors=True)
    _forget_runs(dsn)
    drop_caches()
    wall, summary = _archive_run(cfg)
    with psycopg.connect(dsn) as conn:
        (own,) = conn.execute("SELECT extract(epoch FROM finished_at - started_at)::float8"
                              " FROM synchrod.archive_runs ORDER BY id DESC LIMIT 1").fetchone()
    return wall, own, summary


def bench_archive(b: Bench, sz: dict, profile: bool = False) -> dict:
    """r: the calls synchronized once and archived once (its tree, media and
    sidecars, kept aside as the baseline's source); then ``r_repeat`` times,
    alternated, `cp -a` + sync of that tree and an archive run (fresh
    destination and manifest, cold cache each time); then an archive run with
    nothing left and the idle tick with a short and a long history."""
    n, size, name = sz["r_calls"], sz["a_size"], "r"
    mount, target, cfg = b.prepare(name, n, size, f"calls x {size // 1024} KiB", copy_files=True,
                                   calls_per_period=500)
    b.drain(name, cfg, n, target, n * size)
    dest, cpdst, tree = BENCH / name / "archive", BENCH / name / "cp", BENCH / name / "tree"
    _with_archive(cfg, dest)
    dsn = b.dsn(f"{name}_replay")
    _timed_run(cfg, dest, dsn)
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(dest, tree)
    cold = drop_caches()
    cp_runs, ar_runs, cmd_runs, media_runs = [], [], [], []
    for r in range(sz["r_repeat"]):
        cp_runs.append(cp_sync(tree, cpdst, cold=True))
        shutil.rmtree(cpdst, ignore_errors=True)
        wall, own, summary = _timed_run(cfg, dest, dsn)
        cmd_runs.append(wall)
        ar_runs.append(own)
        media_runs.append(cp_sync(target, cpdst, cold=True))
        shutil.rmtree(cpdst, ignore_errors=True)
        say(f"[r] run {r + 1}: cp -a + sync of the tree {cp_runs[-1]:5.2f} s (the media alone "
            f"{media_runs[-1]:5.2f} s); archive run {own:5.2f} s, the command {wall:5.2f} s ({summary})")
    nothing, _ = _archive_run(cfg)
    short = _tick_ms(cfg, 20)
    _fill_history(dsn, sz["r_history"])
    long_ = _tick_ms(cfg, 20)
    nothing_long, _ = _archive_run(cfg)
    say(f"[r] idle tick {short:.2f} ms, with {sz['r_history']:,} runs and manifest rows {long_:.2f} ms; "
        f"a run with nothing to archive {nothing:.2f} s, then {nothing_long:.2f} s")
    cp_med, ar_med = statistics.median(cp_runs), statistics.median(ar_runs)
    ratio = ar_med / cp_med
    return {"files": n, "file_size": size, "bytes": n * size, "cold_cache": cold,
            "cp_sync_s": cp_runs, "cp_sync_media_only_s": media_runs, "archive_run_s": ar_runs,
            "archive_command_s": cmd_runs, "archive_command_median_s": statistics.median(cmd_runs),
            "command_ratio_vs_cp": statistics.median(cmd_runs) / cp_med,
            "cp_sync_median_s": cp_med, "cp_sync_media_only_median_s": statistics.median(media_runs),
            "archive_median_s": ar_med, "ratio_vs_cp": ratio,
            "ratio_vs_media_only": ar_med / statistics.median(media_runs),
            "files_per_s": n / ar_med,
            "idle_tick_ms": short, "idle_tick_ms_long_history": long_, "history": sz["r_history"],
            "nothing_to_do_s": nothing, "nothing_to_do_long_history_s": nothing_long,
            "target": TARGET, "met": ratio <= 1.5 and long_ <= max(2 * short, short + 5)}


def table_rows(results: dict) -> list[tuple[str, str, str, bool]]:
    """bench.py's table row of r."""
    if "r" not in results:
        return []
    x = results["r"]
    return [("r archive", f"run median {x['archive_median_s']:.2f} s vs cp+sync of media and sidecars "
                          f"{x['cp_sync_median_s']:.2f} s = {x['ratio_vs_cp']:.2f}x (the command "
                          f"{x['archive_command_median_s']:.2f} s, {x['command_ratio_vs_cp']:.2f}x; media "
                          f"alone {x['cp_sync_media_only_median_s']:.2f} s, {x['ratio_vs_media_only']:.2f}x; "
                          f"{x['files']:,} files, {x['files_per_s']:,.0f}/s); "
                          f"idle tick {x['idle_tick_ms']:.2f} ms, {x['idle_tick_ms_long_history']:.2f} ms "
                          f"with {x['history']:,} runs", x["target"], x["met"])]
