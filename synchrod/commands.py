"""What each CLI command does, given a valid configuration."""
from __future__ import annotations

import asyncio
import json
import signal
import sys

import structlog

from . import exits, logs
from .actions import SourceUnreachable, retry_calls
from .check import run_checks
from .config import Config
from . import status as status_report
from .dbconn import UNREACHABLE, connect, redact
from .engine import Engine, SameDatabaseError
from .ownership import Ownership, notify_run_now
from .replay.schema import TargetSchemaError, migrate
from .runner import run_once

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
    # a source worked by a running daemon is left to it (a dry run changes nothing)
    ownership = None if args.dry_run else Ownership(cfg.target.database, engine.daemon_name,
                                                    role="once")
    try:
        totals = await run_once(engine, args.source, args.until_idle, args.dry_run,
                                ownership=ownership)
        if any(s.copy_files for s in cfg.sources):  # reported even when no call needed them
            await engine.measure_targets()
    finally:
        if ownership is not None:
            await ownership.close()
        await engine.close()
    _print_summary(totals.values(), args.dry_run)
    for path, problem in sorted(engine.target_problems.items()):
        print(f"target path {path} takes no new files: {problem}")
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


async def _connect_target(dsn: str, command: str):
    """The replay database, or None after saying why it cannot be reached."""
    try:
        return await connect(dsn, application_name=f"synchrod:{command}")
    except UNREACHABLE as exc:
        print(f"synchrod: target database unreachable: {redact(str(exc))}", file=sys.stderr)
        return None


async def init_db(cfg: Config, args) -> int:
    conn = await _connect_target(cfg.target.database, "init-db")
    if conn is None:
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
    # signals that arrive while the databases are being reached are kept, not fatal
    loop = asyncio.get_running_loop()
    early: set[int] = set()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, early.add, sig)
    engine = await _open_engine(cfg)
    if isinstance(engine, int):
        return engine
    if early & {signal.SIGTERM, signal.SIGINT}:
        log.info("stopped_before_start")
        await engine.close()
        return exits.OK
    from .daemon import Daemon  # late: it brings the monitor's aiohttp, which one-shot commands do without
    return await Daemon(cfg, engine, ready_file=args.ready_file).run(
        reload_first=signal.SIGHUP in early)


async def status(cfg: Config | None, args, dsn: str | None = None,
                 config_error: str | None = None) -> int:
    """``cfg`` is None when the file is invalid: the daemons still run with the
    configuration they had, and this shows them (and the file's error)."""
    dsn = cfg.target.database if cfg is not None else dsn
    while True:
        conn = await _connect_target(dsn, "status")
        if conn is None:
            return exits.UNAVAILABLE
        try:
            report = await status_report.gather(cfg, conn)
        except UNREACHABLE as exc:
            print(f"synchrod: target database unreachable: {redact(str(exc))}", file=sys.stderr)
            return exits.UNAVAILABLE
        finally:
            await conn.close()
        report["config_file_error"] = config_error
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            if args.watch:
                sys.stdout.write("\x1b[H\x1b[2J")  # home and clear: refresh in place
            print(status_report.render(report))
        if not args.watch:
            return exits.OK
        sys.stdout.flush()
        await asyncio.sleep(2)


def _known_source(cfg: Config, name: str | None) -> bool:
    if name and name not in {s.sysname for s in cfg.sources}:
        print(f"synchrod: no source named {name!r} in {cfg.path}", file=sys.stderr)
        return False
    return True


async def run_now(cfg: Config, args) -> int:
    if not _known_source(cfg, args.source):
        return exits.USAGE
    conn = await _connect_target(cfg.target.database, "run-now")
    if conn is None:
        return exits.UNAVAILABLE
    try:
        listening = await notify_run_now(conn, args.source or "")
    finally:
        await conn.close()
    what = f"source {args.source}" if args.source else "every source"
    if not listening:
        print(f"no synchrod daemon is listening on the replay database; {what} not woken")
        return exits.UNAVAILABLE
    print(f"asked {listening} daemon(s) to run {what} now")
    return exits.OK


async def retry(cfg: Config, args) -> int:
    if not _known_source(cfg, args.source):
        return exits.USAGE
    src = next(s for s in cfg.sources if s.sysname == args.source)
    sids = args.sid or None
    tconn = await _connect_target(cfg.target.database, "retry")
    if tconn is None:
        return exits.UNAVAILABLE
    try:
        try:
            reset, cleared = await retry_calls(tconn, src, sids)
        except SourceUnreachable as exc:
            print(f"synchrod: {exc}", file=sys.stderr)
            return exits.UNAVAILABLE
        listening = await notify_run_now(tconn, src.sysname)
    finally:
        await tconn.close()
    scope = f"{len(sids)} sid(s)" if sids else "all calls"
    print(f"{src.sysname}: {scope}: cleared {cleared} E mark(s), reset {reset} failure record(s)"
          + ("; the daemon will try them now" if listening else "; they are tried at the next cycle"))
    return exits.OK
