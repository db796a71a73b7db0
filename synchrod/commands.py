"""What each CLI command does, given a valid configuration."""
from __future__ import annotations

import asyncio
import json
import signal
import sys

import structlog

from . import exits, logs
from .check import run_checks
from .config import Config, ConfigError, load
from .dbconn import UNREACHABLE, connect, redact
from .engine import Engine, SameDatabaseError
from .replay.schema import TargetSchemaError, migrate
from .runner import run_forever, run_once
from .sdnotify import Notifier

log = structlog.get_logger("synchrod")


async def _open_engine(cfg: Config, migrate_schema: bool = True) -> Engine | int:
    engine = Engine(cfg)
    try:
        await engine.open(migrate=migrate_schema)
        unreachable = await engine.verify_sources()
    except SameDatabaseError as exc:
        print(f"synchrod: refusing to start: {exc}", file=sys.stderr)
        await engine.close()
        return exits.CONFIG
    except TargetSchemaError as exc:
        print(f"synchrod: target database: {exc}", file=sys.stderr)
        await engine.close()
        return exits.UNAVAILABLE
    except UNREACHABLE as exc:
        print(f"synchrod: target database unreachable: {redact(str(exc))}", file=sys.stderr)
        await engine.close()
        return exits.UNAVAILABLE
    for line in unreachable:
        log.warning("source_unreachable_at_start", detail=line)
    return engine


async def once(cfg: Config, args) -> int:
    logs.setup(cfg.logging.level, cfg.logging.format, stream=sys.stderr)
    if args.source and args.source not in {s.sysname for s in cfg.sources}:
        print(f"synchrod: no source named {args.source!r} in {cfg.path}", file=sys.stderr)
        return exits.USAGE
    engine = await _open_engine(cfg, migrate_schema=not args.dry_run)
    if isinstance(engine, int):
        return engine
    try:
        totals = await run_once(engine, args.source, args.until_idle, args.dry_run)
    finally:
        await engine.close()
    _print_summary(totals.values(), args.dry_run)
    bad = any(t.failed or t.erroneous or t.state in ("down", "error") for t in totals.values())
    return exits.FAILED if bad else exits.OK


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _print_summary(totals, dry_run: bool) -> None:
    head = ("source", "state", "cycles", "taken", "S", "N", "E", "failed", "skipped",
            "files", "bytes", "seconds")
    rows = [head]
    for t in totals:
        rows.append((t.source, t.state, str(t.cycles), str(t.taken), str(t.synchronized),
                     str(t.not_used), str(t.erroneous), str(t.failed), str(t.skipped),
                     str(t.files), _human_bytes(t.bytes), f"{t.seconds:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    if dry_run:
        print("dry run: nothing was copied, written or marked")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for t in totals:
        if t.error:
            print(f"{t.source}: {t.error}")
        for sid, action in t.plan:
            print(f"{t.source}: would {action} {sid}")


async def check(cfg: Config, args) -> int:
    lines = await run_checks(cfg)
    for line in lines:
        print(line.render())
    return exits.OK if all(line.ok for line in lines) else exits.FAILED


async def init_db(cfg: Config, args) -> int:
    try:
        conn = await connect(cfg.target.database, application_name="synchrod:init-db")
    except UNREACHABLE as exc:
        print(f"synchrod: target database unreachable: {redact(str(exc))}", file=sys.stderr)
        return exits.UNAVAILABLE
    try:
        applied = await migrate(conn)
    except TargetSchemaError as exc:
        print(f"synchrod: {exc}", file=sys.stderr)
        return exits.FAILED
    finally:
        await conn.close()
    print("synchrod schema: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
    return exits.OK


async def run(cfg: Config, args) -> int:
    logs.setup(cfg.logging.level, cfg.logging.format)
    engine = await _open_engine(cfg)
    if isinstance(engine, int):
        return engine
    stop = asyncio.Event()
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    hup = asyncio.Event()
    # handlers only set flags; the loop acts on them
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: (hup.set(), wake.set()))

    async def reloader():
        while not stop.is_set():
            await hup.wait()
            hup.clear()
            try:
                new = load(cfg.path)
            except ConfigError as exc:
                log.error("config_reload_failed", error=str(exc))
                continue
            engine.apply_config(new)
            log.info("config_reloaded", path=cfg.path)

    notifier = Notifier()

    async def watchdog():
        interval = Notifier.watchdog_interval()
        while interval:
            notifier.watchdog()
            await asyncio.sleep(interval)

    log.info("started", sources=[s.sysname for s in cfg.sources], target=cfg.target.sysname)
    notifier.ready(f"synchronizing {len(cfg.sources)} source(s)")
    tasks = [asyncio.create_task(reloader()), asyncio.create_task(watchdog())]
    try:
        await run_forever(engine, stop, wake)
    finally:
        notifier.stopping()
        for t in tasks:
            t.cancel()
        await engine.close()
    log.info("stopped")
    return exits.OK


_STATUS_SQL = """
SELECT r.source, r.finished_at, r.taken, r.synchronized, r.not_used, r.erroneous, r.failed,
       r.skipped, r.error
  FROM (SELECT DISTINCT ON (source) * FROM synchrod.runs WHERE source = ANY($1::text[])
         ORDER BY source, id DESC) r
"""
_RETRYING_SQL = """
SELECT source, count(*) AS n FROM synchrod.attempts
 WHERE source = ANY($1::text[]) AND next_try_at < 'infinity' GROUP BY source
"""


async def _status_rows(cfg: Config) -> list[dict]:
    names = [s.sysname for s in cfg.sources]
    conn = await connect(cfg.target.database, application_name="synchrod:status")
    try:
        has = await conn.fetchval("SELECT to_regclass('synchrod.runs') IS NOT NULL")
        last = {r["source"]: r for r in await conn.fetch(_STATUS_SQL, names)} if has else {}
        retrying = {r["source"]: r["n"] for r in await conn.fetch(_RETRYING_SQL, names)} if has else {}
    finally:
        await conn.close()
    rows = []
    for s in cfg.sources:
        r = last.get(s.sysname)
        rows.append({
            "sysname": s.sysname, "enabled": s.enabled, "group": s.group,
            "last_cycle_at": r["finished_at"].isoformat() if r else None,
            "last_counts": {k: r[k] for k in ("taken", "synchronized", "not_used", "erroneous",
                                              "failed", "skipped")} if r else None,
            "retrying": retrying.get(s.sysname, 0),
            "last_error": r["error"] if r else None,
        })
    return rows


async def status(cfg: Config, args) -> int:
    while True:
        try:
            rows = await _status_rows(cfg)
        except UNREACHABLE as exc:
            print(f"synchrod: target database unreachable: {redact(str(exc))}", file=sys.stderr)
            return exits.UNAVAILABLE
        if args.json:
            print(json.dumps({"sources": rows}, indent=2))
        else:
            if args.watch:
                sys.stdout.write("\x1b[H\x1b[2J")
            for r in rows:
                counts = r["last_counts"] or {}
                print(f"{r['sysname']:<16} {'enabled' if r['enabled'] else 'disabled':<9} "
                      f"last cycle {r['last_cycle_at'] or 'never'}  "
                      f"S={counts.get('synchronized', 0)} N={counts.get('not_used', 0)} "
                      f"E={counts.get('erroneous', 0)} failed={counts.get('failed', 0)} "
                      f"retrying={r['retrying']}")
        if not args.watch:
            return exits.OK
        sys.stdout.flush()
        await asyncio.sleep(2)

