"""``synchrod check``: one OK/FAILED line per thing the daemon depends on,
in the style of ``nginx -t`` and ``barman check``."""
from __future__ import annotations

import os
from dataclasses import dataclass

from . import media, recorder
from .config import Config
from .dbconn import connect, redact
from .replay import schema


@dataclass
class Line:
    what: str
    ok: bool
    detail: str = ""

    def render(self) -> str:
        status = "OK" if self.ok else "FAILED"
        return f"{self.what}: {status}" + (f" ({self.detail})" if self.detail else "")


async def run_checks(cfg: Config) -> list[Line]:
    lines = [Line(f"configuration {cfg.path}", True)]
    target_ident = None
    try:
        conn = await connect(cfg.target.database, application_name="synchrod:check")
    except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
        lines.append(Line(f"target database ({cfg.target.sysname})", False, redact(str(exc))))
    else:
        try:
            target_ident = await recorder.identity(conn)
            version = await schema.current_version(conn)
            has_callrec = await conn.fetchval("SELECT to_regclass('callrec.couples') IS NOT NULL")
            if not has_callrec:
                lines.append(Line(f"target database ({cfg.target.sysname})", False, "no callrec schema"))
            else:
                latest = schema.latest_version()
                detail = ("synchrod schema missing: run synchrod init-db" if version is None else
                          f"synchrod schema version {version}"
                          + ("" if version == latest else f", {latest} available: run synchrod init-db"))
                lines.append(Line(f"target database ({cfg.target.sysname})", True, detail))
        finally:
            await conn.close()
    for p in {p.path: p for p in cfg.target.audio_paths + cfg.target.video_paths}.values():
        lines.append(_target_path_line(p))
    for src in cfg.sources:
        if not src.enabled:
            lines.append(Line(f"source {src.sysname}", True, "disabled"))
            continue
        lines.append(await _source_db_line(src, target_ident))
        problem = media.mount_problem(src.mount_path, src.require_mount)
        lines.append(Line(f"source {src.sysname} mount path {src.mount_path}", problem is None,
                          problem or ""))
    if cfg.monitor.enabled:
        lines.append(_monitor_secret_line(cfg.monitor))
    return lines


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


def _target_path_line(p) -> Line:
    what = f"target path {p.path}"
    if not os.path.isdir(p.path):
        return Line(what, False, "does not exist or is not a directory")
    if not os.access(p.path, os.W_OK | os.X_OK):
        return Line(what, False, "not writable")
    usage = media.fs_usage(p.path)
    if usage is None:
        return Line(what, False, "cannot read filesystem usage")
    pct = usage.ratio() * 100
    if usage.at_or_above(p.watermark):
        return Line(what, False, f"{pct:.1f}% used, at or above watermark {p.watermark}%")
    return Line(what, True, f"{pct:.1f}% used, watermark {p.watermark}%")


async def _source_db_line(src, target_ident) -> Line:
    what = f"source {src.sysname} database"
    try:
        conn = await connect(src.database, application_name="synchrod:check")
    except Exception as exc:  # noqa: BLE001
        return Line(what, False, redact(str(exc)))
    try:
        if await conn.fetchval("SELECT to_regclass('callrec.couples') IS NULL"):
            return Line(what, False, "no callrec schema")
        if target_ident is not None and await recorder.identity(conn) == target_ident:
            return Line(what, False, "is the replay (target) database itself")
        return Line(what, True)
    finally:
        await conn.close()
