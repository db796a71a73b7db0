"""The monitor's HTTP server inside the daemon: /metrics, /monitor/ and the
JSON API, on ``monitor.listen`` (loopback by default)."""
from __future__ import annotations

import asyncio
import contextlib
import json
from importlib import resources

import structlog
import yaml
from aiohttp import web

from ..config import Config
from ..control.actions import Actions
from ..control.handle import DaemonHandle
from ..pg.connect import create_pool, redact
from ..replay import controls
from .api import Api, error
from .auth import LoginLimiter, Tokens, load_or_create_secret
from .board import Board
from .events import Hub
from .metrics import CONTENT_TYPE, Metrics

log = structlog.get_logger("synchrod.monitor")

PAGE_MARKER = "<!-- INITIAL_STATUS -->"
_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY"}
_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
             "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
             "frame-ancestors 'none'")
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon"}


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


class Monitor:
    """The monitor's web server: the page, the API, the live events and
    ``/metrics``, for one running daemon."""

    def __init__(self, daemon: DaemonHandle):
        self.daemon = daemon
        self.hub = Hub()
        self.board = Board(daemon, self.hub)
        self.metrics = Metrics(self.board.gauges, self.board.archive.gauges)
        self.limiter = LoginLimiter()
        self.tokens: Tokens | None = None
        self.actions = Actions(daemon, self.db)
        self.openapi_json = json.dumps(yaml.safe_load(_static("openapi.yaml"))).encode()
        self._pool = None
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task | None = None
        self.url: str | None = None

    @property
    def config(self) -> Config:
        """The daemon's running configuration."""
        return self.daemon.engine.config

    @contextlib.asynccontextmanager
    async def db(self):
        """A connection to the replay database, from the monitor's own small
        pool (history reads never wait for the cycles' connections)."""
        if self._pool is None:
            self._pool = await create_pool(self.config.target.database,
                                           application_name="synchrod:monitor", max_size=3)
        async with self._pool.acquire(timeout=10) as conn:
            yield conn

    # --- the application --------------------------------------------------------------
    def app(self) -> web.Application:
        """The web application: the API, /metrics and the page under /monitor/ (/ redirects
        there), with JSON errors and security headers on every response."""
        app = web.Application(middlewares=[self._errors], client_max_size=64 * 1024)
        app.add_routes(Api(self).routes())
        app.add_routes([web.get("/metrics", self._metrics),
                        web.get("/", self._home),
                        web.get("/monitor", self._home),
                        web.get("/monitor/", self._page),
                        web.get("/monitor/{name}", self._asset)])
        app.on_response_prepare.append(self._security_headers)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        """Every API error is JSON; a fault is logged and answered 500 or 503."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.content_type == "application/json" or exc.status < 400:
                raise
            return error(exc.status, exc.reason, {k: v for k, v in exc.headers.items()
                                                  if k in ("Allow", "WWW-Authenticate")})
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("monitor_database_unavailable", path=request.path,
                        error=redact(f"{type(exc).__name__}: {exc}"))
            return error(503, "the replay database is not reachable now")
        except Exception as exc:  # noqa: BLE001
            if type(exc).__module__.startswith("asyncpg"):
                log.warning("monitor_database_error", path=request.path, error=redact(str(exc)))
                return error(503, "the replay database failed: " + redact(str(exc))[:200])
            log.exception("monitor_request_failed", path=request.path)
            return error(500, "internal error (see the daemon's log)")

    async def _security_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(_HEADERS)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.get_running_loop().run_in_executor(None, self.metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/monitor/")

    async def _page(self, request: web.Request) -> web.Response:
        """The page with the status inside it: the first paint needs no other request."""
        status = json.dumps(self.board.status(), separators=(",", ":"), default=str)
        status = status.replace("</", "<\\/")  # cannot end the script element early
        html = self._index.replace(PAGE_MARKER, '<script id="initial-status" '
                                   f'type="application/json">{status}</script>', 1)
        return web.Response(text=html, content_type="text/html",
                            headers={"Content-Security-Policy": _PAGE_CSP,
                                     "Cache-Control": "no-store"})

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self._assets.get(name)
        if body is None:
            return error(404, "not found")
        return web.Response(body=body, headers={"Content-Type": _STATIC_TYPES[name[name.rfind("."):]],
                                                "Cache-Control": "no-cache"})

    def _load_static(self) -> None:
        folder = resources.files(__package__).joinpath("static")
        self._index = folder.joinpath("index.html").read_text(encoding="utf-8")
        self._assets = {e.name: e.read_bytes() for e in folder.iterdir()
                        if e.name[e.name.rfind("."):] in _STATIC_TYPES}

    # --- life cycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Binds ``monitor.listen``; OSError when it cannot (a port in use)."""
        cfg = self.config.monitor
        loop = asyncio.get_running_loop()
        secret = await loop.run_in_executor(None, load_or_create_secret, cfg.jwt_secret_file)
        self.tokens = Tokens(secret)
        if self.daemon.engine.schema_ready:  # logouts from before this start still hold
            try:
                async with self.db() as conn:
                    self.tokens.adopt_revoked(await controls.revoked(conn))
            except Exception as exc:  # noqa: BLE001 - adopted at the board's next refresh
                log.warning("revoked_tokens_unreadable", error=redact(f"{type(exc).__name__}: {exc}"))
        self._load_static()
        for src in self.config.sources:
            self.metrics.add_source(src.sysname)
        self.daemon.engine.cycle_listeners.append(self._on_cycle)
        self.daemon.engine.storage_listeners.append(self._on_storage)
        self.daemon.archive.listeners.append(self._on_archive)
        for task in self.config.archive.tasks:
            self.metrics.add_archive_task(task.name)
        host, _, port = cfg.listen.rpartition(":")
        host = host.strip("[]")
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, int(port), reuse_address=True).start()
        self.url = f"http://{cfg.listen}"
        self._task = asyncio.create_task(self.board.run(self.db, self.tokens), name="monitor")
        log.info("monitor_listening", url=self.url, users=len(cfg.users))

    def _on_storage(self, event: dict) -> None:
        if event["eventType"] == "DELETION_JOB":
            self.on_deletion_job(event["job"], event["entered"])
            return
        if event["eventType"] == "SESSION_EVENT":
            self.metrics.observe_pruning(event)
        self.board.on_storage(event)

    def on_deletion_job(self, job: dict, entered: str | None) -> None:
        """A bulk delete job changed: a live ``deletion_job`` event, and counted
        when it ``entered`` a state."""
        if entered is not None:
            self.metrics.deletion_jobs.labels(entered).inc()
        self.hub.publish("deletion_job", job)

    def _on_archive(self, what: str, data: dict) -> None:
        self.metrics.observe_archive(what, data)
        if what != "slot":   # a slot that did not run is no run for the page's live view
            self.board.on_archive(what, data)

    def _on_cycle(self, runtime, result) -> None:
        self.metrics.observe_cycle(runtime.config.sysname, result)
        self.board.on_cycle(runtime, result)

    def config_applied(self, old, new, ok: bool) -> None:
        """After a reload: counts it; series of removed sources go, new sources and archive
        tasks start at 0 (a counter first seen at 1 would show no increase)."""
        self.metrics.reloaded(ok)
        if not ok:
            return
        for task in new.archive.tasks:
            self.metrics.add_archive_task(task.name)
        self.hub.publish("snapshot", self.board.status())  # sources may have come or gone
        old_names = {s.sysname for s in old.sources}
        new_names = {s.sysname for s in new.sources}
        for name in old_names - new_names:
            self.metrics.forget_source(name)
        for name in new_names - old_names:
            self.metrics.add_source(name)

    async def stop(self) -> None:
        """Sends the last changes, ends every event stream, then stops the refresh task, the
        server and the pool; safe after a failed or missing start."""
        self.board.publish_changes()  # "stopping" reaches the pages before the streams end
        self.hub.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._pool is not None:
            await self._pool.close()
