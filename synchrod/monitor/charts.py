"""The charts' route (``GET /api/v1/charts``): per source, synchronized calls
per minute, lag and backlog; per target filesystem, its use and level; over
the last hours, bucketed server-side (``replay.samples``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..core import clock
from ..replay import samples
from .params import int_param, json_response

if TYPE_CHECKING:
    from .server import Monitor

MAX_HOURS = 720   # 30 days, the default history kept


class ChartRoutes:
    """GET /api/v1/charts (no token needed, like every read)."""

    def __init__(self, monitor: Monitor):
        self.m = monitor

    def routes(self) -> list[web.RouteDef]:
        """The one route."""
        return [web.get("/api/v1/charts", self.charts)]

    async def charts(self, request: web.Request) -> web.Response:
        """GET /api/v1/charts?hours=24: every configured source's series and every
        filesystem sampled in the window, at most 1440 points each, with the
        storage levels' percentages; 400 on a bad ``hours``."""
        hours = int_param(request, "hours", 24, 1, MAX_HOURS)
        cfg = self.m.config
        names = [s.sysname for s in cfg.sources]
        w = samples.window(clock.now(), hours)
        async with self.m.db() as conn:   # one query per kind of series, whatever the sources
            calls = await samples.calls_per_minute(conn, w, names)
            lags = await samples.source_series(conn, w, names)
            use = await samples.filesystem_series(conn, w)
        t = cfg.storage.thresholds
        return json_response({
            "hours": hours, "bucket_seconds": w.step, "from": clock.iso(w.start),
            "to": clock.iso(w.end),
            "sources": [{"source": n, "calls_per_minute": calls.get(n, []),
                         "lag_seconds": lags.get(n, ([], []))[0],
                         "backlog": lags.get(n, ([], []))[1]} for n in names],
            "filesystems": [{"filesystem": name, "use": points} for name, points in use.items()],
            "storage": {"enabled": cfg.storage.enabled,
                        "levels": {name: {"enter": band.enter, "exit": band.exit}
                                   for name, band in (("warning", t.warning), ("critical", t.critical),
                                                      ("emergency", t.emergency))}}})
