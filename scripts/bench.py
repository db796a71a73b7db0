#!/usr/bin/env python3
"""synchrod benchmark (``make bench``; ``make bench BENCH_ARGS='--quick --only a,c'``).

    a  copy mode: 2,000 calls x 256 KiB drained by `synchrod once --until-idle`
       against `cp -a SRC DST && sync` of the same files (same filesystem)
    b  link mode (copy_files: false): 20,000 calls, calls/s
    c  idle cycle: 1,000,000 couples all synchronized, ms per idle cycle
    d  peak memory draining 100,000 small calls (copy mode, 1,000 per cycle)

Everything runs against one embedded PostgreSQL started with fast=False (fsync
on: real durability) under .bench/ (removed at start). Recorder and replay
databases hold the real CallREC schema of the version ``--schema`` names:
``current`` (the default) or ``legacy`` (``make bench BENCH_ARGS='--schema
legacy'``), the older CallREC before the later migrations, whose replay
database keeps voice tags on cfiles, which synchrod cannot write there, so
``synchronize_voice_tags`` is off for it. The figures are printed as a table
and written to .bench/results.json: this run's under ``results`` (each figure
with its ``schema``), and under ``by_schema.<schema>.<full|quick>`` the latest
figure of every benchmark of that schema and size, carried over from run to
run, so both schemas' figures can be shown side by side and a ``--quick`` or
``--only`` run does not erase a full run's figures.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import psycopg
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from synchrod.testing import recorders, stage  # noqa: E402
from synchrod.testing.pgserver import PgServer  # noqa: E402
from synchrod.testing.stage import SYNCHROD, say  # noqa: E402

BENCH = REPO / ".bench"
# synchrod as installed: with its bytecode (an environment that forbids
# writing .pyc would make every run compile its modules again)
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
START = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=2)
MiB = 1 << 20

FULL = {"a_calls": 2000, "a_size": 256 * 1024, "a_repeat": 5, "b_calls": 20000, "c_couples": 1_000_000,
        "c_cycles": 30, "d_calls": 100_000, "repeat": 2}
QUICK = {"a_calls": 200, "a_size": 256 * 1024, "a_repeat": 1, "b_calls": 2000, "c_couples": 50_000,
         "c_cycles": 10, "d_calls": 5000, "repeat": 1}

TARGETS = {
    "a": "copy <= 1.5x cp+sync (aim 1.2x)",
    "b": ">= 5,000 calls/s",
    "c": "<= 10 ms per source at 1M couples",
    "d": "<= 150 MiB peak RSS for 100k calls",
}


# --- environment ---------------------------------------------------------------------

class Bench:
    def __init__(self, server: PgServer, schema: str = "current"):
        self.server = server
        self.schema = schema

    def dsn(self, db: str) -> str:
        return self.server.dsn(db)

    def fresh_db(self, name: str) -> str:
        return stage.clone_databases(self.server, [name])[name]

    def config(self, name: str, *, copy_files: bool, calls_per_period: int,
               target: Path, mount: Path) -> Path:
        return stage.write_config(BENCH / name / "synchrod.yaml", stage.config(
            synchro={"sleep_period": 10, "calls_per_period": calls_per_period,
                     "only_finished": True, "only_processed": True, "verify": "size",
                     # a legacy replay database keeps voice tags on cfiles: synchrod refuses
                     # to write them there (and the bulk calls have none)
                     "synchronize_voice_tags": self.schema != "legacy"},
            target_dsn=self.dsn(f"{name}_replay"), target_path=target,
            sources=[stage.source("rec", self.dsn(f"{name}_rec"), mount, copy_files=copy_files)]))

    def prepare(self, name: str, n: int, size: int, what: str, *, copy_files: bool,
                calls_per_period: int, **bulk) -> tuple[Path, Path, Path]:
        """A fresh recorder database ``<name>_rec`` loaded with ``n`` one-file
        calls of ``size`` bytes, empty mount and target directories, and the
        configuration for them; returns (mount, target, config path)."""
        base = BENCH / name
        mount, target = base / "mnt", base / "replay" / "calls"
        mount.mkdir(parents=True)
        target.mkdir(parents=True)
        self.fresh_db(f"{name}_rec")
        say(f"[{name}] loading {n:,} {what} ...")
        t0 = time.perf_counter()
        recorders.bulk_calls(self.dsn(f"{name}_rec"), mount, n, file_size=size, start=START, **bulk)
        say(f"[{name}] loaded in {time.perf_counter() - t0:.1f} s")
        cfg = self.config(name, copy_files=copy_files, calls_per_period=calls_per_period,
                          target=target, mount=mount)
        return mount, target, cfg

    def reset_run(self, name: str, target: Path | None) -> None:
        """A fresh replay database (with synchrod's schema) and all source calls unmarked."""
        self.fresh_db(f"{name}_replay")
        with psycopg.connect(self.dsn(f"{name}_rec"), autocommit=True) as conn:
            conn.execute("UPDATE callrec.couples SET synchronized = NULL WHERE synchronized IS NOT NULL")
            conn.execute("VACUUM ANALYZE callrec.couples")
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
        stage.init_db(BENCH / name / "synchrod.yaml", cwd=REPO, env=CHILD_ENV)

    def marks(self, name: str) -> dict[str | None, int]:
        with psycopg.connect(self.dsn(f"{name}_rec"), autocommit=True) as conn:
            return dict(conn.execute("SELECT synchronized, count(*) FROM callrec.couples GROUP BY 1").fetchall())

    def drain(self, name: str, cfg: Path, n: int, target: Path | None, total: int | None = None) -> dict:
        """A fresh run (:meth:`reset_run`; a sync first when ``target`` is
        given), then :func:`timed_synchrod`; raises unless all ``n`` calls are
        marked S (and the target holds ``total`` bytes, if given)."""
        self.reset_run(name, target)
        if target is not None:
            sync()
        res = timed_synchrod(cfg)
        marks = self.marks(name)
        if marks.get("S") != n or (total is not None and du_bytes(target) != total):
            raise RuntimeError(f"[{name}] synchrod did not synchronize everything: marks {marks}")
        return res


def sync() -> None:
    os.sync()


def timed_synchrod(cfg: Path) -> dict:
    """`synchrod once --until-idle` as a subprocess: wall time, peak RSS, summary."""
    out = BENCH / "time.txt"
    cmd = [SYNCHROD, "once", "--until-idle", "-c", str(cfg)]
    if GNU_TIME:
        cmd = [GNU_TIME, "-v", "-o", str(out)] + cmd
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=CHILD_ENV)
    wall = time.perf_counter() - t0
    if GNU_TIME:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.read_text())
        rss_kib = int(m.group(1)) if m else None
    else:  # the largest of all children waited for so far: an upper bound
        rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        raise RuntimeError(f"synchrod once failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
    cycle_seconds = cycles = None
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "rec":
            cycles, cycle_seconds = int(parts[2]), float(parts[-1])
    return {"wall_s": wall, "rss_mib": rss_kib / 1024 if rss_kib else None,
            "cycles": cycles, "cycle_seconds": cycle_seconds, "stdout": proc.stdout.strip()}


def du_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@contextlib.asynccontextmanager
async def engine_on(cfg_path: Path):
    """synchrod's engine in this process on the configuration ``cfg_path``:
    opened and its sources verified; closed on leaving."""
    from synchrod.config import from_dict
    from synchrod.sync.engine import Engine

    engine = Engine(from_dict(yaml.safe_load(cfg_path.read_text()), str(cfg_path)))
    await engine.open()
    await engine.verify_sources()
    try:
        yield engine
    finally:
        await engine.close()


# --- a: copy mode ------------------------------------------------------------------------

def bench_copy(b: Bench, sz: dict, profile: bool = False) -> dict:
    n, size = sz["a_calls"], sz["a_size"]
    name = "a"
    mount, target, cfg = b.prepare(name, n, size, f"calls x {size // 1024} KiB", copy_files=True,
                                   calls_per_period=500)
    cpdst = target.parent / "cp"
    total = n * size

    cp_runs, sd_runs = [], []
    time.sleep(2)  # let the disk settle after the load
    for r in range(sz["a_repeat"]):
        # cp -a + sync, after a sync, fresh destination
        shutil.rmtree(cpdst, ignore_errors=True)
        sync()
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", str(mount), str(cpdst)], check=True)
        sync()
        cp_runs.append(time.perf_counter() - t0)
        say(f"[a] run {r + 1}: cp -a + sync      {cp_runs[-1]:7.2f} s")
        # synchrod, after a sync, fresh replay database and target path
        res = b.drain(name, cfg, n, target, total)
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
            "ratio_vs_cp": ratio, "ratio_in_cycles_vs_cp": best["cycle_seconds"] / cp_best,
            "target": TARGETS["a"], "met": ratio <= 1.5}


