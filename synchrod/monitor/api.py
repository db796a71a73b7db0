"""The JSON API under /api/v1/ (contract: openapi.yaml beside this file)."""
from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from ..core import clock
from ..errors import ActionRefused
from ..replay import controls, history, recordings
from ..storage import report as storage_report
from .archive_api import ArchiveRoutes
from .auth import Unauthorized, check_password
from .charts import ChartRoutes
from .deletions import DeletionRoutes
from .params import MAX_INT, bool_param, error, int_param, json_response, time_param

if TYPE_CHECKING:
    from .server import Monitor

log = structlog.get_logger("synchrod.monitor")

ACTIONS = ("pause", "resume", "enable", "disable", "run", "retry")


class Api:
    """The REST API's routes (``/api/v1``), served by the monitor."""

    def __init__(self, monitor: Monitor):
        self.m = monitor

    def routes(self) -> list[web.RouteDef]:
        """Every route under /api/v1: the GETs need no token, every POST but login a Bearer
        token."""
        return [
            web.get("/api/v1/status", self.status),
            web.get("/api/v1/sources", self.sources),
            web.get("/api/v1/sources/{sysname}", self.source),
            web.get("/api/v1/storage", self.storage),
            web.get("/api/v1/recordings", self.recordings),
            web.get("/api/v1/jobs", self.jobs),
            web.get("/api/v1/runs", self.runs),
            web.get("/api/v1/runs/{id}", self.run),
            web.get("/api/v1/events", self.events),
            web.get("/api/v1/openapi.json", self.openapi),
            web.post("/api/v1/login", self.login),
            web.post("/api/v1/logout", self.logout),
            web.post("/api/v1/sources/{sysname}/{action}", self.source_action),
            web.post("/api/v1/reload", self.reload),
            web.post("/api/v1/shutdown", self.shutdown),
        ] + (DeletionRoutes(self.m, self._claims).routes() + ArchiveRoutes(self.m, self._claims).routes()
             + ChartRoutes(self.m).routes())

    # --- reads ---------------------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        """GET /api/v1/status: the daemon, every source and job, the target paths and the
        running configuration (no token needed)."""
        return json_response(self.m.board.status())

    async def sources(self, request: web.Request) -> web.Response:
        """GET /api/v1/sources: every configured source's view (no token needed)."""
        return json_response({"sources": self.m.board.sources()})

    async def source(self, request: web.Request) -> web.Response:
        """GET /api/v1/sources/{sysname}: one source's view, 404 when there is no such source
        (no token needed)."""
        view = self._source_view(request.match_info["sysname"])
        return json_response(view) if view else error(404, "no such source")

    def _source_view(self, sysname: str) -> dict | None:
        base = self.m.board.bases().get(sysname)
        if base is None:
            return None
        return self.m.board.source(sysname, base, clock.now())

    async def storage(self, request: web.Request) -> web.Response:
        """GET /api/v1/storage: the mode, every target filesystem's level and use,
        and the plan of the next pruning round with what it holds back (no token needed)."""
        engine = self.m.daemon.engine
        cfg = engine.config.storage
        async with self.m.db() as conn:
            next_round = await storage_report.plan(conn, cfg, list(engine.storage.filesystems.values()),
                                                   daemon=engine.daemon_name,
                                                   owned_roots=engine.owned_roots())
        return json_response(storage_report.report(cfg, engine.storage.views(), next_round))

    async def recordings(self, request: web.Request) -> web.Response:
        """GET /api/v1/recordings (token needed: it shows phone numbers): a keyset page of
        the target's recordings, oldest first, filtered by before, after, source, protected,
        deleted; 400 on a bad parameter or cursor."""
        self._claims(request)
        q = request.query
        try:
            filters = {"before": time_param(q, "before"), "after": time_param(q, "after"),
                       "source": q.get("source") or None, "protected": bool_param(q, "protected"),
                       "deleted": bool_param(q, "deleted")}
        except ValueError as exc:
            return error(400, str(exc))
        limit = int_param(request, "limit", 100, 1, 1000)
        async with self.m.db() as conn:
            try:
                body = await recordings.page(conn, **filters, limit=limit, cursor=q.get("cursor"))
            except recordings.BadCursor as exc:
                return error(400, str(exc))
        return json_response(body)

    async def jobs(self, request: web.Request) -> web.Response:
        """GET /api/v1/jobs: every source's job (no token needed)."""
        return json_response({"jobs": self.m.board.jobs()})

    async def runs(self, request: web.Request) -> web.Response:
        """GET /api/v1/runs: a page of the cycle history (newest first, of one ``source`` if
        given) and ``next_before``; 400 on a bad query (no token needed)."""
        limit = int_param(request, "limit", 50, 1, 500)
        before = int_param(request, "before", None, 1, MAX_INT)
        source = request.query.get("source") or None
        if source is not None and "\x00" in source:  # PostgreSQL text cannot hold it
            return error(400, "source must not contain a NUL character")
        if source is not None and len(source) > 200:  # as openapi.yaml says
            return error(400, "source must be at most 200 characters")
        async with self.m.db() as conn:
            page, next_before = await history.runs(conn, source, before, limit)
        return json_response({"runs": page, "next_before": next_before})

    async def run(self, request: web.Request) -> web.Response:
        """GET /api/v1/runs/{id}: one cycle and a page of its calls (after ``after``) with
        ``next_after``; 400 on a bad id or query, 404 when no such run (no token needed)."""
        try:
            run_id = int(request.match_info["id"])
        except ValueError:
            return error(400, "the run id must be an integer")
        if not 1 <= run_id <= MAX_INT:
            return error(404, "no such run")
        after = int_param(request, "after", 0, 0, MAX_INT)
        limit = int_param(request, "limit", 1000, 1, 5000)
        async with self.m.db() as conn:
            found = await history.run(conn, run_id, after, limit)
        if found is None:
            return error(404, "no such run")
        run, calls, next_after = found
        return json_response({"run": run, "calls": calls, "next_after": next_after})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """GET /api/v1/events: the live event stream (SSE), a ``snapshot`` first; open until the
        client or the daemon leaves (no token needed)."""
        return await self.m.hub.stream(request, ("snapshot", self.m.board.status()))

    async def openapi(self, request: web.Request) -> web.Response:
        """GET /api/v1/openapi.json: this API's contract, openapi.yaml as JSON (no token needed)."""
        return web.Response(body=self.m.openapi_json, content_type="application/json")

    # --- authentication -----------------------------------------------------------------
    async def login(self, request: web.Request) -> web.Response:
        """POST /api/v1/login: a Bearer token for a valid username and password; 400 on a bad
        body, 401 on wrong credentials, 429 with Retry-After after too many failed logins."""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body must be JSON: {\"username\": ..., \"password\": ...}")
        if not isinstance(body, dict) or not isinstance(body.get("username"), str) \
                or not isinstance(body.get("password"), str):
            return error(400, "username and password (strings) are required")
        user, password = body["username"], body["password"]
        keys = (f"addr:{request.remote}", f"user:{user}")
        wait = self.m.limiter.retry_after(*keys)
        if wait is not None:
            log.warning("login_rate_limited", user=user, remote=request.remote)
            return error(429, f"too many failed logins: try again in {wait} s",
                         {"Retry-After": str(wait)})
        cfg = self.m.config.monitor
        known = cfg.user(user)
        if not await check_password(password, known.password_hash if known else None):
            self.m.limiter.failed(*keys)
            log.warning("login_failed", user=user, remote=request.remote)
            return error(401, "wrong user name or password")
        self.m.limiter.succeeded(*keys)
        token, exp = self.m.tokens.issue(user, cfg.token_ttl)
        log.info("login", user=user, remote=request.remote)
        return json_response({"token": token, "token_type": "Bearer", "user": user,
                              "expires_at": clock.iso(dt.datetime.fromtimestamp(exp, dt.timezone.utc))})

    def _claims(self, request: web.Request) -> dict:
        """The valid token's claims, or an HTTP 401 raised."""
        try:
            return self.m.tokens.verify(request.headers.get("Authorization"),
                                        lambda name: self.m.config.monitor.user(name) is not None)
        except Unauthorized as exc:
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": str(exc)}), content_type="application/json",
                headers={"WWW-Authenticate": f'Bearer realm="synchrod", error="invalid_token", '
                                             f'error_description="{exc}"'}) from None

    async def logout(self, request: web.Request) -> web.Response:
        """POST /api/v1/logout (token needed): revokes the token presented, for every daemon,
        until it would have expired; 204, or 401."""
        claims = self._claims(request)
        self.m.tokens.revoke(claims)
        if claims.get("jti"):  # every daemon, and this one after a restart, refuses it too
            async with self.m.db() as conn:
                await controls.revoke(conn, claims["jti"], dt.datetime.fromtimestamp(
                    claims["exp"], dt.timezone.utc))
        log.info("logout", user=claims["sub"])
        return web.Response(status=204)

    # --- actions ---------------------------------------------------------------------
    async def source_action(self, request: web.Request) -> web.Response:
        """POST /api/v1/sources/{sysname}/{action} (token needed): does the action; its message
        and the source's view, 404 for an unknown source or action, 409 or 503 when refused."""
        claims = self._claims(request)
        sysname, action = request.match_info["sysname"], request.match_info["action"]
        if action not in ACTIONS:
            return error(404, f"no action {action!r}: one of {', '.join(ACTIONS)}")
        if self._source_view(sysname) is None:
            return error(404, "no such source")
        try:
            message = await self.m.actions.source(action, sysname, claims["sub"])
        except ActionRefused as exc:
            return error(exc.status, str(exc))
        log.info("source_action", action=action, source=sysname, user=claims["sub"])
        return json_response({"message": message, "source": self._source_view(sysname)})

    async def reload(self, request: web.Request) -> web.Response:
        """POST /api/v1/reload (token needed): rereads the configuration file; ``reloaded``
        false, with the ``error``, when it was refused."""
        claims = self._claims(request)
        log.info("reload_requested", user=claims["sub"])
        ok, err = await self.m.actions.reload()
        return json_response({"reloaded": ok, "error": err})

    async def shutdown(self, request: web.Request) -> web.Response:
        """POST /api/v1/shutdown (token needed): 202 at once; the daemon stops once the calls in
        hand finish."""
        claims = self._claims(request)
        log.warning("shutdown_requested", user=claims["sub"])
        self.m.actions.shutdown()
        return json_response({"message": "stopping: the calls in hand finish first"}, 202)
