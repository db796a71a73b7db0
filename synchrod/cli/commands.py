"""What each CLI command does, given a valid configuration."""
from __future__ import annotations

import asyncio
import getpass
import json
import signal
import sys

import structlog

from .. import exits, logs
from ..config import Config
from ..control import status as status_report
from ..control.actions import retry_calls
from ..daemon.ownership import Ownership
from ..errors import SameDatabaseError, SourceUnreachable, TargetSchemaError
from ..pg.connect import UNREACHABLE, connect, redact
from ..replay import daemons, reads
from ..replay.schema import migrate
from ..storage import report as storage_report
from ..storage.levels import StorageLevels
from ..storage.purge import purge as purge_calls
from ..sync.engine import Engine
from ..sync.rounds import run_once
from . import check as checks
from . import render
from .check import run_checks
from .progress import REDRAW, Progress

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
    """``synchrod once``: one round of cycles (rounds until idle with --until-idle), then
    the summary; exits.FAILED when a call or a source failed, USAGE for an unknown
    --source, the engine's status (UNAVAILABLE, CONFIG) when it cannot open."""
    logs.setup(cfg.logging.level, cfg.logging.format, stream=sys.stderr)
    if not _known_source(cfg, args.source):
        return exits.USAGE
    engine = await _open_engine(cfg, migrate_schema=not args.dry_run)
    if isinstance(engine, int):
        return engine
    # a source worked by a running daemon is left to it (a dry run changes nothing)
    ownership = None if args.dry_run else Ownership(cfg.target.database, engine.daemon_name,
                                                    role="once")
    progress = Progress(sys.stderr, live=sys.stderr.isatty()) \
        if args.until_idle and not args.dry_run else None
    redrawing = asyncio.create_task(_redraw(progress)) if progress and progress.live else None
    try:
        totals = await run_once(
            engine, args.source, args.until_idle, args.dry_run, ownership=ownership,
            on_cycle=(lambda rt, r: progress.cycle(rt.config.sysname, r, rt.backlog))
            if progress else None,
            on_round=progress.round_ended if progress else None)
        if any(s.copy_files for s in cfg.sources):  # reported even when no call needed them
            await engine.measure_targets()
    finally:
        if redrawing is not None:
            redrawing.cancel()
        if progress is not None:
            progress.close()
        if ownership is not None:
            await ownership.close()
        await engine.close()
    print(render.summary(totals.values(), args.dry_run))
    for path, problem in sorted(engine.target_problems.items()):
        print(f"target path {path} takes no new files: {problem}")
    bad = any(t.failed or t.erroneous or t.state.failed for t in totals.values())
    return exits.FAILED if bad else exits.OK


async def _redraw(progress: Progress) -> None:
    """The progress line drawn again twice a second (on a terminal)."""
    while True:
        progress.redraw()
        await asyncio.sleep(REDRAW)


async def check(cfg: Config, args) -> int:
    """``synchrod check``: prints every check line; OK only when every one passed, else FAILED."""
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
    """``synchrod init-db``: creates or migrates synchrod's schema and says what it applied;
    UNAVAILABLE when the replay database is unreachable, FAILED on a schema error."""
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
    """``synchrod run``: the daemon, until it stops (its exit code). A SIGTERM or SIGINT while
    the databases are reached ends it (OK) before it starts; a SIGHUP then makes it
    reload at once."""
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
    from ..daemon.process import (
        Daemon,  # late: it brings the monitor's aiohttp, which one-shot commands do without
    )
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
            print(render.status(report))
        if not args.watch:
            return exits.OK
        sys.stdout.flush()
        await asyncio.sleep(2)


def _known_source(cfg: Config, name: str | None) -> bool:
    if name and cfg.source(name) is None:
        print(f"synchrod: no source named {name!r} in {cfg.path}", file=sys.stderr)
        return False
    return True