# --- b: link mode ---------------------------------------------------------------------------

def bench_link(b: Bench, sz: dict, profile: bool = False) -> dict:
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
    if profile:
        b.reset_run(name, None)
        profile_drain(cfg, "b")
    return {"calls": n, "calls_per_period": 1000, "synchrod_s": [r["wall_s"] for r in runs],
            "synchrod_cycle_s": [r["cycle_seconds"] for r in runs],
            "calls_per_s": rate, "calls_per_s_in_cycles": n / best["cycle_seconds"],
            "peak_rss_mib": max(r["rss_mib"] or 0 for r in runs),
            "target": TARGETS["b"], "met": rate >= 5000}


# --- c: idle cycle ------------------------------------------------------------------------------

def bench_idle(b: Bench, sz: dict, profile: bool = False) -> dict:
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
    n = sz["d_calls"]
    name = "d"
    _, target, cfg = b.prepare(name, n, 1024, "calls x 1 KiB", copy_files=True, calls_per_period=1000)
    res = b.drain(name, cfg, n, target)
    say(f"[d] synchrod once {res['wall_s']:.1f} s (cycles {res['cycles']}), peak RSS {res['rss_mib']:.1f} MiB")
    return {"calls": n, "calls_per_period": 1000, "synchrod_s": res["wall_s"],
            "calls_per_s": n / res["wall_s"], "peak_rss_mib": res["rss_mib"],
            "rss_source": "GNU time -v" if GNU_TIME else "getrusage(RUSAGE_CHILDREN)",
            "target": TARGETS["d"], "met": (res["rss_mib"] or 1e9) <= 150}


