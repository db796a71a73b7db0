"""Where the benchmarks run and how they run synchrod: .bench/ and the
start of the calls' dates, a benchmark's fresh databases, configuration
and drains (Bench), `synchrod once --until-idle` timed as a subprocess
(wall time, peak RSS, its summary), and synchrod's engine opened in this
process.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import resource
import shutil
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


# --- environment ---------------------------------------------------------------------

class Bench:
    """The benchmarks' PostgreSQL server and the CallREC schema version its databases hold; for
    a benchmark ``name``: the recorder database ``<name>_rec``, the replay database
    ``<name>_replay``, files and configuration under .bench/<name>."""
    def __init__(self, server: PgServer, schema: str = "current"):
        self.server = server
        self.schema = schema

    def dsn(self, db: str) -> str:
        """The DSN of database ``db`` on the server."""
        return self.server.dsn(db)

    def fresh_db(self, name: str) -> str:
        """Database ``name`` created anew from the CallREC template; returns its DSN."""
        return stage.clone_databases(self.server, [name])[name]

    def config(self, name: str, *, copy_files: bool, calls_per_period: int,
               target: Path, mount: Path) -> Path:
        """Writes .bench/<name>/synchrod.yaml: source ``rec`` (``<name>_rec`` on ``mount``)
        into ``target`` on ``<name>_replay``; returns its path."""
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
        """Mark (callrec.couples.synchronized) -> number of couples on ``<name>_rec``."""
        with psycopg.connect(self.dsn(f"{name}_rec"), autocommit=True) as conn:
            return dict(conn.execute("SELECT synchronized, count(*) FROM callrec.couples GROUP BY 1").fetchall())

    def drain(self, name: str, cfg: Path, n: int, target: Path | None, total: int | None = None,
              cold: bool = False) -> dict:
        """A fresh run (:meth:`reset_run`; a sync first when ``target`` is
        given, the page cache dropped too when ``cold``), then
        :func:`timed_synchrod`; raises unless all ``n`` calls are marked S (and
        the target holds ``total`` bytes, if given)."""
        self.reset_run(name, target)
        if cold:
            drop_caches()
        elif target is not None:
            sync()
        res = timed_synchrod(cfg)
        marks = self.marks(name)
        if marks.get("S") != n or (total is not None and du_bytes(target) != total):
            raise RuntimeError(f"[{name}] synchrod did not synchronize everything: marks {marks}")
        return res


def sync() -> None:
    """Flushes every filesystem (os.sync)."""
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


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_caches() -> bool:
    """Syncs, then drops the page cache (root only), so the next side reads
    from the disk; whether it could."""
    sync()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError:
        return False
    return True


def cp_sync(src: Path, dst: Path, cold: bool = False) -> float:
    """Seconds of `cp -a SRC DST` + `sync`, into a fresh ``dst`` after a sync
    (and with the page cache dropped when ``cold``): the baseline a copy
    benchmark compares with."""
    shutil.rmtree(dst, ignore_errors=True)
    if cold:
        drop_caches()
    else:
        sync()
    t0 = time.perf_counter()
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    sync()
    return time.perf_counter() - t0


def du_bytes(root: Path) -> int:
    """The bytes of all files below ``root``."""
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
