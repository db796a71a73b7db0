"""``synchrod archive list|run|history`` (SPEC §10): the tasks with their next
and last runs, a run in the foreground with its summary, the history of
runs and one run's files."""
from __future__ import annotations

import getpass
import os
import socket
import sys

from .. import exits
from ..archive import tasks as archive_tasks
from ..config import Config
from ..core import clock
from ..pg.introspect import read_catalog
from ..replay import archiveruns
from .commands import _connect_bookkept
from .render import table as _lines

FAILURES_SHOWN = 100   # failed files listed after a run; the history has them all


def table(heading: list[str], rows: list[list]) -> str:
    """Aligned text lines of ``rows`` under ``heading``."""
    return "\n".join(_lines([tuple(heading)] + [tuple(str(c) for c in r) for r in rows]))


async def command(cfg: Config, args) -> int:
    """Dispatches ``synchrod archive …``."""
    conn = await _connect_bookkept(cfg, "archive")
    if conn is None:
        return exits.UNAVAILABLE
    try:
        return await {"list": _list, "run": _run, "history": _history}[args.archive_command](
            conn, cfg, args)
    finally:
        await conn.close()


def _schedule(task) -> str:
    s = task.schedule
    extra = f" {s.weekday}" if s.weekday else f" day {s.day}" if s.day else ""
    return f"{s.kind} {s.at}{extra}"


async def _list(conn, cfg: Config, args) -> int:
    names = [t.name for t in cfg.archive.tasks]
    known, last = await archiveruns.tasks(conn), await archiveruns.last_runs(conn, names)
    now, rows = clock.now(), []
    for t in cfg.archive.tasks:
        nxt = cfg.archive.next_run(t, known.get(t.name), now)
        run = last.get(t.name)
        rows.append([t.name, "yes" if t.enabled else "no", _schedule(t), t.folder,
                     clock.iso(nxt) if nxt else "-",
                     f"{run['state']} {run['finished_at'] or run['started_at']}" if run else "-"])
    if not rows:
        print("no archive tasks are configured")
        return exits.OK
    if not cfg.archive.enabled:
        print("archive.enabled is false: tasks run only by hand (synchrod archive run NAME)")
    print(table(["task", "enabled", "schedule", "folder", "next run", "last run"], rows))
    return exits.OK


async def _run(conn, cfg: Config, args) -> int:
    task = cfg.archive.task(args.name)
    if task is None:
        print(f"synchrod: no archive task {args.name!r}", file=sys.stderr)
        return exits.USAGE
    ctx = archive_tasks.context(cfg, task, await read_catalog(conn))
    try:
        end = await archive_tasks.run_task(conn, ctx, daemon=f"cli:{socket.gethostname()}:{os.getpid()}",
                                           requested_by=getpass.getuser())
    except archive_tasks.TaskBusy as exc:
        print(f"synchrod: {exc}: try again when it ends", file=sys.stderr)
        return exits.TEMPFAIL
    if end["files_failed"]:
        shown = await archiveruns.failed_media(conn, end["id"], FAILURES_SHOWN)
        for entry in shown:
            print(f"failed {entry['replay_path']} -> {entry['destination']}: {entry['message']}")
        if end["files_failed"] > len(shown):
            print(f"... and {end['files_failed'] - len(shown)} more: "
                  f"synchrod archive history --run {end['id']}")
    print(f"{end['message']} run {end['id']}: {end['files_ok']} file(s) archived "
          f"({end['bytes']} bytes), {end['files_failed']} failed")
    return exits.OK if end["state"] == "completed" else exits.FAILED


async def _history(conn, cfg: Config, args) -> int:
    if args.run is not None:
        run = await archiveruns.get(conn, args.run)
        if run is None:
            print(f"synchrod: no archive run {args.run}", file=sys.stderr)
            return exits.USAGE
        print(f"run {run['id']} of {run['task']}: {run['state']} — {run['message'] or ''}")
        entries, after = [], 0
        while True:
            page, after = await archiveruns.entries(conn, run["id"], after, 1000)
            entries += page
            if after is None:
                break
        print(table(["kind", "result", "destination", "replay path", "message"],
                    [[e["kind"], e["result"], e["destination"], e["replay_path"], e["message"] or ""]
                     for e in entries]))
        return exits.OK
    runs, _ = await archiveruns.page(conn, args.name, None, max(1, args.limit))
    print(table(["id", "task", "state", "started", "finished", "ok", "failed", "bytes", "message"],
                [[r["id"], r["task"], r["state"], r["started_at"], r["finished_at"] or "-",
                  r["files_ok"], r["files_failed"], r["bytes"], r["message"] or ""] for r in runs]))
    return exits.OK
