"""The archive API (SPEC §10): the tasks with their next and last runs, the
history of runs in keyset pages, one run with its file entries, and "run
now" (a token needed)."""
from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from ..archive import tasks as archive_tasks
from ..core import clock
from ..replay import archiveruns
from .params import MAX_INT, error, int_param, json_response, path_id

if TYPE_CHECKING:
    from .server import Monitor

log = structlog.get_logger("synchrod.monitor")


def _cursor(value: int | None) -> str | None:
    return base64.urlsafe_b64encode(str(value).encode()).decode() if value is not None else None


def _uncursor(raw: str | None) -> int | None:
    """The id a cursor names; ValueError when it is not one of ours."""
    if not raw:
        return None
    try:
        value = int(base64.urlsafe_b64decode(raw.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("cursor is not one this API handed out") from None
    if not 0 <= value <= MAX_INT:
        raise ValueError("cursor is not one this API handed out")
    return value


def task_view(task, cfg, rec: dict | None, last: dict | None, running: bool) -> dict:
    """One task as the API shows it: its settings, next run, last run."""
    s = task.schedule
    nxt = cfg.next_run(task, rec, clock.now())
    return {"name": task.name, "enabled": task.enabled, "destination": task.destination,
            "folder": task.folder,
            "schedule": {"kind": s.kind, "at": s.at, "weekday": s.weekday, "day": s.day},
            "lookback_days": task.lookback_days, "sources": list(task.sources),
            "min_age_minutes": task.min_age_minutes,
            "next_run_at": clock.iso(nxt) if nxt else None, "running": running, "last_run": last}


class ArchiveRoutes:
    """GET /api/v1/archive/tasks, /runs, /runs/{id}; POST /tasks/{name}/run."""

    def __init__(self, monitor: Monitor, claims: Callable[[web.Request], dict]):
        self.m = monitor
        self.claims = claims

    def routes(self) -> list[web.RouteDef]:
        """The routes: the GETs need no token, running a task a Bearer token."""
        return [
            web.get("/api/v1/archive/tasks", self.tasks),
            web.get("/api/v1/archive/runs", self.runs),
            web.get("/api/v1/archive/runs/{id}", self.run),
            web.post("/api/v1/archive/tasks/{name}/run", self.run_now),
        ]

    async def tasks(self, request: web.Request) -> web.Response:
        """GET /api/v1/archive/tasks: every task, its next run and last run (no token needed)."""
        cfg = self.m.config.archive
        names = [t.name for t in cfg.tasks]
        async with self.m.db() as conn:
            known, last = await archiveruns.tasks(conn), await archiveruns.last_runs(conn, names)
        running = set(self.m.daemon.archive.running)
        return json_response({"enabled": cfg.enabled, "timezone": cfg.timezone, "tasks": [
            task_view(t, cfg, known.get(t.name), last.get(t.name),
                      t.name in running or (last.get(t.name) or {}).get("state") == "running")
            for t in cfg.tasks]})

    async def runs(self, request: web.Request) -> web.Response:
        """GET /api/v1/archive/runs: runs newest first, of one ``task`` if given, in keyset
        pages (``cursor``: the previous page's ``next_cursor``); 400 on a bad query."""
        task = request.query.get("task") or None
        if task is not None and ("\x00" in task or len(task) > 200):
            return error(400, "task must be at most 200 characters, without NUL")
        try:
            before = _uncursor(request.query.get("cursor"))
        except ValueError as exc:
            return error(400, str(exc))
        limit = int_param(request, "limit", 50, 1, 500)
        async with self.m.db() as conn:
            page, nxt = await archiveruns.page(conn, task, before, limit)
        return json_response({"runs": page, "next_cursor": _cursor(nxt)})

    async def run(self, request: web.Request) -> web.Response:
        """GET /api/v1/archive/runs/{id}: one run and a page of its file entries (media and
        sidecar alike); 404 when there is no such run, 400 on a bad cursor."""
        run_id = path_id(request)
        if run_id is None:
            return error(404, "no such archive run")
        try:
            after = _uncursor(request.query.get("cursor")) or 0
        except ValueError as exc:
            return error(400, str(exc))
        limit = int_param(request, "limit", 500, 1, 5000)
        async with self.m.db() as conn:
            found = await archiveruns.get(conn, run_id)
            if found is None:
                return error(404, "no such archive run")
            files, nxt = await archiveruns.entries(conn, run_id, after, limit)
        return json_response({"run": found, "files": files, "next_cursor": _cursor(nxt)})

    async def run_now(self, request: web.Request) -> web.Response:
        """POST /api/v1/archive/tasks/{name}/run (token needed): starts a run of the task at
        once on this daemon (202); 404 for an unknown task, 409 while it runs."""
        claims = self.claims(request)
        name = request.match_info["name"]
        task = self.m.config.archive.task(name)
        if task is None:
            return error(404, f"no archive task {name!r}")
        async with self.m.db() as conn:
            elsewhere = await archive_tasks.running_elsewhere(conn, name)
        if elsewhere or not self.m.daemon.archive.start(task, None, claims["sub"]):
            return error(409, f"task {name!r} is running")
        log.info("archive_run_requested", task=name, user=claims["sub"])
        return json_response({"message": f"Task '{name}' started.", "task": name}, 202)