# --- profile: where the time of a drain goes ---------------------------------------------------

def _sql_key(args) -> str:
    """A statement's first words, comments left out."""
    text = " ".join(line for line in args[1].splitlines() if not line.lstrip().startswith("--"))
    return "SQL " + " ".join(text.split()[:7])


def profile_drain(cfg_path: Path, label: str) -> None:
    """Drains in-process with the cycle's phases and every SQL statement timed.

    Phase times are wall times on the event loop; functions run in the media
    pool (marked [pool]) are summed over its threads, so they exceed the wall
    time when the pool runs in parallel (or waits for the GIL).
    """
    import asyncpg.connection as apc
    from collections import defaultdict
    import functools

    from synchrod import logs, recorder
    from synchrod.fs import copying, sourcefiles
    from synchrod.replay.writes import BatchWriter
    from synchrod.sync import cycle, finish, transfer
    from synchrod.replay import journal
    from synchrod.sync.rounds import run_once

    spent, calls = defaultdict(float), defaultdict(int)
    saved = []

    def patch(owner, attr, key):
        orig = getattr(owner, attr, None)
        if orig is None:  # synchrod changed: say so rather than fail the benchmark
            say(f"[{label}] profile: {owner.__name__}.{attr} not found, not timed")
            return
        saved.append((owner, attr, orig))
        if asyncio.iscoroutinefunction(orig):
            @functools.wraps(orig)
            async def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return await orig(*a, **k)
                finally:
                    spent[key(a)] += time.perf_counter() - t
                    calls[key(a)] += 1
        else:
            @functools.wraps(orig)
            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return orig(*a, **k)
                finally:
                    spent[key(a)] += time.perf_counter() - t
                    calls[key(a)] += 1
        setattr(owner, attr, wrapper)

    # each where the caller looks it up
    for owner, attr in [(cycle, "repair"), (recorder.Recorder, "load_batch"), (cycle, "transfer"),
                        (journal, "record_intents"), (BatchWriter, "commit"), (recorder.Recorder, "mark"),
                        (finish.ChunkFinisher, "finish"), (finish, "remove_unused"),
                        (cycle, "sync_speech_tags")]:
        patch(owner, attr, lambda a, n=f"{owner.__name__.split('.')[-1]}.{attr}": n)
    for owner, attr in [(transfer, "_deliver_files"), (copying, "copy_to"), (sourcefiles, "locate"),
                        (copying, "syncfs")]:
        patch(owner, attr, lambda a, n=f"[pool] {owner.__name__.split('.')[-1]}.{attr}": n)
    for meth in ("execute", "executemany", "fetch", "fetchval", "fetchrow"):
        patch(apc.Connection, meth, _sql_key)
    # COPY into callrec.couples/cfiles (CallREC's row triggers fire there)
    patch(apc.Connection, "copy_records_to_table", lambda a: f"SQL COPY {a[1]} (copy_records_to_table)")
    logs.setup("warning", "json")

    async def go():
        async with engine_on(cfg_path) as engine:
            t = time.perf_counter()
            totals = await run_once(engine, None, True, False)
            return time.perf_counter() - t, totals
    try:
        wall, totals = asyncio.run(go())
    finally:
        for owner, attr, orig in reversed(saved):
            setattr(owner, attr, orig)
    t = totals["rec"]
    say(f"[{label}] profile: in-process drain of {t.taken} calls in {t.cycles} cycles: {wall:.2f} s")
    for k in sorted((k for k in spent if not k.startswith("SQL")), key=spent.get, reverse=True):
        say(f"[{label}]   {k:<34} {spent[k]:8.3f} s  x{calls[k]}")
    say(f"[{label}]   top SQL statements (wall, count):")
    for k in sorted((k for k in spent if k.startswith("SQL")), key=spent.get, reverse=True)[:12]:
        say(f"[{label}]   {spent[k]:8.3f} s  x{calls[k]:<4} {k[4:]}")


