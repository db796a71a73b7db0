"""Benchmark n of ``make bench``: an NFS-like mount.

    n  ``n_calls`` calls x 256 KiB whose recorder mount is a FUSE passthrough
       adding 1 ms to every operation (synchrod.testing.slowfs, 32 threads,
       lookups in one directory in parallel): `synchrod once --until-idle`
       with 1, 2, 4, 8, 16 and 32 copy workers against `cp -a` + `sync` from
       the same mount into the same filesystem as the target (page cache
       dropped before each side)

Target: synchrod drains it faster than cp -a + sync, because its copies run
in parallel (the winning copy-worker count is reported). Needs root
(mount(2) and /dev/fuse); skipped otherwise.
"""
from __future__ import annotations

import os
import shutil
import statistics

import yaml
from bench_env import BENCH, Bench, cp_sync, drop_caches

from synchrod.testing import slowfs
from synchrod.testing.stage import say

TARGET = "faster than cp -a + sync from the same mount"
WORKERS = (1, 2, 4, 8, 16, 32)


def _with_mount(cfg, mount, workers: int) -> None:
    raw = yaml.safe_load(cfg.read_text())
    raw["sources"][0]["mount_path"] = str(mount)
    raw["synchro"]["copy_workers"] = workers
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))


def bench_nfs(b: Bench, sz: dict, profile: bool = False) -> dict:
    """n: the drain per copy-worker count and cp -a + sync, both from the slow mount,
    ``n_repeat`` times each, medians."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        say("[n] skipped: a FUSE mount needs root and /dev/fuse")
        return {"skipped": "needs root and /dev/fuse", "target": TARGET, "met": False}
    n, size, name = sz["n_calls"], sz["a_size"], "n"
    backing, target, cfg = b.prepare(name, n, size, f"calls x {size // 1024} KiB", copy_files=True,
                                     calls_per_period=n)
    nfs, cpdst = BENCH / name / "nfs", BENCH / name / "cp"
    runs: dict[int, list[float]] = {w: [] for w in WORKERS}
    cp_runs: list[float] = []
    with slowfs.mounted(backing, nfs, delay_ms=1, threads=32):
        for r in range(sz["n_repeat"]):
            cp_runs.append(cp_sync(nfs, cpdst, cold=True))
            shutil.rmtree(cpdst, ignore_errors=True)
            for w in WORKERS:
                _with_mount(cfg, nfs, w)
                drop_caches()
                runs[w].append(b.drain(name, cfg, n, target, n * size)["wall_s"])
            say(f"[n] round {r + 1}: cp -a + sync {cp_runs[-1]:.2f} s; synchrod "
                + ", ".join(f"{w} workers {runs[w][-1]:.2f} s" for w in WORKERS))
    medians = {w: statistics.median(v) for w, v in runs.items()}
    best = min(medians, key=medians.get)
    cp_med = statistics.median(cp_runs)
    return {"files": n, "file_size": size, "delay_ms": 1, "cp_sync_s": cp_runs,
            "cp_sync_median_s": cp_med, "drain_s": {str(w): v for w, v in runs.items()},
            "drain_median_s": {str(w): m for w, m in medians.items()}, "best_workers": best,
            "best_s": medians[best], "ratio_vs_cp": medians[best] / cp_med,
            "target": TARGET, "met": medians[best] < cp_med}


def table_rows(results: dict) -> list[tuple[str, str, str, bool]]:
    """bench.py's table row of n."""
    if "n" not in results:
        return []
    x = results["n"]
    if "skipped" in x:
        return [("n nfs-like", f"skipped: {x['skipped']}", x["target"], False)]
    each = ", ".join(f"{w}: {m:.2f} s" for w, m in x["drain_median_s"].items())
    return [("n nfs-like", f"best {x['best_workers']} copy workers {x['best_s']:.2f} s vs cp+sync "
                           f"{x['cp_sync_median_s']:.2f} s = {x['ratio_vs_cp']:.2f}x "
                           f"({x['files']:,} files, 1 ms a request; medians by workers {each})",
             x["target"], x["met"])]
