#!/usr/bin/env python3
"""synchrod benchmark (``make bench``; ``make bench BENCH_ARGS='--quick --only a,c'``).

    a  copy mode: 2,000 calls x 256 KiB drained by `synchrod once --until-idle`
       against `cp -a SRC DST && sync` of the same files (same filesystem)
    b  link mode (copy_files: false): 20,000 calls, calls/s
    c  idle cycle: 1,000,000 couples all synchronized, ms per idle cycle
    d  peak memory draining 100,000 small calls (copy mode, 1,000 per cycle)
    p  pruning: 20,000 old calls with their files removed by `synchrod purge`
       and by the automatic rounds (age, critical), calls/s (bench_storage)
    s  GET /api/v1/storage and /api/v1/recordings pages at 1,000,000
       couples, p50/p95 ms (bench_storage)
    r  archive: a run of 2,000 files x 256 KiB (sidecars, verification,
       manifest) against `cp -a` + `sync`; the scheduler's idle tick with a
       long history (bench_archive)

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

Its parts live beside it in scripts/: bench_env (.bench/, the Bench
helper, `synchrod once` timed), bench_cases (a to d, their sizes and
targets), bench_storage (p and s), bench_archive (r), bench_nfs (n), bench_profile (``--profile``); this
script runs them and keeps the results.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time

from bench_cases import FULL, QUICK, bench_copy, bench_idle, bench_link, bench_memory
from bench_env import BENCH, GNU_TIME, REPO, Bench
from bench_archive import bench_archive
from bench_archive import table_rows as archive_rows
from bench_nfs import bench_nfs
from bench_nfs import table_rows as nfs_rows
from bench_storage import bench_api, bench_prune, table_rows
from synchrod.testing import recorders, stage
from synchrod.testing.stage import say


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
    """The figures of ``results`` (run on ``schema``) as aligned lines: a heading, then one row
    per benchmark a to d, p and s present with its figure, target and whether it was met."""
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
        floor = f"; {x['ratio_vs_floor']:.2f}x the COPY floor {min(x['floor_s']):.2f} s" \
            if "floor_s" in x else ""
        rows.append(("b link", f"{x['calls_per_s']:,.0f} calls/s ({x['calls']:,} calls, "
                               f"{x['calls_per_s_in_cycles']:,.0f}/s inside cycles{floor})",
                     x["target"], x["met"]))
    if "c" in results:
        x = results["c"]
        rows.append(("c idle", f"{x['median_ms']:.2f} ms median (p90 {x['p90_ms']:.2f}) at "
                               f"{x['couples']:,} couples", x["target"], x["met"]))
    if "d" in results:
        x = results["d"]
        rows.append(("d memory", f"{x['peak_rss_mib']:.1f} MiB peak RSS ({x['calls']:,} calls, "
                                 f"{x['calls_per_s']:,.0f} calls/s)", x["target"], x["met"]))
    rows += table_rows(results) + archive_rows(results) + nfs_rows(results)
    w = [max(len(str(r[i])) for r in rows) for i in range(3)]
    out = []
    for r in rows:
        met = r[3] if isinstance(r[3], str) else ("yes" if r[3] else "NO")
        out.append(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {met}")
    return out


def main() -> int:
    """Runs the benchmarks --only names on a fresh fsync-on server, prints the table and writes
    .bench/results.json (keeping earlier figures by schema and size); returns 0 (a failed
    benchmark raises)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a sanity run, not figures")
    ap.add_argument("--only", default="a,b,c,d,p,s,r,n",
                    help="comma-separated subset of a,b,c,d,p,s,r,n")
    ap.add_argument("--schema", choices=recorders.VERSIONS, default="current",
                    help="CallREC version of the recorder and replay databases (default current)")
    ap.add_argument("--profile", action="store_true",
                    help="after a and b, drain once more in-process with every phase and SQL "
                         "statement timed, and print where the time goes")
    args = ap.parse_args()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    if set(only) - set("abcdpsrn"):
        ap.error(f"--only takes a,b,c,d,p,s,r,n, not {args.only!r}")
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
        steps = {"a": bench_copy, "b": bench_link, "c": bench_idle, "d": bench_memory,
                 "p": bench_prune, "s": bench_api, "r": bench_archive, "n": bench_nfs}
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