# --- main ----------------------------------------------------------------------------------------------

def previous_by_schema() -> dict:
    """schema -> full|quick -> {"results": bench -> figures, "table": lines}
    from an earlier results.json (a file from before --schema has none: the
    schema of its figures is unknown, they are not kept)."""
    try:
        old = json.loads((BENCH / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    by_schema = old.get("by_schema") if isinstance(old, dict) else None
    if not isinstance(by_schema, dict):
        return {}
    return {schema: {size: runs[size] for size in ("full", "quick")
                     if isinstance(runs.get(size), dict) and isinstance(runs[size].get("results"), dict)}
            for schema, runs in by_schema.items() if schema in recorders.VERSIONS and isinstance(runs, dict)}


def table(results: dict, schema: str) -> list[str]:
    rows = [(f"bench ({schema})", "figure", "target", "met")]
    if "a" in results:
        a = results["a"]
        rows.append(("a copy", f"{a['best_synchrod_s']:.2f} s vs cp+sync {a['best_cp_sync_s']:.2f} s = "
                               f"{a['ratio_vs_cp']:.2f}x (medians {a['synchrod_median_s']:.2f}/"
                               f"{a['cp_sync_median_s']:.2f} s = "
                               f"{a['synchrod_median_s'] / a['cp_sync_median_s']:.2f}x); "
                               f"{a['calls_per_s']:.0f} calls/s, "
                               f"{a['mib_per_s']:.0f} MiB/s, RSS {a['peak_rss_mib']:.0f} MiB",
                     a["target"], a["met"]))
    if "b" in results:
        x = results["b"]
        rows.append(("b link", f"{x['calls_per_s']:,.0f} calls/s ({x['calls']:,} calls, "
                               f"{x['calls_per_s_in_cycles']:,.0f}/s inside cycles)", x["target"], x["met"]))
    if "c" in results:
        x = results["c"]
        rows.append(("c idle", f"{x['median_ms']:.2f} ms median (p90 {x['p90_ms']:.2f}) at "
                               f"{x['couples']:,} couples", x["target"], x["met"]))
    if "d" in results:
        x = results["d"]
        rows.append(("d memory", f"{x['peak_rss_mib']:.1f} MiB peak RSS ({x['calls']:,} calls, "
                                 f"{x['calls_per_s']:,.0f} calls/s)", x["target"], x["met"]))
    w = [max(len(str(r[i])) for r in rows) for i in range(3)]
    out = []
    for r in rows:
        met = r[3] if isinstance(r[3], str) else ("yes" if r[3] else "NO")
        out.append(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {met}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a sanity run, not figures")
    ap.add_argument("--only", default="a,b,c,d", help="comma-separated subset of a,b,c,d")
    ap.add_argument("--schema", choices=recorders.VERSIONS, default="current",
                    help="CallREC version of the recorder and replay databases (default current)")
    ap.add_argument("--profile", action="store_true",
                    help="after a and b, drain once more in-process with every phase and SQL "
                         "statement timed, and print where the time goes")
    args = ap.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    if set(only) - set("abcd"):
        ap.error(f"--only takes a,b,c,d, not {args.only!r}")
    sz = QUICK if args.quick else FULL

    by_schema = previous_by_schema()
    work = stage.Stage(BENCH)
    work.clear("immediate")
    if by_schema:  # the figures of earlier runs survive a run that fails
        (BENCH / "results.json").write_text(json.dumps({"by_schema": by_schema}, indent=2))
    server = work.start(fast=False)
    say(f"embedded PostgreSQL (fsync on) in {server.root}; sizes: {'quick' if args.quick else 'full'}; "
        f"CallREC schema: {args.schema}")
    results: dict = {}
    t_all = time.perf_counter()
    try:
        stage.callrec_template(server, version=args.schema)
        b = Bench(server, args.schema)
        steps = {"a": bench_copy, "b": bench_link, "c": bench_idle, "d": bench_memory}
        for key in only:
            t0 = time.perf_counter()
            results[key] = {"schema": args.schema, **steps[key](b, sz, args.profile)}
            results[key]["bench_seconds"] = time.perf_counter() - t0
            shutil.rmtree(BENCH / key, ignore_errors=True)  # media of a finished bench
    finally:
        work.destroy(server)
    lines = table(results, args.schema)
    say()
    for line in lines:
        say(line)
    meta = {"schema": args.schema, "quick": args.quick, "sizes": sz, "cpus": os.cpu_count(),
            "kernel": os.uname().release,
            "rss_source": "GNU time -v" if GNU_TIME else "getrusage(RUSAGE_CHILDREN)",
            "total_seconds": time.perf_counter() - t_all,
            "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    size = "quick" if args.quick else "full"
    kept = by_schema.setdefault(args.schema, {}).setdefault(size, {"results": {}})
    for key, figures in results.items():
        kept["results"][key] = {**figures, "when": meta["when"], "cpus": meta["cpus"]}
    kept["results"] = dict(sorted(kept["results"].items()))
    kept["table"] = table(kept["results"], args.schema)
    (BENCH / "results.json").write_text(json.dumps({"meta": meta, "results": results, "table": lines,
                                                    "by_schema": by_schema}, indent=2))
    say(f"\nresults written to {(BENCH / 'results.json').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
