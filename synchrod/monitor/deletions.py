"""The bulk delete API (SPEC §9, MediaSense ``deleteSessions``): jobs are
queued in the replay database and carried out by the daemon holding the
"deletions" duty (``daemon.deletionwatch``); these routes create, show and
cancel them."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from ..replay import deletionjobs
from ..replay.deletionjobs import Selection
from ..storage import jobs
from .params import error, json_response, path_id, time_param

if TYPE_CHECKING:
    from .server import Monitor

log = structlog.get_logger("synchrod.monitor")

MAX_SIDS = 100_000
MAX_TEXT = 500
_KEYS = {"sids", "filter", "dry_run", "metadata", "comment"}
_FILTER_KEYS = {"before", "after", "source"}


class BadRequest(ValueError):
    """A request body this API refuses (400)."""


def _text(value, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "\x00" in value or len(value) > limit:
        raise BadRequest(f"{name} must be a string of at most {limit} characters, without NUL")
    return value


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value


def parse(body) -> tuple[Selection, bool, bool, str | None]:
    """(selection, dry_run, metadata, comment) of a POST /api/v1/deletions
    body; BadRequest naming what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = set(body) - _KEYS
    if unknown:
        raise BadRequest(f"unknown keys: {', '.join(sorted(unknown))}")
    if ("sids" in body) == ("filter" in body):
        raise BadRequest("give either sids (a list) or filter (before, after, source)")
    if "sids" in body:
        sids = body["sids"]
        if not isinstance(sids, list) or not 1 <= len(sids) <= MAX_SIDS:
            raise BadRequest(f"sids must be a list of 1..{MAX_SIDS} sids")
        selection = Selection(sids=tuple(dict.fromkeys(_text(s, "a sid", 200) or "" for s in sids)))
        if "" in selection.sids:
            raise BadRequest("a sid must not be empty")
    else:
        selection = _filter(body["filter"])
    return (selection, _flag(body, "dry_run"), _flag(body, "metadata"),
            _text(body.get("comment"), "comment", MAX_TEXT))


def _filter(spec) -> Selection:
    if not isinstance(spec, dict):
        raise BadRequest("filter must be an object: before, after, source")
    unknown = set(spec) - _FILTER_KEYS
    if unknown:
        raise BadRequest(f"unknown filter keys: {', '.join(sorted(unknown))}")
    for key in ("before", "after"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise BadRequest(f"filter.{key} must be an ISO 8601 date and time")
    try:
        before, after = time_param(spec, "before"), time_param(spec, "after")
    except ValueError as exc:
        raise BadRequest(f"filter.{exc}") from None
    if before is None:
        raise BadRequest("filter.before is required: calls started before it are deleted")
    if after is not None and after >= before:
        raise BadRequest("filter.after must be earlier than filter.before")
    return Selection(before=before, after=after, source=_text(spec.get("source"), "filter.source", 200))


class DeletionRoutes:
    """POST/GET /api/v1/deletions, GET /api/v1/deletions/{id}, POST …/cancel."""

    def __init__(self, monitor: Monitor, claims: Callable[[web.Request], dict]):
        self.m = monitor
        self.claims = claims

    def routes(self) -> list[web.RouteDef]:
        """The routes: the GETs need no token, the POSTs a Bearer token."""
        return [
            web.get("/api/v1/deletions", self.recent),
            web.post("/api/v1/deletions", self.create),
            web.get("/api/v1/deletions/{id}", self.get),
            web.post("/api/v1/deletions/{id}/cancel", self.cancel),
        ]

    async def recent(self, request: web.Request) -> web.Response:
        """GET /api/v1/deletions: the latest 50 jobs, newest first (no token needed)."""
        async with self.m.db() as conn:
            return json_response({"jobs": await deletionjobs.recent(conn)})

    async def create(self, request: web.Request) -> web.Response:
        """POST /api/v1/deletions (token needed): queues a job (202 and its view) or, with
        ``dry_run``, says what it would remove (200); 400 on a bad body."""
        claims = self.claims(request)
        try:
            selection, dry_run, metadata, comment = parse(await request.json())
        except (ValueError, UnicodeDecodeError) as exc:
            return error(400, str(exc) if isinstance(exc, BadRequest) else "the body must be JSON")
        async with self.m.db() as conn:
            if dry_run:
                return json_response(await jobs.preview(conn, selection, metadata=metadata))
            job = await deletionjobs.create(conn, selection, metadata=metadata, comment=comment,
                                            requested_by=claims["sub"])
        log.info("deletion_job_queued", job=job["id"], user=claims["sub"],
                 selection=job["selection"], metadata=metadata)
        self.m.on_deletion_job(job, "queued")
        self.m.daemon.deletion_queued()
        return json_response(job, 202)

    async def get(self, request: web.Request) -> web.Response:
        """GET /api/v1/deletions/{id}: one job's progress; 404 when there is none."""
        job_id = path_id(request)
        if job_id is None:
            return error(404, "no such deletion job")
        async with self.m.db() as conn:
            job = await deletionjobs.get(conn, job_id)
        return json_response(job) if job else error(404, "no such deletion job")

    async def cancel(self, request: web.Request) -> web.Response:
        """POST /api/v1/deletions/{id}/cancel (token needed): a queued job is cancelled at
        once, a running one stops after the batch in hand (202 and its view); 404 when
        there is no such job, 409 when it has ended."""
        claims = self.claims(request)
        job_id = path_id(request)
        if job_id is None:
            return error(404, "no such deletion job")
        async with self.m.db() as conn:
            job = await deletionjobs.cancel(conn, job_id, claims["sub"])
            if job is None:
                found = await deletionjobs.get(conn, job_id)
                if found is None:
                    return error(404, "no such deletion job")
                return error(409, f"deletion job {job_id} has ended: {found['state']}")
        log.info("deletion_job_cancel", job=job_id, user=claims["sub"], state=job["state"])
        self.m.on_deletion_job(job, "cancelled" if job["state"] == "cancelled" else None)
        return json_response(job, 202)
