"""The JSON responses and query parameters of the API (``monitor.api``)."""
from __future__ import annotations

import datetime as dt
import json

from aiohttp import web

MAX_INT = 2 ** 63 - 1


def json_response(data, status: int = 200, headers=None) -> web.Response:
    """``data`` as a compact JSON response (other values as ``str``)."""
    return web.Response(text=json.dumps(data, separators=(",", ":"), default=str), status=status,
                        content_type="application/json", headers=headers)


def error(status: int, message: str, headers=None) -> web.Response:
    """A JSON ``{"error": message}`` response with that status."""
    return json_response({"error": message}, status, headers)


def int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int):
    """An integer query parameter within ``lo..hi`` (``default`` when absent); HTTP 400 raised
    otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"{name} must be an integer"}),
                                 content_type="application/json") from None
    if not lo <= value <= hi:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"{name} must be {lo}..{hi}"}),
                                 content_type="application/json")
    return value


def time_param(query, name: str) -> dt.datetime | None:
    """An ISO 8601 date-time query parameter (UTC when it names no zone); ValueError if bad."""
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date and time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    if not 1 <= value.astimezone(dt.timezone.utc).year <= 9998:
        raise ValueError(f"{name} is out of range")
    return value


def bool_param(query, name: str) -> bool | None:
    """A ``true``/``false`` query parameter; ValueError otherwise."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in ("true", "false"):
        raise ValueError(f"{name} must be true or false")
    return raw == "true"


def path_id(request: web.Request, name: str = "id") -> int | None:
    """The id in the path (1..2^63-1); None when it is not one (the caller's 404)."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        return None
    return value if 1 <= value <= MAX_INT else None