async def run_now(cfg: Config, args) -> int:
    """``synchrod run-now``: wakes the daemons listening on the replay database (for one
    source's group, or every source); UNAVAILABLE when none listens, USAGE for an unknown source."""
    if not _known_source(cfg, args.source):
        return exits.USAGE
    conn = await _connect_target(cfg.target.database, "run-now")
    if conn is None:
        return exits.UNAVAILABLE
    try:
        listening = await daemons.notify_run_now(conn, args.source or "")
    finally:
        await conn.close()
    what = f"source {args.source}" if args.source else "every source"
    if not listening:
        print(f"no synchrod daemon is listening on the replay database; {what} not woken")
        return exits.UNAVAILABLE
    print(f"asked {listening} daemon(s) to run {what} now")
    return exits.OK


async def retry(cfg: Config, args) -> int:
    """``synchrod retry``: forgets the source's failure records and clears its E marks (every
    call, or the --sid ones), then wakes the daemon; UNAVAILABLE when the replay database
    or the source is unreachable."""
    if not _known_source(cfg, args.source):
        return exits.USAGE
    src = cfg.source(args.source)
    sids = args.sid or None
    replay_conn = await _connect_target(cfg.target.database, "retry")
    if replay_conn is None:
        return exits.UNAVAILABLE
    try:
        try:
            reset, cleared = await retry_calls(replay_conn, src, sids)
        except SourceUnreachable as exc:
            print(f"synchrod: {exc}", file=sys.stderr)
            return exits.UNAVAILABLE
        listening = await daemons.notify_run_now(replay_conn, src.sysname)
    finally:
        await replay_conn.close()
    scope = f"{len(sids)} sid(s)" if sids else "all calls"
    print(f"{src.sysname}: {scope}: cleared {cleared} E mark(s), reset {reset} failure record(s)"
          + ("; the daemon will try them now" if listening else "; they are tried at the next cycle"))
    return exits.OK


async def _connect_bookkept(cfg: Config, command: str):
    """The replay database holding synchrod's schema, or None after saying why not."""
    conn = await _connect_target(cfg.target.database, command)
    if conn is not None and not await reads.schema_ready(conn):
        print("synchrod: synchrod's schema is missing in the replay database: run synchrod init-db",
              file=sys.stderr)
        await conn.close()
        return None
    return conn


async def purge(cfg: Config, args) -> int:
    """``synchrod purge``: one line per call removed (or that would be), then a
    summary; 1 when a call named with ``--sid`` could not be removed."""
    if not _known_source(cfg, args.source):
        return exits.USAGE
    conn = await _connect_bookkept(cfg, "purge")
    if conn is None:
        return exits.UNAVAILABLE
    try:
        report = await purge_calls(conn, before=args.before or args.older_than, sids=args.sid,
                                   source=args.source, metadata=args.metadata,
                                   dry_run=args.dry_run, reason="cli",
                                   requested_by=getpass.getuser(), comment=args.comment,
                                   owned_roots=cfg.target_paths())
    finally:
        await conn.close()
    print(render.purge(report, args.dry_run, args.metadata))
    return exits.FAILED if args.sid and (report.missing or report.protected) else exits.OK


async def storage(cfg: Config, args) -> int:
    """``synchrod storage``: the filesystems measured now, at the levels the
    running daemon holds them (its hysteresis), and the next pruning round."""
    conn = await _connect_bookkept(cfg, "storage")
    if conn is None:
        return exits.UNAVAILABLE
    try:
        levels = StorageLevels(cfg.storage)
        # each bounded: a hung filesystem is reported as such, not a crash
        states = {path: await checks.measure(path) for path in cfg.target_paths()}
        levels.update(states, tuple(p.path for _, p in cfg.target.distinct_paths()), "cli")
        levels.adopt_published([fs for d in await daemons.live(conn) for fs in d["storage"]])
        next_round = await storage_report.plan(conn, cfg.storage, list(levels.filesystems.values()),
                                               daemon="cli", owned_roots=cfg.target_paths())
    finally:
        await conn.close()
    result = storage_report.report(cfg.storage, levels.views(), next_round)
    print(json.dumps(result, indent=2) if args.json else render.storage(result))
    return exits.OK
