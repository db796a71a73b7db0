"""``synchrod check``: one OK/FAILED line per thing the daemon depends on,
in the style of ``nginx -t`` and ``barman check``."""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from .. import recorder
from ..config import Config
from ..core import catalog as schema_rules
from ..core.filters import taken_types
from ..fs import sourcefiles, targets
from ..pg import introspect
from ..pg.connect import connect, redact
from ..pg.introspect import read_catalog
from ..replay import schema

FS_TIMEOUT = 10.0   # seconds a mount or target path may take to answer


@dataclass
class Line:
    """One checked thing, OK or FAILED, with why."""
    what: str
    ok: bool
    detail: str = ""

    def render(self) -> str:
        """``what: OK`` or ``what: FAILED (detail)``."""
        status = "OK" if self.ok else "FAILED"
        return f"{self.what}: {status}" + (f" ({self.detail})" if self.detail else "")


async def run_checks(cfg: Config) -> list[Line]:
    """Checks the configuration's every dependency (replay database and its
    schemas, target paths, each enabled source's database, schema and mount,
    the monitor's secret); one line each, never raising."""
    lines = [Line(f"configuration {cfg.path}", True)]
    target_ident = target_cat = None
    what = f"target database ({cfg.target.sysname})"
    s = cfg.synchro
    try:
        conn = await connect(cfg.target.database, application_name="synchrod:check")
    except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
        lines.append(Line(what, False, redact(str(exc))))
    else:
        try:
            target_ident = await introspect.database_identity(conn)
            version = await schema.current_version(conn)
            has_callrec = await introspect.has_callrec(conn)
            if not has_callrec:
                lines.append(Line(what, False, "no callrec schema"))
            else:
                latest = schema.latest_version()
                detail = ("synchrod schema missing: run synchrod init-db" if version is None else
                          f"synchrod schema version {version}"
                          + ("" if version == latest else f", {latest} available: run synchrod init-db"))
                lines.append(Line(what, True, detail))
                target_cat = await read_catalog(conn, probe_types=True)
                problems = schema_rules.target_problems(target_cat, s)
                lines.append(Line("callrec schema of the target database", not problems,
                                  "; ".join(problems) or _describe(target_cat)))
        finally:
            await conn.close()
    for _, p in cfg.target.distinct_paths():  # in the file's order
        lines.append(await _target_path_line(p.path, p.watermark))
    for src in cfg.sources:
        if not src.enabled:
            lines.append(Line(f"source {src.sysname}", True, "disabled"))
            continue
        lines.extend(await _source_db_lines(cfg, src, target_ident, target_cat))
        problem = await _off_loop(sourcefiles.mount_problem, src.mount_path, src.require_mount,
                                  hung=f"mount path {src.mount_path} did not answer (hung mount?)")
        lines.append(Line(f"source {src.sysname} mount path {src.mount_path}", problem is None,
                          problem or ""))
    for task in cfg.archive.tasks if cfg.archive.enabled else ():
        lines.append(await _archive_line(task))
    if cfg.monitor.enabled:
        lines.append(_monitor_secret_line(cfg.monitor))
    return lines


def _writable_dir(path: str) -> str | None:
    """Why files cannot be created below ``path`` (it or its first existing
    parent is not a writable directory); None when they can."""
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


async def _archive_line(task) -> Line:
    """An archive task's destination: writable (or creatable), within FS_TIMEOUT."""
    what = f"archive task {task.name} destination {task.destination}"
    if not task.enabled:
        return Line(what, True, "task disabled")
    problem = await _off_loop(_writable_dir, task.folder,
                              hung=f"{task.destination} did not answer (hung mount?)")
    return Line(what, problem is None, problem or f"{task.schedule.kind} {task.schedule.at}")


def _monitor_secret_line(mon) -> Line:
    """The JWT key: private if present, or creatable at the first start."""
    what = f"monitor JWT secret {mon.jwt_secret_file}"
    users = f"{len(mon.users)} user(s), listen {mon.listen}"
    try:
        st = os.stat(mon.jwt_secret_file)
    except FileNotFoundError:
        parent = os.path.dirname(mon.jwt_secret_file)
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and os.access(parent, os.W_OK | os.X_OK):
            return Line(what, True, f"created at the first start; {users}")
        return Line(what, False, f"missing and {parent} is not writable")
    except OSError as exc:
        return Line(what, False, exc.strerror)
    if st.st_mode & 0o077:
        return Line(what, False, f"mode {oct(st.st_mode & 0o777)}: readable by others, want 0600")
    if not os.access(mon.jwt_secret_file, os.R_OK):
        return Line(what, False, "not readable")
    return Line(what, True, users)


def _describe(cat) -> str:
    """What synchrod adapts to in this database, for the OK line."""
    ids = "get_next_*id()" if "get_next_callid" in cat.functions else "column defaults"
    kept = ", ".join(sorted(cat.trigger_kept)) or "none"
    return f"encoding {cat.encoding}, ids from {ids}, kept by triggers: {kept}"


async def _off_loop(fn, *args, hung: str):
    """``fn(*args)`` in a thread, bounded: a hung filesystem answers ``hung``."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args), FS_TIMEOUT)
    except asyncio.TimeoutError:
        return hung


async def measure(path: str) -> targets.TargetState:
    """A target path's state, measured in a thread within FS_TIMEOUT (hung: ``targets.HUNG``)."""
    return await _off_loop(targets.target_state, path, hung=targets.HUNG)


async def _target_path_line(path: str, watermark: int) -> Line:
    what = f"target path {path}"
    state = await measure(path)
    if state.problem:
        return Line(what, False, state.problem)
    usage = state.usage
    pct = usage.ratio() * 100
    if usage.at_or_above(watermark):
        return Line(what, False, f"{pct:.1f}% used, at or above watermark {watermark}%")
    return Line(what, True, f"{pct:.1f}% used, watermark {watermark}%")


async def _source_db_lines(cfg: Config, src, target_ident, target_cat) -> list[Line]:
    what = f"source {src.sysname} database"
    s = cfg.synchro
    try:
        rec = await recorder.open_recorder(src.database, text_encoding=src.text_encoding,
                                           application_name="synchrod:check")
    except Exception as exc:  # noqa: BLE001
        return [Line(what, False, redact(str(exc)))]
    try:
        if not await introspect.has_callrec(rec.conn):
            return [Line(what, False, "no callrec schema")]
        if target_ident is not None and await introspect.database_identity(rec.conn) == target_ident:
            return [Line(what, False, "is the replay (target) database itself")]
        cat = rec.catalog
        problems = schema_rules.source_problems(cat, s)
        if target_cat is not None:
            problems += schema_rules.type_problems(cat, target_cat, taken_types(src, s.only_processed))
        detail = _describe(cat)
        if cat.encoding == "SQL_ASCII":
            detail += f", text decoded as {src.text_encoding or 'utf-8 (set text_encoding)'}"
        elif src.text_encoding:
            detail += f"; text_encoding {src.text_encoding} is not used (the database converts its text)"
        return [Line(what, True), Line(f"callrec schema of source {src.sysname}", not problems,
                                       "; ".join(problems) or detail)]
    finally:
        await rec.close()
